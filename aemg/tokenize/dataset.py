"""Tokenize a harmonized dataset group, one task per block of recordings.

Tasks receive the store path and recording indices, not arrays, so a Dask worker reads only
its own slice of the store. Two passes: per-subject channel RMS (the z-score divisor, a
label-free per-user calibration), then events and tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from aemg.harmonize.dataset import recording_table_from
from aemg.schemas import EventTable
from aemg.store import open_group
from aemg.tokenize.events import EventParams, detect, tokens_from_events

MapFn = Callable[..., Iterable[Any]]


def blocks(n_recordings: int, per_task: int) -> list[list[int]]:
    return [list(range(i, min(i + per_task, n_recordings))) for i in range(0, n_recordings, per_task)]


def _recording(ds: xr.Dataset, table: pd.DataFrame, rec: int) -> tuple[np.ndarray, np.ndarray]:
    row = table.iloc[rec]
    span = slice(int(row.offset), int(row.offset + row.n_times))
    return ds["emg"][span].values, ds["gesture"][span].values


def block_power(store: Path, group: str, recs: list[int]) -> list[tuple[int, np.ndarray, int]]:
    """Sum of squares per channel and sample count of each recording in the block."""
    ds = open_group(store, group)
    table = recording_table_from(ds)
    out = []
    for rec in recs:
        x, _ = _recording(ds, table, rec)
        out.append((rec, (x.astype(np.float64) ** 2).sum(axis=0), len(x)))
    return out


def block_tokens(
    store: Path, group: str, recs: list[int], tp: dict[str, Any], scales: dict[str, np.ndarray]
) -> list[tuple[int, dict[str, np.ndarray]]]:
    ds = open_group(store, group)
    table = recording_table_from(ds)
    p = EventParams.from_params(tp, float(ds.attrs["sfreq"]))
    out = []
    for rec in recs:
        x, gesture = _recording(ds, table, rec)
        out.append((rec, tokens_from_events(x, gesture, detect(x, p), p, scales[table.subject.iloc[rec]])))
    return out


def subject_scales(table: pd.DataFrame, powers: Iterable[tuple[int, np.ndarray, int]]) -> dict[str, np.ndarray]:
    """Per-subject channel RMS; flat channels get 1 so they stay zero instead of dividing by 0."""
    sums: dict[str, list] = {}
    for rec, sumsq, n in powers:
        acc = sums.setdefault(table.subject.iloc[rec], [0.0, 0])
        acc[0] = acc[0] + sumsq
        acc[1] += n
    scales = {}
    for subject, (sumsq, n) in sums.items():
        rms = np.sqrt(sumsq / max(n, 1))
        scales[subject] = np.where(rms > 0, rms, 1.0).astype(np.float32)
    return scales


def tokenize_dataset(store: Path, group: str, tp: dict[str, Any], map_fn: MapFn = map) -> xr.Dataset:
    """The ``events`` table of one dataset as an xarray Dataset along ``event``."""
    ds = open_group(store, group)
    table = recording_table_from(ds)
    sfreq = float(ds.attrs["sfreq"])
    parts = blocks(len(table), int(tp["recordings_per_task"]))
    powers = [item for chunk in map_fn(lambda recs: block_power(store, group, recs), parts) for item in chunk]
    scales = subject_scales(table, powers)
    results = [item for chunk in map_fn(lambda recs: block_tokens(store, group, recs, tp, scales), parts) for item in chunk]
    results.sort(key=lambda item: item[0])
    return events_dataset(ds, table, results, sfreq, tp)


def events_dataset(
    ds: xr.Dataset, table: pd.DataFrame, results: list[tuple[int, dict[str, np.ndarray]]], sfreq: float, tp: dict[str, Any]
) -> xr.Dataset:
    cols: dict[str, list[np.ndarray]] = {}
    sentence_base = 0
    for rec, tok in results:
        n = len(tok["start"])
        cols.setdefault("recording", []).append(np.full(n, rec, dtype=np.int64))
        cols.setdefault("subject", []).append(np.full(n, table.subject.iloc[rec], dtype=object))
        for key, value in tok.items():
            cols.setdefault(key, []).append(value + sentence_base if key == "sentence" else value)
        sentence_base += int(tok["sentence"].max()) + 1 if n else 0
    arrays = {k: np.concatenate(v) for k, v in cols.items()}
    arrays["onset_s"] = arrays["start"] / sfreq
    arrays["duration_s"] = (arrays["stop"] - arrays["start"]) / sfreq
    arrays["time_in_sentence_s"] = (arrays["start"] - arrays.pop("sentence_start")) / sfreq
    scalar = [k for k in arrays if arrays[k].ndim == 1]
    EventTable.validate(pd.DataFrame({k: arrays[k] for k in scalar}).astype({"subject": str}))
    events = xr.Dataset(
        {
            **{k: (("event",), arrays[k]) for k in scalar},
            "energy": (("event", "channel"), arrays["energy"]),
            "token": (("event", "channel", "time"), arrays["token"]),
        },
        coords={
            "channel": ds["channel"].values,
            "angle_deg": ("channel", ds["angle_deg"].values),
            "distance": ("channel", ds["distance"].values),
        },
        attrs={"sfreq": sfreq, "dataset": ds.attrs["dataset"], "tokenize_params": str(sorted(tp.items()))},
    )
    events["start"].attrs["description"] = "half-open sample index into the recording (harmonized rate)"
    events["token"].attrs["description"] = "samples z-scored by the subject's channel RMS"
    return events
