"""Write a dataset's harmonized recordings, streamed, into the contiguous-ragged Zarr layout.

Recordings are appended end to end along ``sample`` as they are harmonized; only their table rows
stay in memory, so peak memory does not grow with the dataset.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from aemg.datasets.download import sha256_of
from aemg.datasets.registry import gesture_codes
from aemg.datasets.spec import DatasetSpec
from aemg.errors import DatasetError
from aemg.harmonize.channels import ChannelView, channel_view
from aemg.harmonize.recording import HarmonizedRecording, harmonize_file
from aemg.harmonize.signal import QUALITY_FLAGS
from aemg.params import params_hash
from aemg.schemas import ChannelTable, RecordingTable, harmonized_schema
from aemg.store import STRING_COLUMNS, GroupWrite, recording_table_from, text_array
from aemg.vocabulary import GESTURES

MapFn = Callable[..., Iterable[Any]]


def select_files(spec: DatasetSpec, subjects: list[str] | None) -> list[str]:
    """The dataset's signal files, optionally only those of some subjects (a "slice")."""
    files = spec.data_files()
    if not subjects:
        return files
    wanted = {str(s) for s in subjects}
    chosen = [f for f in files if spec.match(f)["subject"] in wanted]
    missing = wanted - {spec.match(f)["subject"] for f in chosen}
    if missing:
        known = sorted({spec.match(f)["subject"] for f in files})
        raise DatasetError(spec.id, f"unknown subject(s) {sorted(missing)}; known: {known}")
    return chosen


def recording_table(rows: list[dict[str, Any]], hashes: dict[str, str]) -> pd.DataFrame:
    """Validated table of ``rows`` (n_times, subject, session, repetition, source_file), end to end."""
    n_times = np.array([r["n_times"] for r in rows], dtype=np.int64)
    table = pd.DataFrame(
        {
            "offset": np.concatenate([[0], np.cumsum(n_times)[:-1]]).astype(np.int64),
            "n_times": n_times,
            "subject": [r["subject"] for r in rows],
            "session": [r["session"] for r in rows],
            "repetition": np.array([r["repetition"] for r in rows], dtype=np.int64),
            "source_file": [r["source_file"] for r in rows],
            "source_sha256": [hashes[r["source_file"]] for r in rows],
        }
    )
    return RecordingTable.validate(table)


def channel_table(view: ChannelView) -> pd.DataFrame:
    return ChannelTable.validate(
        pd.DataFrame(
            {
                "channel": list(view.names),
                "angle_deg": view.angle_deg.astype(float),
                "distance": view.distance.astype(float),
                "muscle": list(view.muscle),
            }
        )
    )


def spec_hash(spec: DatasetSpec) -> str:
    """Short hash of everything in a spec that shapes the output (not where it was loaded from).

    The shared codes of the gesture names it maps are included: a spec or vocabulary change must
    count as "changed" for the scheduled run just as new files or parameters do.
    """
    content = {k: v for k, v in asdict(spec).items() if k != "source"}
    vocabulary = gesture_codes() if spec.user_gestures else GESTURES
    content["gesture_codes"] = {name: vocabulary[name] for name in spec.gestures.values()}
    return params_hash(content)


def group_attrs(spec: DatasetSpec, view: ChannelView, hp: dict[str, Any]) -> dict[str, Any]:
    """What a group says about itself: source, units, rates, every harmonize parameter, channel view."""
    attrs: dict[str, Any] = {
        "dataset": spec.id,
        "title": spec.title,
        "licence": spec.licence,
        "doi": spec.doi,
        "device": spec.device,
        "signal": spec.signal,
        "units": "V" if spec.scale_to_volts is not None else spec.units,
        "sfreq": float(hp["sfreq"]),
        "native_sfreq": spec.sfreq,
        "harmonize_params": json.dumps(hp, sort_keys=True),
        "params_hash": params_hash(hp),
        "spec_hash": spec_hash(spec),
        "quality_flag_masks": [1 << i for i in range(len(QUALITY_FLAGS))],
        "quality_flag_meanings": " ".join(QUALITY_FLAGS),
    }
    if view.weights is not None:
        attrs.update(
            channel_view=f"virtual-{view.n_chans}",
            channel_sources=json.dumps(dict(zip(view.names, map(list, view.sources), strict=True))),
            channel_unplaced=list(view.unplaced),
        )
    return attrs


