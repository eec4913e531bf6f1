"""Tokenize a harmonized dataset group, one task per block of recordings.

Tasks receive the store path and recording indices, not arrays, so a Dask worker reads only
its own slices of the store. Up to four passes over the recordings:

0. (hysteresis detector, ``floor_scope: calibration`` or ``subject``) a fixed-size summary of
   the window energy of each recording's part that goes into its subject's noise floor (the
   subject's first ``calibration_s`` seconds, or everything), pooled by the driver;
1. (states) per recording, the per-channel power of the band-passed signal (the training
   subjects' RMS sets the muscle-state feature thresholds); streamed in time blocks;
2. a seeded sample of the training subjects' feature rows, pooled in the driver to fit the
   muscle-state codebook (training subjects only);
3. events and tokens, and the muscle-state of every frame and channel, read block by block
   (the event detector's window energy, the tokens of each event, the states' filter blocks),
   so a worker never holds a whole recording.

The token store holds no statistic of any subject: tokens stay in the signal's units (see
:mod:`aemg.tokenize.events`) and consumers scale them at read time (:mod:`aemg.scaling`).

Results are small (index rows, 50-sample tokens, int16 states) and are gathered by the driver,
which writes the token store once (see :mod:`aemg.tokenize.stage`): no two tasks ever write,
let alone share a chunk. Every task is a pure function of the store and the parameters, so a
task re-run after its worker died returns the same bytes.
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
from aemg.store import open_group, text_array
from aemg.tokenize.events import (
    EventParams,
    cut_tokens,
    demeans,
    detect_read,
    floor_samples,
    recording_floor_summary,
    subject_floors,
)
from aemg.tokenize.state_tokens import (
    StateParams,
    StatePlan,
    fit_codebook,
    gather_sample,
    open_recordings,
    plan_states,
    recording_power,
    recording_states,
    sample_probabilities,
    states_dataset,
)

MapFn = Callable[..., Iterable[Any]]


def blocks(n_recordings: int, per_task: int) -> list[list[int]]:
    return [list(range(i, min(i + per_task, n_recordings))) for i in range(0, n_recordings, per_task)]


def block_power(store: Path, group: str, recs: list[int], tp: dict[str, Any]) -> list[tuple[int, np.ndarray, int]]:
    """Pass 1: (recording, band-passed sum of squares per channel, band-passed samples) for each
    recording in the block, streamed in time blocks."""
    data = open_recordings(store, group)
    sp = StateParams.from_params(tp, data.sfreq)
    out = []
    for rec in recs:
        emg, _, n_times = data.span(rec)
        out.append((rec, *recording_power(emg, n_times, data.n_chans, sp)))
    return out


def block_floors(store: Path, group: str, recs: list[int], tp: dict[str, Any], take: np.ndarray
                 ) -> list[tuple[int, tuple[np.ndarray, np.ndarray]]]:
    """Floor pass: (recording, window-energy summary of its first ``take[rec]`` samples) per
    recording that has any (see :func:`aemg.tokenize.events.floor_samples`)."""
    data = open_recordings(store, group)
    p = EventParams.from_params(tp, data.sfreq)
    out = []
    for rec in recs:
        if take[rec] > 0:
            read_emg, _, _ = data.span(rec)
            out.append((rec, recording_floor_summary(read_emg, int(take[rec]), data.n_chans, p)))
    return out


def recording_floor_samples(table: pd.DataFrame, p: EventParams) -> np.ndarray:
    """:func:`aemg.tokenize.events.floor_samples` of a harmonized recording table."""
    return floor_samples(table.subject.to_numpy(), table.session.to_numpy(), table.repetition.to_numpy(),
                         table.n_times.to_numpy(), p)


def block_tokens(
    store: Path,
    group: str,
    recs: list[int],
    tp: dict[str, Any],
    plan: StatePlan | None = None,
    floors: dict[str, float] | None = None,
) -> list[tuple[int, dict[str, np.ndarray], tuple[np.ndarray, np.ndarray] | None]]:
    """Pass 3: (recording, event tokens, (states, frame gesture) or None) per recording.

    ``floors`` are the subjects' hysteresis noise floors (``floor_scope: calibration`` or
    ``subject``); a subject missing from it, or ``None``, means each recording's own floor.
    Tokens are de-meaned when the dataset's ``signal`` is raw EMG, never scaled.
    """
    data = open_recordings(store, group)
    p = EventParams.from_params(tp, data.sfreq)
    demean = demeans(signal_of(open_group(store, group)))
    out = []
    for rec in recs:
        read_emg, read_gesture, n_times = data.span(rec)
        subject = data.table.subject.iloc[rec]
        found = detect_read(read_emg, n_times, data.n_chans, p, (floors or {}).get(subject))
        events = cut_tokens(read_emg, read_gesture, n_times, data.n_chans, found, p, demean)
        states = None
        if plan is not None:
            assert plan.codebook is not None
            states = recording_states(read_emg, read_gesture, n_times, data.n_chans, plan.sp, plan.thr, plan.codebook)
        out.append((rec, events, states))
    return out


def signal_of(ds: xr.Dataset) -> str:
    """The harmonized group's ``signal`` kind (``emg`` when an older store does not say)."""
    return str(ds.attrs.get("signal", "emg"))


