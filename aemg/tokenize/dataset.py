"""Tokenize a harmonized dataset group into a token store: Dask workers write their own chunks.

Tasks receive the (pinned) store and recording indices, not arrays, so a Dask worker reads only
its own slices of the store. Up to five passes over the recordings:

0. (hysteresis detector, ``floor_scope: calibration`` or ``subject``) a fixed-size summary of
   the window energy of each recording's part that goes into its subject's noise floor (the
   subject's first ``calibration_s`` seconds, or everything), pooled by the driver;
1. (states) per recording, the per-channel power of the band-passed signal (the training
   subjects' RMS sets the muscle-state feature thresholds); streamed in time blocks;
2. a seeded sample of the training subjects' feature rows, pooled in the driver to fit the
   muscle-state codebook (training subjects only);
3. event detection: each recording's contraction events as (start, stop) sample pairs, a few
   bytes per event; from them alone the driver lays out the event arrays (:class:`EventLayout`:
   which rows, sentence ids and contraction ids each recording gets) and creates them, empty,
   in the token store's open transaction;
4. tokens: each task cuts its recordings' events into tokens a batch at a time and writes the
   batches straight into its rows of the store (:class:`aemg.store.ForkWriter`), returning only
   its recordings' muscle states (int16 frames); the driver merges the tasks' writes and commits
   once (:mod:`aemg.tokenize.stage`).

So neither a worker nor the driver ever holds a dataset's, or a recording's, tokens: a worker
holds one batch (``token_batch_mb``), the driver the event pairs and the states. The token store
holds no statistic of any subject: tokens stay in the signal's units (see
:mod:`aemg.tokenize.events`) and consumers scale them at read time (:mod:`aemg.scaling`). Every
task is a pure function of the store and the parameters, so a task re-run after its worker died
writes the same bytes (its first attempt's writes died with that worker's fork, never merged).
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from aemg.store import ForkWriter, GroupWrite, StoreLike, group_writer, open_group, recording_table_from
from aemg.tokenize.events import (
    EventParams,
    cut_tokens,
    demeans,
    detect_read,
    event_token_counts,
    floor_samples,
    recording_floor_summary,
    subject_floors,
    token_counts,
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
    states_encoding,
)

MapFn = Callable[..., Iterable[Any]]


def blocks(n_recordings: int, per_task: int) -> list[list[int]]:
    return [list(range(i, min(i + per_task, n_recordings))) for i in range(0, n_recordings, per_task)]


def block_power(store: StoreLike, group: str, recs: list[int], tp: dict[str, Any]) -> list[tuple[int, np.ndarray, int]]:
    """Pass 1: (recording, band-passed sum of squares per channel, band-passed samples) for each
    recording in the block, streamed in time blocks."""
    data = open_recordings(store, group)
    sp = StateParams.from_params(tp, data.sfreq)
    out = []
    for rec in recs:
        emg, _, n_times = data.span(rec)
        out.append((rec, *recording_power(emg, n_times, data.n_chans, sp)))
    return out


def block_floors(store: StoreLike, group: str, recs: list[int], tp: dict[str, Any], take: np.ndarray
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


def block_events(store: StoreLike, group: str, recs: list[int], tp: dict[str, Any],
                 floors: dict[str, float] | None = None) -> list[tuple[int, list[tuple[int, int]]]]:
    """Pass 3: (recording, detected events) per recording in the block.

    ``floors`` are the subjects' hysteresis noise floors (``floor_scope: calibration`` or
    ``subject``); a subject missing from it, or ``None``, means each recording's own floor.
    """
    data = open_recordings(store, group)
    p = EventParams.from_params(tp, data.sfreq)
    out = []
    for rec in recs:
        read_emg, _, n_times = data.span(rec)
        out.append((rec, detect_read(read_emg, n_times, data.n_chans, p, (floors or {}).get(data.table.subject.iloc[rec]))))
    return out


@dataclass(frozen=True)
class EventLayout:
    """Where each recording's tokens go in the dataset's event arrays, fixed before any is cut."""

    events: dict[int, list[tuple[int, int]]]
    first_row: np.ndarray
    n_rows: np.ndarray
    first_sentence: np.ndarray
    first_contraction: np.ndarray
    chunk: int  # rows per chunk of every event array
    subject_width: int

    @property
    def total(self) -> int:
        return int(self.first_row[-1] + self.n_rows[-1]) if len(self.n_rows) else 0

    def span(self, recs: list[int]) -> tuple[int, int]:
        return int(self.first_row[recs[0]]), int(self.first_row[recs[-1]] + self.n_rows[recs[-1]])


def event_layout(table: pd.DataFrame, events: dict[int, list[tuple[int, int]]], p: EventParams, n_chans: int,
                 chunk_mb: float) -> EventLayout:
    counts = np.array([token_counts(events[rec], int(table.n_times.iloc[rec]), n_chans, p) for rec in range(len(table))],
                      dtype=np.int64).reshape(-1, 2)
    starts = np.cumsum(counts, axis=0) - counts
    n_events = np.array([len(events[rec]) for rec in range(len(table))], dtype=np.int64)
    row_bytes = n_chans * p.token_len * 4
    return EventLayout(
        events=events, first_row=starts[:, 0], n_rows=counts[:, 0], first_sentence=starts[:, 1],
        first_contraction=np.concatenate([[0], np.cumsum(n_events)[:-1]]).astype(np.int64),
        chunk=max(1, int(chunk_mb * 2**20) // row_bytes), subject_width=max((len(s) for s in table.subject), default=1))


EVENT_VARIABLES: dict[str, tuple[tuple[str, ...], str]] = {
    "recording": (("event",), "int64"), "start": (("event",), "int64"), "stop": (("event",), "int64"),
    "sentence": (("event",), "int64"), "order": (("event",), "int64"), "contraction": (("event",), "int64"),
    "dominant_channel": (("event",), "int64"), "onset_s": (("event",), "float64"),
    "duration_s": (("event",), "float64"), "time_in_sentence_s": (("event",), "float64"),
    "energy": (("event", "channel"), "float32"), "token": (("event", "channel", "time"), "float32"),
    "subject": (("event",), "<U"), "gesture": (("event",), "int16"),
}
EVENT_COORDS = ("subject", "gesture")  # who and what: `ev.where(ev.subject == ...)`, `ev.groupby("gesture")`


def event_rows(tok: dict[str, np.ndarray], rec: int, subject: str, sfreq: float, sentence0: int, contraction0: int
               ) -> dict[str, np.ndarray]:
    """One batch of :func:`cut_tokens` output as rows of the event arrays (ids made dataset-wide)."""
    n = len(tok["start"])
    return {
        **{k: v for k, v in tok.items() if k not in ("sentence", "contraction", "sentence_start")},
        "sentence": tok["sentence"] + sentence0, "contraction": tok["contraction"] + contraction0,
        "recording": np.full(n, rec, np.int64), "subject": np.full(n, subject),
        "onset_s": tok["start"] / sfreq, "duration_s": (tok["stop"] - tok["start"]) / sfreq,
        "time_in_sentence_s": (tok["start"] - tok["sentence_start"]) / sfreq,
    }


def recording_batches(events: list[tuple[int, int]], n_times: int, n_chans: int, p: EventParams, max_rows: int
                      ) -> Iterator[tuple[int, int, int, list[tuple[int, int]]]]:
    """(first row, first sentence, first contraction, events) per batch of at most ~``max_rows`` tokens,
    all relative to the recording; a batch holds at least one event."""
    tokens, sentences = event_token_counts(events, n_times, n_chans, p)
    row_end, sentence_end = np.cumsum(tokens), np.cumsum(sentences)
    first = 0
    while first < len(events):
        row = int(row_end[first] - tokens[first])
        last = max(first + 1, int(np.searchsorted(row_end, row + max_rows, side="right")))
        yield row, int(sentence_end[first] - sentences[first]), first, events[first:last]
        first = last


def block_write(store: StoreLike, group: str, recs: list[int], tp: dict[str, Any], layout: EventLayout,
                writer: ForkWriter, plan: StatePlan | None = None
                ) -> tuple[ForkWriter, list[tuple[int, tuple[np.ndarray, np.ndarray] | None]]]:
    """Pass 4: the block's tokens written through ``writer``; returns it and (recording, states or None).

    Tokens are de-meaned when the dataset's ``signal`` is raw EMG, never scaled.
    """
    data = open_recordings(store, group)
    p = EventParams.from_params(tp, data.sfreq)
    demean = demeans(signal_of(open_group(store, group)))
    subject_dtype = f"<U{layout.subject_width}"
    states = []
    for rec in recs:
        read_emg, read_gesture, n_times = data.span(rec)
        subject = str(data.table.subject.iloc[rec])
        for row, sentence, contraction, batch in recording_batches(layout.events[rec], n_times, data.n_chans, p,
                                                                   layout.chunk):
            tok = cut_tokens(read_emg, read_gesture, n_times, data.n_chans, batch, p, demean)
            rows = event_rows(tok, rec, subject, data.sfreq, int(layout.first_sentence[rec]) + sentence,
                              int(layout.first_contraction[rec]) + contraction)
            for name, values in rows.items():
                writer.write(f"events/{name}", int(layout.first_row[rec]) + row,
                             values.astype(subject_dtype if name == "subject" else EVENT_VARIABLES[name][1]))
        st = None
        if plan is not None:
            assert plan.codebook is not None
            st = recording_states(read_emg, read_gesture, n_times, data.n_chans, plan.sp, plan.thr, plan.codebook)
        states.append((rec, st))
    return writer, states


def signal_of(ds: xr.Dataset) -> str:
    """The harmonized group's ``signal`` kind (``emg`` when an older store does not say)."""
    return str(ds.attrs.get("signal", "emg"))