class SampleWriter:
    """Appends recordings to a new group's ``emg(sample, channel)`` and ``gesture(sample)``.

    Rows are held back until they fill whole Zarr chunks, so every chunk is written once (no
    read-modify-write of a partial chunk) and memory holds at most one chunk plus one recording,
    whatever the dataset's size. The first write creates the group with the channel coordinates.
    """

    def __init__(self, target: GroupWrite, channels: pd.DataFrame, chunk_samples: int) -> None:
        self.target, self.chunk = target, chunk_samples
        self.coords = {
            "channel": text_array(channels["channel"]),
            "angle_deg": ("channel", channels["angle_deg"].to_numpy(float)),
            "distance": ("channel", channels["distance"].to_numpy(float)),
            "muscle": ("channel", text_array(channels["muscle"])),
        }
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.n_pending = 0
        self.n_written = 0

    def append(self, emg: np.ndarray, gesture: np.ndarray) -> None:
        self.pending.append((emg, gesture))
        self.n_pending += len(emg)
        if self.n_pending >= self.chunk:
            self._flush(self.n_pending // self.chunk * self.chunk)

    def close(self) -> None:
        """Write the rows held back (the last, partial chunk)."""
        if self.n_pending:
            self._flush(self.n_pending)

    def _flush(self, n: int) -> None:
        emg = np.concatenate([e for e, _ in self.pending])
        gesture = np.concatenate([g for _, g in self.pending])
        piece = xr.Dataset({"emg": (("sample", "channel"), emg[:n]), "gesture": (("sample",), gesture[:n])})
        if self.n_written == 0:
            piece["gesture"].attrs["description"] = "shared vocabulary code (aemg.vocabulary), -1 = unlabelled"
            encoding = {"emg": {"chunks": (self.chunk, emg.shape[1])}, "gesture": {"chunks": (self.chunk,)}}
            self.target.to_zarr(piece.assign_coords(self.coords), encoding=encoding)
        else:
            self.target.to_zarr(piece, mode="a", append_dim="sample")
        self.n_written += n
        self.pending = [(emg[n:].copy(), gesture[n:].copy())] if n < len(emg) else []
        self.n_pending = len(emg) - n


def harmonized_recordings(
    spec: DatasetSpec, raw_root: Path, files: list[str], hp: dict[str, Any], map_fn: MapFn = map
) -> Iterator[HarmonizedRecording]:
    """Recordings in file order, harmonized ``files_in_flight`` files at a time (in parallel with ``map_fn``).

    Bounding the files in flight bounds memory: a batch's results are written before the next starts.
    """
    step = max(1, int(hp["files_in_flight"]))
    for i in range(0, len(files), step):
        for recordings in map_fn(lambda f: harmonize_file(spec, raw_root, f, hp), files[i:i + step]):
            yield from recordings


def write_dataset(
    spec: DatasetSpec,
    raw_root: Path,
    hp: dict[str, Any],
    target: GroupWrite,
    subjects: list[str] | None = None,
    map_fn: MapFn = map,
) -> None:
    """Harmonize every selected file into the group ``target`` writes, streaming recording by recording.

    ``map_fn`` may run files in parallel (e.g. on Dask). Only each recording's table row is kept
    until the end, when the recording table, quality flags and attributes are written.
    """
    files = select_files(spec, subjects)
    if not files:
        raise DatasetError(spec.id, "no data files match the spec's pattern")
    hashes = dict(zip(files, verified_hashes(spec, raw_root, files), strict=True))
    view = channel_view(spec, hp["virtual_channels"])
    writer = SampleWriter(target, channel_table(view), int(hp["chunk_samples"]))
    rows, quality = [], []
    for rec in harmonized_recordings(spec, raw_root, files, hp, map_fn):
        writer.append(rec.emg, rec.gesture)
        quality.append(rec.quality)
        rows.append({"n_times": len(rec.emg), "subject": rec.subject, "session": rec.session,
                     "repetition": rec.repetition, "source_file": rec.relpath})
    writer.close()
    table = recording_table(rows, hashes)
    attrs = group_attrs(spec, view, hp)
    ds = xr.Dataset(
        data_vars={
            "quality": (("recording", "channel"), np.stack(quality)),
            **{
                col: (("recording",), text_array(table[col]) if col in STRING_COLUMNS else table[col].to_numpy())
                for col in table.columns
            },
        },
        attrs=attrs,
    )
    ds["quality"].attrs.update(flag_masks=attrs["quality_flag_masks"], flag_meanings=attrs["quality_flag_meanings"])
    target.to_zarr(ds, mode="a")


def verified_hashes(spec: DatasetSpec, raw_root: Path, files: list[str]) -> list[str]:
    """sha256 of each file, checked against the spec's pinned hash before anything reads it."""
    hashes = []
    for relpath in files:
        path = raw_root / relpath
        if not path.is_file():
            raise DatasetError(spec.id, "file missing", file=relpath, fix=f"run `aemg download {spec.id}` first")
        digest = sha256_of(path)
        pinned = spec.files.get(relpath)
        if pinned is not None and digest != pinned:
            raise DatasetError(
                spec.id,
                f"sha256 mismatch (got {digest[:12]}…, expected {pinned[:12]}…): the file changed after download",
                file=relpath,
                fix=f"run `aemg download {spec.id}` to fetch the verified file again",
            )
        hashes.append(digest)
    return hashes


def validate_group(ds: xr.Dataset, n_chans: int | None = None) -> None:
    """Read-side contract: schema of the group (``n_chans`` channels, when given), recording and channel tables."""
    harmonized_schema(n_chans).validate(ds)
    if int(ds["n_times"].sum()) != ds.sizes["sample"]:
        raise DatasetError(
            str(ds.attrs.get("dataset", "?")),
            f"recordings hold {int(ds['n_times'].sum())} samples but emg has {ds.sizes['sample']}",
        )
    recording_table_from(ds)
    ChannelTable.validate(
        pd.DataFrame(
            {
                "channel": ds["channel"].values.astype(object).astype(str),
                "angle_deg": ds["angle_deg"].values,
                "distance": ds["distance"].values,
                "muscle": ds["muscle"].values.astype(object).astype(str),
            }
        )
    )

