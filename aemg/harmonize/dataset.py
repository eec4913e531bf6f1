"""Write a dataset's harmonized recordings into the contiguous-ragged Zarr layout.

Recordings lie end to end along ``sample``, in file order; the tasks that harmonize them write
them (see :func:`write_dataset`) and only their table rows reach the driver, so peak memory does
not grow with the dataset.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import dask.array as da
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
from aemg.parallel import keep, then
from aemg.params import params_hash
from aemg.schemas import ChannelTable, RecordingTable, harmonized_schema
from aemg.store import STRING_COLUMNS, ForkWriter, GroupWrite, recording_table_from, text_array
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


def recording_rows(recordings: list[HarmonizedRecording], _: object = None) -> list[dict[str, Any]]:
    """What the driver keeps of a file's recordings: their table rows and quality flags, not their samples."""
    return [{"n_times": len(r.emg), "subject": r.subject, "session": r.session, "repetition": r.repetition,
             "source_file": r.relpath, "quality": r.quality} for r in recordings]


def write_recordings(recordings: list[HarmonizedRecording], writer: ForkWriter) -> ForkWriter:
    """A file's recordings, end to end, into its rows ``writer.span`` (run where they were harmonized)."""
    start = writer.span[0]
    for rec in recordings:
        writer.write("emg", start, rec.emg)
        writer.write("gesture", start, rec.gesture)
        start += len(rec.emg)
    return writer


class SampleArrays:
    """The group's ``emg(sample, channel)`` and ``gesture(sample)``, created empty and grown round by round.

    Only metadata passes here: workers write the samples (:func:`write_recordings`). The first
    growth creates the arrays (and the channel coordinates); they then grow a whole chunk at a
    time (a resize per round of small files would cost more than the files) and :meth:`close`
    cuts them to the samples written.
    """

    def __init__(self, target: GroupWrite, channels: pd.DataFrame, chunk_samples: int) -> None:
        self.target, self.chunk, self.channels = target, chunk_samples, channels
        self.n = self.capacity = 0

    def grow(self, n_new: int) -> None:
        if n_new == 0:
            return
        self.n += n_new
        if self.n <= self.capacity:
            return
        size = -(-self.n // self.chunk) * self.chunk
        if self.capacity == 0:
            n_chans = len(self.channels)
            empty = xr.Dataset(
                {"emg": (("sample", "channel"), da.zeros((size, n_chans), dtype=np.float32, chunks=(self.chunk, n_chans))),
                 "gesture": (("sample",), da.zeros(size, dtype=np.int16, chunks=self.chunk))},
                coords={"channel": text_array(self.channels["channel"]),
                        "angle_deg": ("channel", self.channels["angle_deg"].to_numpy(float)),
                        "distance": ("channel", self.channels["distance"].to_numpy(float)),
                        "muscle": ("channel", text_array(self.channels["muscle"]))})
            empty["gesture"].attrs["description"] = "shared vocabulary code (aemg.vocabulary), -1 = unlabelled"
            self.target.to_zarr(empty, compute=False, encoding={"emg": {"chunks": (self.chunk, n_chans)},
                                                                 "gesture": {"chunks": (self.chunk,)}})
        else:
            self._resize(size)
        self.capacity = size

    def _resize(self, size: int) -> None:
        for name in ("emg", "gesture"):
            self.target.resize(name, size)

    def close(self) -> None:
        if self.n < self.capacity:
            self._resize(self.n)


def write_dataset(
    spec: DatasetSpec,
    raw_root: Path,
    hp: dict[str, Any],
    target: GroupWrite,
    subjects: list[str] | None = None,
    map_fn: MapFn = map,
) -> None:
    """Harmonize every selected file into the group ``target`` writes, ``files_in_flight`` files a round.

    Each round, ``map_fn``'s tasks harmonize one file each and keep the result where they ran
    (:mod:`aemg.parallel`); the driver gathers only their lengths and table rows, grows the
    arrays, and each task then writes its own rows into the transaction. So the samples never
    pass through the driver, except the rows of a chunk two files share (see
    :class:`aemg.store.ForkWriter`), and memory holds at most a round of files, whatever the
    dataset's size. Recordings lie end to end in file order.
    """
    files = select_files(spec, subjects)
    if not files:
        raise DatasetError(spec.id, "no data files match the spec's pattern")
    hashes = dict(zip(files, verified_hashes(spec, raw_root, files), strict=True))
    view = channel_view(spec, hp["virtual_channels"])
    chunk = int(hp["chunk_samples"])
    arrays = SampleArrays(target, channel_table(view), chunk)
    rows: list[dict[str, Any]] = []
    step = max(1, int(hp["files_in_flight"]))
    for i in range(0, len(files), step):
        batch = files[i:i + step]
        kept = keep(map_fn, lambda f: harmonize_file(spec, raw_root, f, hp), batch)
        per_file = then(map_fn, recording_rows, kept, [None] * len(batch))
        sizes = np.array([sum(r["n_times"] for r in file_rows) for file_rows in per_file], dtype=np.int64)
        first = arrays.n + np.cumsum(sizes) - sizes
        arrays.grow(int(sizes.sum()))
        if sizes.sum():
            writers = target.fork([(int(a), int(a + n)) for a, n in zip(first, sizes, strict=True)], chunk, None)
            target.merge(then(map_fn, write_recordings, kept, writers))
        rows += [row for file_rows in per_file for row in file_rows]
    target.finish()  # the held rows of the last chunk, before the arrays are cut to size
    arrays.close()
    table = recording_table(rows, hashes)
    attrs = group_attrs(spec, view, hp)
    ds = xr.Dataset(
        data_vars={
            "quality": (("recording", "channel"), np.stack([r["quality"] for r in rows])),
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