def _gather(map_fn: MapFn, fn: Callable[[list[int]], list[Any]], parts: list[list[int]]) -> list[Any]:
    items = [item for chunk in map_fn(fn, parts) for item in chunk]
    items.sort(key=lambda item: item[0])
    return items


def state_plan(store: Path, group: str, tp: dict[str, Any], map_fn: MapFn = map,
               powers: list[tuple[int, np.ndarray, int]] | None = None) -> StatePlan:
    """Passes 1-2 and the fit: subject split, thresholds and the training-subject codebook."""
    ds = open_group(store, group)
    table = recording_table_from(ds)
    per_task = int(tp["recordings_per_task"])
    if powers is None:
        powers = _gather(map_fn, lambda recs: block_power(store, group, recs, tp), blocks(len(table), per_task))
    plan = plan_states(group, table, tp, float(ds.attrs["sfreq"]), {rec: (bp, n) for rec, bp, n in powers})
    train_recs = [int(r) for r in np.flatnonzero(table.subject.isin(plan.train).to_numpy())]
    probs = sample_probabilities(table, train_recs, plan.sp, ds.sizes["channel"], plan.sp.max_train_rows)
    sample = gather_sample(map_fn, store, group, tp, train_recs, probs, plan.thr, per_task)
    plan.codebook = fit_codebook(plan, sample)
    return plan


def hysteresis_floors(store: Path, group: str, tp: dict[str, Any], map_fn: MapFn = map) -> dict[str, float] | None:
    """The subjects' hysteresis noise floors (pass 0), or None when each recording uses its own."""
    ds = open_group(store, group)
    p = EventParams.from_params(tp, float(ds.attrs["sfreq"]))
    if not p.subject_floor:
        return None
    table = recording_table_from(ds)
    take = recording_floor_samples(table, p)
    parts = blocks(len(table), int(tp["recordings_per_task"]))
    summaries = _gather(map_fn, lambda recs: block_floors(store, group, recs, tp, take), parts)
    return subject_floors([(table.subject.iloc[rec], summary) for rec, summary in summaries], p.floor_quantile)


def tokenize_group(store: Path, group: str, tp: dict[str, Any], map_fn: MapFn = map, states: bool = True
                   ) -> dict[str, xr.Dataset]:
    """``{"events": ..., "states": ...}`` of one dataset (``states`` left out when False)."""
    ds = open_group(store, group)
    table = recording_table_from(ds)
    sfreq = float(ds.attrs["sfreq"])
    parts = blocks(len(table), int(tp["recordings_per_task"]))
    tp = dict(tp)
    plan = state_plan(store, group, tp, map_fn) if states else None
    floors = hysteresis_floors(store, group, tp, map_fn)
    results = _gather(map_fn, lambda recs: block_tokens(store, group, recs, tp, plan, floors), parts)
    out = {"events": events_dataset(ds, table, [(rec, tok) for rec, tok, _ in results], sfreq, tp)}
    if plan is not None:
        out["states"] = states_dataset(ds, table, plan, [(rec, *st) for rec, _, st in results])
    return out


