"""One reader per file format. Readers return native units and native label codes.

Everything dataset-specific that a YAML spec can express lives in ``reader_options``; the
few quirks that cannot (labels synthesised from a MATLAB struct) get a named format. Formats:
headerless or headed delimited text, raw interleaved integers, MATLAB v5/v7.3 (labels from a
variable, a cue timetable or the file name; self-describing scalars checked), WFDB records
(physical units, channels by name) and JSON files of labelled samples (EMG-EPN-612). A reader
raises ``DatasetError`` naming the file and the reason; it never guesses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.io

from aemg.errors import DatasetError

if TYPE_CHECKING:
    from aemg.datasets.spec import DatasetSpec


@dataclass(frozen=True)
class Segment:
    """Rows ``[start, stop)`` of a file that are one recording of their own (e.g. one repetition)."""

    start: int
    stop: int
    session: str
    repetition: int


@dataclass
class RawRecording:
    """A file's signal before harmonization: ``emg`` (n_times, n_chans), labels per sample.

    ``segments`` splits a file that holds several separate recordings end to end (joins that are
    not continuous signal, which must not be filtered across); None: the file is one recording.
    """

    emg: np.ndarray
    labels: np.ndarray
    sfreq: float
    segments: tuple[Segment, ...] | None = None


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
    expected = channel_cols + [c for c in (label_col, time_col) if c]
    header = bool(opts.get("header", True))  # headerless files: columns are named by the spec, in order
    try:
        table = pd.read_csv(path, sep=opts.get("delimiter", ","), engine="c", header=0 if header else None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DatasetError(spec.id, f"cannot parse: {str(exc).splitlines()[0]}", file=relpath) from None
    if not header and len(table.columns) == len(expected):
        table.columns = expected
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
    required = [c for c in (label_col, time_col) if c]
    incomplete = table[required].isna().any(axis=1).to_numpy()
    if incomplete.any():
        line = int(np.flatnonzero(incomplete)[0]) + (2 if header else 1)
        raise DatasetError(
            spec.id, f"line {line}: no value in {required} (a row with too few fields?)", file=relpath
        )
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


def _mat_values(value: np.ndarray, as_text: bool) -> list:
    """Flatten a MATLAB scalar, char array or cell array into Python values (text from v5 or v7.3)."""
    arr = np.asarray(value)
    if arr.dtype == object:
        return [v for item in arr.reshape(-1) for v in _mat_values(item, as_text)]
    if arr.dtype.kind == "U":
        return [str(v).strip() for v in arr.reshape(-1)]
    if as_text and arr.dtype.kind in "ui":  # v7.3 stores char arrays as uint16 codes
        return ["".join(map(chr, arr.reshape(-1))).strip()]
    return arr.reshape(-1).tolist()


def _check_mat_metadata(mat: dict, spec: DatasetSpec, fields: dict[str, str], relpath: str) -> None:
    """Scalars a file stores about itself must agree with its name and with the spec.

    ``field_vars`` maps a pattern field to a variable holding the same number (CapgMyo ``gesture``,
    NinaPro ``subject``); ``expect_vars`` maps a variable to the value the spec documents
    (``fs: 2000``, ``units: mV``).
    """
    opts = spec.reader_options
    for field, var in (opts.get("field_vars") or {}).items():
        if field not in fields:
            raise DatasetError(spec.id, f"reader_options.field_vars names {field!r}, which the pattern does not yield", file=relpath)
        found = _mat_values(_mat_var(mat, var, spec, relpath), as_text=False)
        if len(found) != 1 or float(found[0]) != float(fields[field]):
            raise DatasetError(spec.id, f"variable {var!r}={found} but the file name says {field}={fields[field]}", file=relpath)
    for var, expected in (opts.get("expect_vars") or {}).items():
        found = _mat_values(_mat_var(mat, var, spec, relpath), as_text=isinstance(expected, str))
        if isinstance(expected, str):
            ok = bool(found) and all(str(v) == expected for v in found)
        else:
            ok = bool(found) and all(np.isclose(float(v), float(expected)) for v in found)
        if not ok:
            raise DatasetError(spec.id, f"variable {var!r}={found}, the spec documents {expected!r}", file=relpath)


def _align_lengths(emg: np.ndarray, labels: np.ndarray, spec: DatasetSpec, relpath: str):
    """Label and signal tracks must have one length; ``max_length_mismatch`` tolerates a documented few samples."""
    if labels.size == len(emg):
        return emg, labels
    tolerance = int(spec.reader_options.get("max_length_mismatch", 0))
    if abs(labels.size - len(emg)) > tolerance:
        raise DatasetError(
            spec.id, f"label length {labels.size} does not match signal length {len(emg)}", file=relpath
        )
    n = min(labels.size, len(emg))
    return emg[:n], labels[:n]


def _offset_labels(labels: np.ndarray, spec: DatasetSpec, fields: dict[str, str], relpath: str) -> np.ndarray:
    """Exercise-local movement numbers (1..count, 0 = rest) to one numbering across exercises.

    ``label_offsets`` maps a value of the pattern field ``label_offset_field`` to ``[offset, count]``.
    A label outside 1..count means the file is numbered differently than the spec says: fail, never shift.
    """
    opts = spec.reader_options
    table = opts.get("label_offsets")
    if not table:
        return labels
    field = opts.get("label_offset_field", "session")
    key = fields.get(field)
    if key is None or str(key) not in {str(k) for k in table}:
        raise DatasetError(spec.id, f"no label offset for {field}={key!r}; reader_options.label_offsets has {sorted(map(str, table))}", file=relpath)
    offset, count = next(v for k, v in table.items() if str(k) == str(key))
    active = labels != 0
    outside = np.unique(labels[active & ((labels < 1) | (labels > int(count)))])
    if outside.size:
        raise DatasetError(
            spec.id,
            f"labels {outside.tolist()[:5]} outside 1..{count} for {field}={key}; are they already numbered across exercises?",
            file=relpath,
            fix="check the exercise numbering and reader_options.label_offsets",
        )
    out = labels.copy()
    out[active] += int(offset)
    return out


def _protocol_labels(n_times: int, sfreq: float, protocol: Mapping, spec: DatasetSpec, relpath: str) -> np.ndarray:
    """Per-sample codes from a fixed cue timetable (files that carry no label track).

    Block ``b`` starts at ``block_starts_s[b]``; cue ``j`` of a block starts ``j * period_s`` later and
    lasts ``duration_s``; the rest of the recording gets ``other_code``.
    """
    codes = [int(c) for c in protocol["codes"]]
    period, duration = float(protocol["period_s"]), float(protocol["duration_s"])
    labels = np.full(n_times, int(protocol.get("other_code", -1)), dtype=np.int64)
    for block_start in protocol["block_starts_s"]:
        for j, code in enumerate(codes):
            start = round((float(block_start) + j * period) * sfreq)
            stop = start + round(duration * sfreq)
            if stop > n_times:
                raise DatasetError(
                    spec.id, f"protocol needs {stop} samples ({stop / sfreq:g} s), file has {n_times}", file=relpath
                )
            labels[start:stop] = code
    return labels


def read_mat(path: Path, spec: DatasetSpec, fields: dict[str, str], relpath: str) -> RawRecording:
    """MATLAB v5 or v7.3 file with a signal variable and labels from a variable, a timetable or the name."""
    opts = spec.reader_options
    mat = _loadmat(path, spec, relpath)
    emg = _mat_var(mat, opts.get("emg_var", "emg"), spec, relpath).astype(np.float64)
    if emg.ndim != 2 or emg.shape[1] != spec.n_chans:
        raise DatasetError(
            spec.id, f"signal has shape {emg.shape}, expected (n_times, {spec.n_chans})", file=relpath
        )
    _check_mat_metadata(mat, spec, fields, relpath)
    label_var = opts.get("label_var")
    if label_var:
        labels = _mat_var(mat, label_var, spec, relpath).reshape(-1)
        emg, labels = _align_lengths(emg, labels, spec, relpath)
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise DatasetError(spec.id, "labels are not whole numbers", file=relpath)
        labels = _offset_labels(labels.astype(np.int64), spec, fields, relpath)
    elif opts.get("protocol_labels"):
        labels = _protocol_labels(len(emg), spec.sfreq, opts["protocol_labels"], spec, relpath)
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


def _annotation_labels(record_name: str, n_times: int, spec: DatasetSpec, relpath: str) -> np.ndarray:
    """Codes from a WFDB annotation file: each annotation's code holds until the next one."""
    import wfdb

    opts = spec.reader_options
    try:
        ann = wfdb.rdann(record_name, opts["annotation"])
    except (OSError, ValueError, IndexError, EOFError) as exc:
        raise DatasetError(spec.id, f"cannot read annotation '{opts['annotation']}': {exc}", file=relpath) from None
    key = opts.get("annotation_field", "aux_note")
    values = getattr(ann, key)
    samples = np.asarray(ann.sample, dtype=np.int64)
    if samples.size == 0 or np.any(np.diff(samples) < 0) or samples[-1] >= n_times:
        raise DatasetError(spec.id, f"annotation samples are empty, unsorted or past the signal end ({n_times})", file=relpath)
    labels = np.full(n_times, int(opts.get("label_before_first_annotation", -1)), dtype=np.int64)
    for start, stop, value in zip(samples, [*samples[1:], n_times], values, strict=True):
        try:
            labels[start:stop] = int(str(value).strip())
        except ValueError:
            raise DatasetError(spec.id, f"annotation {key}={value!r} is not an integer code", file=relpath) from None
    return labels


