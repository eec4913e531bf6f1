"""One reader per file format. Readers return native units and native label codes.

Everything dataset-specific that a YAML spec can express lives in ``reader_options``; the
few quirks that cannot (labels synthesised from a MATLAB struct) get a named format. A reader
raises ``DatasetError`` naming the file and the reason; it never guesses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.io

from aemg.errors import DatasetError

if TYPE_CHECKING:
    from aemg.datasets.spec import DatasetSpec


@dataclass
class RawRecording:
    """A file's signal before harmonization: ``emg`` (n_times, n_chans), labels per sample."""

    emg: np.ndarray
    labels: np.ndarray
    sfreq: float


Reader = Callable[[Path, "DatasetSpec", dict[str, str], str], RawRecording]


def _file_label(spec: DatasetSpec, fields: dict[str, str], relpath: str) -> int:
    """Gesture code carried by the file name (a ``gesture`` group or ``index % modulo``)."""
    if "gesture" in fields:
        return int(fields["gesture"])
    modulo = spec.reader_options.get("gesture_from_index_modulo")
    if modulo is None or "index" not in fields:
        raise DatasetError(spec.id, "file name yields no gesture and the format has no label track", file=relpath)
    return int(fields["index"]) % int(modulo)


def read_binary(path: Path, spec: DatasetSpec, fields: dict[str, str], relpath: str) -> RawRecording:
    """Headerless interleaved integers (e.g. Myo ``.dat``): shape and rate come from the spec."""
    opts = spec.reader_options
    dtype = np.dtype(opts.get("dtype", "<i2"))
    data = np.fromfile(path, dtype=dtype)
    if data.size == 0:
        raise DatasetError(spec.id, "empty file", file=relpath)
    n_chans = int(opts.get("n_chans", spec.n_chans))
    if data.size % n_chans:
        raise DatasetError(
            spec.id, f"{data.size} values do not split into {n_chans} channels (truncated file?)", file=relpath
        )
    emg = data.reshape(-1, n_chans).astype(np.float64)
    lo, hi = opts.get("valid_range", (np.iinfo(dtype).min, np.iinfo(dtype).max))
    if emg.min() < lo or emg.max() > hi:
        raise DatasetError(spec.id, f"values outside the device range [{lo}, {hi}]", file=relpath)
    labels = np.full(len(emg), _file_label(spec, fields, relpath), dtype=np.int64)
    return RawRecording(emg, labels, spec.sfreq)


def hold_onto_grid(time_s: np.ndarray, values: np.ndarray, sfreq: float) -> np.ndarray:
    """Zero-order hold of irregularly time-stamped rows onto a uniform grid at ``sfreq``.

    Logged devices skip or repeat stamps; holding the last row is what the logger itself does
    between stamps, and keeps labels integer (no interpolation between classes).
    """
    n = round((time_s[-1] - time_s[0]) * sfreq) + 1
    grid = time_s[0] + np.arange(n) / sfreq
    idx = np.searchsorted(time_s, grid + 0.5 / sfreq, side="right") - 1
    return values[np.clip(idx, 0, len(values) - 1)]


def read_delimited(path: Path, spec: DatasetSpec, fields: dict[str, str], relpath: str) -> RawRecording:
    """Delimited text with a header; an optional time column is repaired onto a uniform grid."""
    opts = spec.reader_options
    channel_cols = list(opts.get("channel_columns") or spec.ch_names)
    label_col = opts.get("label_column")
    time_col = opts.get("time_column")
    try:
        table = pd.read_csv(path, sep=opts.get("delimiter", ","), engine="c")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DatasetError(spec.id, f"cannot parse: {str(exc).splitlines()[0]}", file=relpath) from None
    expected = channel_cols + [c for c in (label_col, time_col) if c]
    missing = [c for c in expected if c not in table.columns]
    if missing or len(table.columns) != len(expected):
        raise DatasetError(
            spec.id,
            f"wrong columns: expected {len(expected)} {expected}, found {len(table.columns)} {list(table.columns)}",
            file=relpath,
        )
    if table.empty:
        raise DatasetError(spec.id, "empty file (header only)", file=relpath)
    non_numeric = [c for c in expected if not pd.api.types.is_numeric_dtype(table[c])]
    if non_numeric:
        raise DatasetError(spec.id, f"non-numeric values in columns {non_numeric}", file=relpath)
    emg = table[channel_cols].to_numpy(np.float64)
    labels = (
        table[label_col].to_numpy(np.int64)
        if label_col
        else np.full(len(table), _file_label(spec, fields, relpath), dtype=np.int64)
    )
    if time_col:
        time_s = table[time_col].to_numpy(np.float64) * float(opts.get("time_unit_s", 1.0))
        if np.any(np.diff(time_s) <= 0):
            raise DatasetError(spec.id, "time stamps are not strictly increasing", file=relpath)
        stacked = hold_onto_grid(time_s, np.column_stack([emg, labels]), spec.sfreq)
        emg, labels = stacked[:, :-1], stacked[:, -1].astype(np.int64)
    return RawRecording(emg, labels, spec.sfreq)