def _gather(map_fn: MapFn, fn: Callable[[list[int]], list[Any]], parts: list[list[int]]) -> list[Any]:
    items = [item for chunk in map_fn(fn, parts) for item in chunk]
    items.sort(key=lambda item: item[0])
    return items


def state_plan(store: StoreLike, group: str, tp: dict[str, Any], map_fn: MapFn = map,
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


def hysteresis_floors(store: StoreLike, group: str, tp: dict[str, Any], map_fn: MapFn = map) -> dict[str, float] | None:
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


def tokenize_into(write: GroupWrite, store: StoreLike, group: str, tp: dict[str, Any], map_fn: MapFn = map,
                  states: bool = True) -> dict[str, Any]:
    """Tokenize dataset ``group`` of ``store`` into the open token-store transaction ``write``
    (``states`` left out when False); returns the numbers of the
    muscle states written (the events' are read back by the caller)."""
    ds = open_group(store, group)
    table = recording_table_from(ds)
    sfreq, n_chans = float(ds.attrs["sfreq"]), int(ds.sizes["channel"])
    parts = blocks(len(table), int(tp["recordings_per_task"]))
    plan = state_plan(store, group, tp, map_fn) if states else None
    floors = hysteresis_floors(store, group, tp, map_fn)
    found = dict(_gather(map_fn, lambda recs: block_events(store, group, recs, tp, floors), parts))
    p = EventParams.from_params(tp, sfreq)
    layout = event_layout(table, found, p, n_chans, float(tp["token_chunk_mb"]))
    write.to_zarr(xr.Dataset(attrs={"dataset": group}))  # replaces the dataset's previous tokens
    write.to_zarr(events_skeleton(ds, layout, p, tp), path="events", mode="w-", compute=False,
                  encoding={name: {"chunks": (layout.chunk, *(ds.sizes[d] if d == "channel" else p.token_len
                                                              for d in dims[1:]))}
                            for name, (dims, _) in EVENT_VARIABLES.items()})
    writers = write.fork([layout.span(recs) for recs in parts], layout.chunk, layout.total)
    results = map_fn(lambda job: block_write(store, group, job[0], tp, layout, job[1], plan), list(zip(parts, writers, strict=True)))
    done, recording_states_ = [], []
    for writer, part in results:
        done.append(writer)
        recording_states_ += part
    write.merge(done)
    summary: dict[str, Any] = {}
    if plan is not None:
        recording_states_.sort(key=lambda item: item[0])
        st = states_dataset(ds, table, plan, [(rec, *item) for rec, item in recording_states_])
        write.to_zarr(st, path="states", mode="w-", encoding=states_encoding(st))
        summary.update(frames=int(st.sizes["frame"]), states_k=int(st.attrs["k"]),
                       heldout_subjects=len(st.attrs["heldout_subjects"]))
    return summary


def tokenize_dataset(store: StoreLike, group: str, tp: dict[str, Any], map_fn: MapFn = map) -> xr.Dataset:
    """The ``events`` of one dataset, in memory (no states): tokenized into a scratch token store
    by the same code as ``aemg tokenize``, and read back."""
    with tempfile.TemporaryDirectory(prefix="aemg-tokens-") as scratch:
        with group_writer(Path(scratch) / "tokens", group) as write:
            tokenize_into(write, store, group, tp, map_fn, states=False)
        return open_group(Path(scratch) / "tokens", f"{group}/events").load()


def events_skeleton(ds: xr.Dataset, layout: EventLayout, p: EventParams, tp: dict[str, Any]) -> xr.Dataset:
    """The ``events`` group with its final shapes and attributes, every array empty (Dask zeros,
    written as metadata only): workers fill the rows."""
    sizes = {"event": layout.total, "channel": ds.sizes["channel"], "time": p.token_len}
    arrays = {}
    for name, (dims, dtype) in EVENT_VARIABLES.items():
        shape = tuple(sizes[d] for d in dims)
        dtype = f"<U{layout.subject_width}" if dtype == "<U" else dtype
        arrays[name] = (dims, da.zeros(shape, dtype=dtype, chunks=(layout.chunk, *shape[1:])) if layout.total
                        else np.zeros(shape, dtype=dtype))
    events = xr.Dataset(
        {k: v for k, v in arrays.items() if k not in EVENT_COORDS},
        coords={
            **{k: arrays[k] for k in EVENT_COORDS},
            "channel": ds["channel"].values,
            "angle_deg": ("channel", ds["angle_deg"].values),
            "distance": ("channel", ds["distance"].values),
        },
        attrs={"sfreq": float(ds.attrs["sfreq"]), "dataset": ds.attrs["dataset"], "tokenize_params": str(sorted(tp.items())),
               **token_attrs(ds, p)},
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
