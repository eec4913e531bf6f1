"""Assemble a dataset's harmonized recordings into the contiguous-ragged xarray layout."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from aemg.datasets.download import sha256_of
from aemg.datasets.spec import DatasetSpec
from aemg.errors import DatasetError
from aemg.harmonize.recording import HarmonizedRecording, harmonize_file
from aemg.harmonize.signal import QUALITY_FLAGS
from aemg.params import params_hash
from aemg.schemas import ChannelTable, RecordingTable, harmonized_schema

MapFn = Callable[..., Iterable[Any]]
STRING_COLUMNS = ("subject", "session", "source_file", "source_sha256")


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


def recording_table(recordings: list[HarmonizedRecording], hashes: list[str]) -> pd.DataFrame:
    n_times = np.array([len(r.emg) for r in recordings], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(n_times)[:-1]]).astype(np.int64)
    table = pd.DataFrame(
        {
            "offset": offsets,
            "n_times": n_times,
            "subject": [r.subject for r in recordings],
            "session": [r.session for r in recordings],
            "repetition": np.array([r.repetition for r in recordings], dtype=np.int64),
            "source_file": [r.relpath for r in recordings],
            "source_sha256": hashes,
        }
    )
    return RecordingTable.validate(table)


def channel_table(spec: DatasetSpec) -> pd.DataFrame:
    return ChannelTable.validate(
        pd.DataFrame(
            {
                "channel": spec.ch_names,
                "angle_deg": [c.angle_deg for c in spec.channels],
                "distance": [c.distance for c in spec.channels],
                "muscle": [c.muscle for c in spec.channels],
            }
        )
    )


def to_xarray(
    spec: DatasetSpec, recordings: list[HarmonizedRecording], hashes: list[str], hp: dict[str, Any]
) -> xr.Dataset:
    table = recording_table(recordings, hashes)
    channels = channel_table(spec)
    ds = xr.Dataset(
        data_vars={
            "emg": (("sample", "channel"), np.concatenate([r.emg for r in recordings])),
            "gesture": (("sample",), np.concatenate([r.gesture for r in recordings])),
            "quality": (("recording", "channel"), np.stack([r.quality for r in recordings])),
            **{
                col: (("recording",), table[col].to_numpy(object if col in STRING_COLUMNS else None))
                for col in table.columns
            },
        },
        coords={
            "channel": channels["channel"].to_numpy(object),
            "angle_deg": ("channel", channels["angle_deg"].to_numpy(float)),
            "distance": ("channel", channels["distance"].to_numpy(float)),
            "muscle": ("channel", channels["muscle"].to_numpy(object)),
        },
        attrs={
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
            "quality_flag_masks": [1 << i for i in range(len(QUALITY_FLAGS))],
            "quality_flag_meanings": " ".join(QUALITY_FLAGS),
        },
    )
    ds["quality"].attrs.update(flag_masks=ds.attrs["quality_flag_masks"], flag_meanings=ds.attrs["quality_flag_meanings"])
    ds["gesture"].attrs["description"] = "shared vocabulary code (aemg.vocabulary), -1 = unlabelled"
    harmonized_schema(spec.n_chans).validate(ds)
    return ds


def harmonize_dataset(
    spec: DatasetSpec,
    raw_root: Path,
    hp: dict[str, Any],
    subjects: list[str] | None = None,
    map_fn: MapFn = map,
) -> xr.Dataset:
    """Harmonize every selected file; ``map_fn`` may run files in parallel (e.g. on Dask)."""
    files = select_files(spec, subjects)
    if not files:
        raise DatasetError(spec.id, "no data files match the spec's pattern")
    hashes = verified_hashes(spec, raw_root, files)
    recordings = list(map_fn(lambda f: harmonize_file(spec, raw_root, f, hp), files))
    return to_xarray(spec, recordings, hashes, hp)


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


def validate_group(ds: xr.Dataset) -> None:
    """Read-side contract: schema of the group plus the recording and channel tables."""
    harmonized_schema().validate(ds)
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


def recording_table_from(ds: xr.Dataset) -> pd.DataFrame:
    """The recordings table of a stored group, validated."""
    cols = ["offset", "n_times", "subject", "session", "repetition", "source_file", "source_sha256"]
    table = pd.DataFrame({c: ds[c].values.astype(object) if c in STRING_COLUMNS else ds[c].values for c in cols})
    for c in STRING_COLUMNS:
        table[c] = table[c].astype(str)
    return RecordingTable.validate(table)