def read_wfdb(path: Path, spec: DatasetSpec, fields: dict[str, str], relpath: str) -> RawRecording:
    """WFDB record (``.hea`` + signal file) in physical units; channels picked by name, ``fs`` from the header."""
    import wfdb

    opts = spec.reader_options
    record_name = str(path.with_suffix(""))
    try:
        record = wfdb.rdrecord(record_name, physical=True)
    except (OSError, ValueError, IndexError, EOFError, TypeError) as exc:
        raise DatasetError(spec.id, f"not a readable WFDB record: {exc}", file=relpath) from None
    names = list(record.sig_name or [])
    wanted = [str(c) for c in (opts.get("channels") or spec.ch_names)]
    missing = [c for c in wanted if c not in names]
    if missing:
        raise DatasetError(spec.id, f"header lacks channels {missing[:5]} (found {names})", file=relpath)
    index = [names.index(c) for c in wanted]
    units = sorted({record.units[i] for i in index})
    expected_units = str(opts.get("units", spec.units))
    if units != [expected_units]:
        raise DatasetError(spec.id, f"header units {units}, the spec expects {expected_units!r}", file=relpath)
    if not np.isclose(record.fs, spec.sfreq):
        raise DatasetError(spec.id, f"header says fs={record.fs} Hz, the spec says {spec.sfreq:g} Hz", file=relpath)
    if record.p_signal is None or record.p_signal.shape[0] != record.sig_len:
        raise DatasetError(spec.id, f"signal file holds fewer than the header's {record.sig_len} samples", file=relpath)
    emg = np.asarray(record.p_signal[:, index], dtype=np.float64)
    if opts.get("annotation"):
        labels = _annotation_labels(record_name, len(emg), spec, relpath)
    else:
        labels = np.full(len(emg), _file_label(spec, fields, relpath), dtype=np.int64)
    return RawRecording(emg, labels, float(record.fs))