def tokenize_dataset(store: Path, group: str, tp: dict[str, Any], map_fn: MapFn = map) -> xr.Dataset:
    """The ``events`` table of one dataset as an xarray Dataset along ``event`` (no states)."""
    return tokenize_group(store, group, tp, map_fn, states=False)["events"]


def events_dataset(
    ds: xr.Dataset, table: pd.DataFrame, results: list[tuple[int, dict[str, np.ndarray]]], sfreq: float, tp: dict[str, Any]
) -> xr.Dataset:
    cols: dict[str, list[np.ndarray]] = {}
    base = {"sentence": 0, "contraction": 0}  # ids unique within the dataset
    for rec, tok in results:
        n = len(tok["start"])
        cols.setdefault("recording", []).append(np.full(n, rec, dtype=np.int64))
        cols.setdefault("subject", []).append(np.full(n, table.subject.iloc[rec], dtype=object))
        for key, value in tok.items():
            cols.setdefault(key, []).append(value + base[key] if key in base else value)
        for key in base:
            base[key] += int(tok[key].max()) + 1 if n else 0
    arrays = {k: np.concatenate(v) for k, v in cols.items()}
    arrays["onset_s"] = arrays["start"] / sfreq
    arrays["duration_s"] = (arrays["stop"] - arrays["start"]) / sfreq
    arrays["time_in_sentence_s"] = (arrays["start"] - arrays.pop("sentence_start")) / sfreq
    scalar = [k for k in arrays if arrays[k].ndim == 1]
    EventTable.validate(pd.DataFrame({k: arrays[k] for k in scalar}).astype({"subject": str}))
    # who and what are coordinates along `event`, subject in plain <U: `ev.where(ev.subject == ...)`,
    # `ev.groupby("gesture")` and `to_dataframe` work on the store as read back
    arrays["subject"] = text_array(arrays["subject"])
    keys = ("subject", "gesture")
    events = xr.Dataset(
        {
            **{k: (("event",), arrays[k]) for k in scalar if k not in keys},
            "energy": (("event", "channel"), arrays["energy"]),
            "token": (("event", "channel", "time"), arrays["token"]),
        },
        coords={
            **{k: (("event",), arrays[k]) for k in keys},
            "channel": ds["channel"].values,
            "angle_deg": ("channel", ds["angle_deg"].values),
            "distance": ("channel", ds["distance"].values),
        },
        attrs={"sfreq": sfreq, "dataset": ds.attrs["dataset"], "tokenize_params": str(sorted(tp.items())),
               **token_attrs(ds, EventParams.from_params(tp, sfreq))},
    )
    events["start"].attrs["description"] = "half-open sample index into the recording (harmonized rate)"
    events["contraction"].attrs["description"] = "id of the detected contraction (event) the token was cut from"
    events["token"].attrs["description"] = (
        f"samples in the harmonized signal's units ({events.attrs['token_units']}), "
        + ("each token's mean removed" if events.attrs["token_demeaned"] else "level kept (not de-meaned)")
        + "; not scaled: divide by a per-subject channel RMS at read time (aemg.scaling)")
    return events


def token_attrs(ds: xr.Dataset, p: EventParams) -> dict[str, Any]:
    """What the events say about their tokens and detector (copied into ``folds.json``)."""
    signal = signal_of(ds)
    return {
        "signal": signal,
        "token_units": str(ds.attrs.get("units", "unknown")),
        "token_demeaned": demeans(signal),
        "detector": p.detector,
        "floor_scope": p.floor_scope if p.detector == "hysteresis" else "none",
    } | ({"calibration_s": p.calibration / float(ds.attrs["sfreq"])} if p.subject_floor and p.floor_scope == "calibration" else {})