def _loadmat(path: Path, spec: DatasetSpec, relpath: str) -> dict:
    try:
        return scipy.io.loadmat(path)
    except NotImplementedError:  # MATLAB v7.3 is HDF5
        return _load_mat73(path, spec, relpath)
    except (ValueError, TypeError, OSError) as exc:
        raise DatasetError(spec.id, f"not a readable MATLAB file: {exc}", file=relpath) from None


def _load_mat73(path: Path, spec: DatasetSpec, relpath: str) -> dict:
    """MATLAB v7.3 stores arrays transposed (column-major HDF5); transpose back."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            return {k: np.asarray(v).T for k, v in handle.items() if isinstance(v, h5py.Dataset)}
    except OSError as exc:
        raise DatasetError(spec.id, f"not a readable MATLAB v7.3 file: {exc}", file=relpath) from None


def _mat_var(mat: dict, name: str, spec: DatasetSpec, relpath: str) -> np.ndarray:
    if name not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DatasetError(spec.id, f"variable {name!r} missing (found {found})", file=relpath)
    return np.asarray(mat[name])


def read_mat(path: Path, spec: DatasetSpec, fields: dict[str, str], relpath: str) -> RawRecording:
    """MATLAB v5 or v7.3 file with a signal variable and an optional per-sample label variable."""
    opts = spec.reader_options
    mat = _loadmat(path, spec, relpath)
    emg = _mat_var(mat, opts.get("emg_var", "emg"), spec, relpath).astype(np.float64)
    if emg.ndim != 2 or emg.shape[1] != spec.n_chans:
        raise DatasetError(
            spec.id, f"signal has shape {emg.shape}, expected (n_times, {spec.n_chans})", file=relpath
        )
    label_var = opts.get("label_var")
    if label_var:
        labels = _mat_var(mat, label_var, spec, relpath).reshape(-1)
        if labels.size != len(emg):
            raise DatasetError(
                spec.id, f"label length {labels.size} does not match signal length {len(emg)}", file=relpath
            )
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise DatasetError(spec.id, "labels are not whole numbers", file=relpath)
        labels = labels.astype(np.int64)
    else:
        labels = np.full(len(emg), _file_label(spec, fields, relpath), dtype=np.int64)
    return RawRecording(emg, labels, spec.sfreq)


def _struct_scalar(p: np.ndarray, name: str) -> np.ndarray:
    return np.asarray(p[name][0, 0]).reshape(-1)


def read_flexemg(path: Path, spec: DatasetSpec, fields: dict[str, str], relpath: str) -> RawRecording:
    """flexEMG trials: 96 uint16 columns (first 64 used), labels rebuilt like the authors' genlabels.m."""
    mat = _loadmat(path, spec, relpath)
    raw = _mat_var(mat, "raw", spec, relpath)
    p = _mat_var(mat, "p", spec, relpath)
    n_used = int(spec.reader_options.get("n_chans_used", 64))
    if raw.ndim != 2 or raw.shape[1] < n_used:
        raise DatasetError(spec.id, f"raw has shape {raw.shape}, expected (n_times, >= {n_used})", file=relpath)
    lsb = float(_struct_scalar(p, "lsbmV")[0])
    expected_lsb = float(spec.reader_options.get("lsb_mV", lsb))
    if not np.isclose(lsb, expected_lsb):
        raise DatasetError(spec.id, f"p.lsbmV={lsb} differs from the documented {expected_lsb}", file=relpath)
    emg = raw[:, :n_used].astype(np.float64)
    emg -= emg.mean(axis=0)  # offset-binary counts around a per-channel DC level
    sequence = _struct_scalar(p, "sequence").astype(np.int64)
    reps = int(_struct_scalar(p, "reps")[0])
    n_labels = int(_struct_scalar(p, "numlabels")[0])
    t_gest = int(_struct_scalar(p, "timegest")[0])
    t_rest = int(_struct_scalar(p, "timerest")[0])
    labels = np.zeros(len(emg), dtype=np.int64)
    for rep in range(reps):  # 0-based here; the MATLAB start index is 1-based
        start = t_rest + rep * (n_labels * t_gest + t_rest)
        for j, code in enumerate(sequence[:n_labels]):
            labels[start + j * t_gest : start + (j + 1) * t_gest] = code
    if start + n_labels * t_gest > len(emg):
        raise DatasetError(spec.id, f"protocol needs {start + n_labels * t_gest} samples, file has {len(emg)}", file=relpath)
    return RawRecording(emg, labels, spec.sfreq)


READERS: dict[str, Reader] = {
    "int16-dat": read_binary,
    "delimited-text": read_delimited,
    "mat-v5": read_mat,
    "mat-v73": read_mat,
    "flexemg-mat": read_flexemg,
}