def _natural_key(key: str) -> tuple:
    """``idx_10`` after ``idx_9``: order by the trailing number, then by name."""
    m = re.search(r"(\d+)$", key)
    return (int(m.group(1)) if m else -1, key)


def read_json_samples(path: Path, spec: DatasetSpec, fields: dict[str, str], relpath: str) -> RawRecording:
    """One JSON file holding many labelled samples (EMG-EPN-612: ``trainingSamples.idx_1.emg.ch1``...).

    Each sample is a separate 5 s repetition, so each becomes its own segment (session = its block,
    repetition = the number of its ``idx_<k>`` key), in block order and numeric key order; its label
    comes from its ``gestureName`` (``label_names`` maps names to native codes), narrowed to its
    ``groundTruth`` mask when one is present.
    """
    opts = spec.reader_options
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(spec.id, f"not valid JSON: {exc}", file=relpath) from None
    names: Mapping[str, int] = opts.get("label_names") or {}
    channel_keys = [str(c) for c in (opts.get("channel_keys") or [f"ch{i}" for i in range(1, spec.n_chans + 1)])]
    emg_key, label_key = opts.get("emg_key", "emg"), opts.get("label_key", "gestureName")
    gt_key = opts.get("ground_truth_key")
    missing_code = opts.get("missing_label_code")
    signals, labels, segments = [], [], []
    start = 0
    for block in opts.get("blocks") or ["trainingSamples", "testingSamples"]:
        entries = data.get(block) if isinstance(data, Mapping) else None
        if not isinstance(entries, Mapping):
            found = sorted(data) if isinstance(data, Mapping) else type(data).__name__
            raise DatasetError(spec.id, f"no sample block {block!r} (found {found})", file=relpath)
        for key in sorted(entries, key=_natural_key):
            where = f"{block}.{key}"
            entry = entries[key]
            channels = entry.get(emg_key) if isinstance(entry, Mapping) else None
            if not isinstance(channels, Mapping) or any(c not in channels for c in channel_keys):
                raise DatasetError(spec.id, f"{where}: '{emg_key}' lacks channels {channel_keys}", file=relpath)
            columns = [np.asarray(channels[c], dtype=np.float64).reshape(-1) for c in channel_keys]
            if len({len(c) for c in columns}) != 1 or len(columns[0]) == 0:
                raise DatasetError(spec.id, f"{where}: channels have lengths {[len(c) for c in columns]}", file=relpath)
            name = entry.get(label_key)
            if name is None and missing_code is not None:
                code = int(missing_code)
            elif name in names:
                code = int(names[name])
            else:
                raise DatasetError(
                    spec.id, f"{where}: {label_key}={name!r} not in reader_options.label_names {sorted(names)}",
                    file=relpath,
                )
            sample_labels = np.full(len(columns[0]), code, dtype=np.int64)
            if gt_key and gt_key in entry:
                mask = np.asarray(entry[gt_key]).reshape(-1)
                if mask.size != sample_labels.size:
                    raise DatasetError(spec.id, f"{where}: {gt_key} has {mask.size} values for {sample_labels.size} samples", file=relpath)
                sample_labels[mask == 0] = int(opts.get("outside_ground_truth_code", -1))
            signals.append(np.column_stack(columns))
            labels.append(sample_labels)
            segments.append(Segment(start, start + sample_labels.size, block, max(_natural_key(key)[0], 0)))
            start += sample_labels.size
    if not signals:
        raise DatasetError(spec.id, "no samples in the JSON file", file=relpath)
    return RawRecording(np.concatenate(signals), np.concatenate(labels), spec.sfreq, tuple(segments))


READERS: dict[str, Reader] = {
    "int16-dat": read_binary,
    "delimited-text": read_delimited,
    "mat-v5": read_mat,
    "mat-v73": read_mat,
    "flexemg-mat": read_flexemg,
    "wfdb": read_wfdb,
    "json-samples": read_json_samples,
}
