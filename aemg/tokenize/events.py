"""Contraction events (AEMG's Neuromuscular Contraction Tokenizer) as index rows into a signal.

An event (a *contraction*) is a run of windows whose energy exceeds an adaptive threshold. Each
event is cut into tokens of ``token_len`` samples; the tokens of one event, in order, form one or
more *sentences*. Tokens are index rows (start, stop) plus the samples in the signal's own units:
de-meaned when the signal is raw EMG (zero-mean; its offset is electrode drift), kept as they are
for an envelope, whose level *is* the information. No amplitude scale is applied here: a
per-subject scale is a statistic of the subject's data, so each consumer applies it at read time
from the rows it may look at (:mod:`aemg.scaling`). The dominant channel and per-channel energy
are taken from the unscaled samples (AEMG's release computes them after z-scoring, which makes
every channel look alike).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

DETECTORS = ("aemg_energy", "hysteresis")
FLOOR_SCOPES = ("recording", "subject", "calibration")
DEMEANED_SIGNALS = ("emg",)  # zero-mean kinds: a token's mean is offset, not muscle activity
ENERGY_BLOCK_VALUES = 1 << 20  # samples x channels per block of window_energy: 4 MB of float32
FLOOR_POINTS = 1024  # energy values per recording sent to the driver for a subject floor

Reader = Callable[[int, int], np.ndarray]


@dataclass(frozen=True)
class EventParams:
    detector: str
    window: int  # samples
    stride: int
    baseline_fraction: float
    threshold_std: float
    token_len: int
    max_order: int
    max_tokens_per_sentence: int
    min_gap: int
    floor_quantile: float
    floor_scope: str
    calibration: int  # samples of a subject's signal, in chronological order, pooled for its floor
    on_ratio: float
    off_ratio: float

    @classmethod
    def from_params(cls, tp: dict[str, Any], sfreq: float) -> EventParams:
        if tp["detector"] not in DETECTORS:
            raise ValueError(f"unknown detector {tp['detector']!r}; available: {', '.join(DETECTORS)}")
        hyst = tp["hysteresis"]
        scope = hyst["floor_scope"]
        if scope not in FLOOR_SCOPES:
            raise ValueError(f"tokenize.hysteresis.floor_scope={scope!r} is unknown; set one of {', '.join(FLOOR_SCOPES)}")
        return cls(
            detector=tp["detector"],
            window=max(1, round(tp["window_s"] * sfreq)),
            stride=max(1, round(tp["stride_s"] * sfreq)),
            baseline_fraction=float(tp["baseline_fraction"]),
            threshold_std=float(tp["threshold_std"]),
            token_len=int(tp["token_len"]),
            max_order=int(tp["max_order"]),
            max_tokens_per_sentence=int(tp["max_tokens_per_sentence"]),
            min_gap=round(tp["min_gap_s"] * sfreq),
            floor_quantile=float(hyst["floor_quantile"]),
            floor_scope=scope,
            calibration=max(1, round(float(hyst["calibration_s"]) * sfreq)),
            on_ratio=float(hyst["on_ratio"]),
            off_ratio=float(hyst["off_ratio"]),
        )

    @property
    def subject_floor(self) -> bool:
        """True when the hysteresis detector takes one floor per subject from a pass over its recordings.

        ``calibration`` pools the subject's first ``calibration_s`` seconds (what a user records
        when putting the band on), ``subject`` pools *all* its recordings, which reads the test
        subject's unlabelled data: valid only under the unlabelled-target protocol.
        """
        return self.detector == "hysteresis" and self.floor_scope in ("subject", "calibration")


def demeans(signal: str) -> bool:
    """Whether tokens of a dataset whose ``signal`` attr is ``signal`` have their mean removed."""
    return signal in DEMEANED_SIGNALS


def floor_samples(subject: np.ndarray, session: np.ndarray, repetition: np.ndarray, n_times: np.ndarray,
                  p: EventParams) -> np.ndarray:
    """Samples of each recording that go into its subject's floor (from its start; 0 = none).

    ``subject`` scope: every sample. ``calibration`` scope: the subject's recordings in
    chronological order (session, repetition, recording index; see
    :func:`aemg.evaluate.trials.chronological_rank`) until ``p.calibration`` samples, the last
    one cut short, so a subject's floor does not depend on anything it recorded afterwards.
    """
    n_times = np.asarray(n_times, np.int64)
    if p.floor_scope != "calibration":
        return n_times.copy()
    from aemg.evaluate.trials import chronological_rank

    session_rank = np.unique(np.asarray(session).astype(str), return_inverse=True)[1].astype(np.int64)
    repetition = np.asarray(repetition, np.int64)
    key = session_rank * (int(repetition.max(initial=0)) - int(repetition.min(initial=0)) + 1) + repetition
    rank = chronological_rank(np.arange(len(n_times)), np.zeros(len(n_times), np.int64), key)
    subject = np.asarray(subject).astype(str)
    take = np.zeros(len(n_times), np.int64)
    for s in np.unique(subject):
        recs = np.flatnonzero(subject == s)
        recs = recs[np.argsort(rank[recs])]
        before = np.concatenate([[0], np.cumsum(n_times[recs])[:-1]])
        take[recs] = np.clip(p.calibration - before, 0, n_times[recs])
    return take


def _sum_rows(a: np.ndarray) -> np.ndarray:
    """Sum over axis 0 by pairwise halving, in place, with elementwise adds only.

    np.sum and einsum choose their inner loops by array size, so a column's rounding could
    depend on the size of the block it was read in (seen with einsum for < 8 rows); here it
    depends on the number of rows only, which keeps block-wise window energy bit-exact.
    """
    while a.shape[0] > 1:
        half, odd = divmod(a.shape[0], 2)
        np.add(a[:half], a[half:2 * half], out=a[:half])
        if odd:
            a[0] += a[-1]
        a = a[:half]
    return a[0]


def n_windows(n_times: int, window: int, stride: int) -> int:
    """Windows of a recording; one short window when it is shorter than ``window`` samples."""
    return 0 if n_times == 0 else 1 if n_times < window else 1 + (n_times - window) // stride


def window_energy(read: Reader, n_times: int, n_chans: int, window: int, stride: int,
                  block_values: int = ENERGY_BLOCK_VALUES) -> np.ndarray:
    """Mean-square energy per window, summed over channels: (n_windows,) float32, read in blocks.

    Only one block of samples is held at a time (``block_values`` samples x channels, rounded
    to whole strides), so memory does not grow with the recording; the energy array itself is
    ``stride x n_chans`` times smaller than the signal. Sums are taken over a grid of
    ``gcd(window, stride)``-sample cells fixed by the recording; the cells of a window that
    straddles two blocks are carried over, and every sum is a fixed sequence of elementwise
    float32 adds (:func:`_sum_rows`), so the result is bit-identical whatever the block size.
    A recording shorter than ``window`` is one window over all of it.
    """
    n_win = n_windows(n_times, window, stride)
    if n_win == 0:
        return np.zeros(0, np.float32)
    if n_times < window:
        window = stride = n_times
    cell = math.gcd(window, stride)
    per_window, per_stride = window // cell, stride // cell
    used = (n_win - 1) * stride + window  # samples after the last window are in no window
    span = min(used, max(stride, block_values // max(n_chans, 1) // stride * stride))
    squares = np.empty((n_chans, span), np.float32)  # channel-major: the channel sum is row adds
    cells = np.empty(per_window + span // cell, np.float32)  # carried cells, then this block's
    energy = np.empty(n_win, np.float32)
    # cells[0] is always the first cell of window `done`; `skip` counts cells still to come
    # that no window covers (only when stride > window)
    done, carried, skip = 0, 0, 0
    for a in range(0, used, span):
        b = min(used, a + span)
        sq = np.square(read(a, b).T, out=squares[:, :b - a], dtype=np.float32)
        power = _sum_rows(sq)  # (b - a,) summed over channels, a view into squares
        n_new = (b - a) // cell
        new = _sum_rows(power.reshape(n_new, cell).T)
        drop, skip = min(skip, n_new), skip - min(skip, n_new)
        np.copyto(cells[carried:carried + n_new - drop], new[drop:])
        have = carried + n_new - drop
        ready = (have - per_window) // per_stride + 1 if have >= per_window else 0
        if ready:
            out, last = energy[done:done + ready], (ready - 1) * per_stride + 1
            np.copyto(out, cells[0:last:per_stride])
            for j in range(1, per_window):
                out += cells[j:j + last:per_stride]
            done += ready
        next_start = ready * per_stride
        carried, skip = max(0, have - next_start), skip + max(0, next_start - have)
        cells[:carried] = cells[next_start:have]
    energy /= np.float32(window)
    return energy


def _runs(active: np.ndarray) -> list[tuple[int, int]]:
    """Half-open [first, last+1) index runs of True values."""
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def detect_energy(energy: np.ndarray, p: EventParams) -> np.ndarray:
    """AEMG: windows with energy > mean + k·std of the first ``baseline_fraction`` of windows.

    If nothing crosses (the recording starts mid-contraction, as single-gesture files do), the
    threshold falls back to the median + k·std of the whole recording, so that every recording
    yields its strongest activity rather than nothing. Returns the active-window mask.
    """
    e = energy.astype(np.float64)
    head = e[: max(1, round(p.baseline_fraction * len(e)))]
    active = e > head.mean() + p.threshold_std * head.std()
    if not active.any():
        active = e > np.median(e) + p.threshold_std * e.std()
    return active


def recording_floor(energy: np.ndarray, p: EventParams) -> float:
    """The hysteresis noise floor of one recording: a low quantile of its window energy."""
    return float(np.quantile(energy.astype(np.float64), p.floor_quantile))


def detect_hysteresis(energy: np.ndarray, p: EventParams, floor: float | None = None) -> np.ndarray:
    """Onset/offset with hysteresis: on above ``on_ratio`` x the noise floor, off below ``off_ratio`` x.

    The floor is a low quantile of window energy, which is rest even when a file starts
    mid-contraction (unlike AEMG's first 10 %); ratios of energy make the thresholds
    independent of units and gain. A recording that never rests (a Myo single-gesture file)
    has no rest to take the floor from: pass the subject's ``floor`` (:func:`subject_floors`,
    ``floor_scope: calibration`` or ``subject``); without it the recording's own floor is used. Returns the
    active-window mask; runs shorter than one token are dropped by the caller.
    """
    floor = recording_floor(energy, p) if floor is None else floor
    floor = max(floor, np.finfo(np.float64).tiny)
    on, off = p.on_ratio * floor, p.off_ratio * floor
    state, active = False, np.zeros(len(energy), dtype=bool)
    for i, e in enumerate(energy.tolist()):
        state = e > off if state else e > on
        active[i] = state
    return active


def floor_summary(energy: np.ndarray, points: int = FLOOR_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(values, weights) standing for one recording's window energies, at most ``points`` of each.

    A recording with at most ``points`` windows sends them all (weight 1); a longer one sends
    ``points`` evenly spaced quantiles, each weighing ``n_windows / points``, so what a task
    returns to the driver does not grow with the recording and a pooled quantile is off by at
    most ``1 / points`` in probability.
    """
    e = np.sort(energy.astype(np.float64))
    if len(e) <= points:
        return e, np.ones(len(e))
    return np.quantile(e, (np.arange(points) + 0.5) / points), np.full(points, len(e) / points)


def recording_floor_summary(read: Reader, n_times: int, n_chans: int, p: EventParams) -> tuple[np.ndarray, np.ndarray]:
    """:func:`floor_summary` of one recording's window energy, read block by block."""
    return floor_summary(window_energy(read, n_times, n_chans, p.window, p.stride))


def subject_floors(summaries: Iterable[tuple[str, tuple[np.ndarray, np.ndarray]]], quantile: float) -> dict[str, float]:
    """Per subject, the ``quantile`` of the window energies pooled over the summaries given
    (its calibration prefix, or all its recordings; see :func:`floor_samples`).

    Pooling over recordings is what gives a subject that never rests within one file (a Myo
    single-gesture recording) the floor of its quiet recordings.
    """
    pooled: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for subject, summary in summaries:
        pooled.setdefault(subject, []).append(summary)
    floors = {}
    for subject, parts in pooled.items():
        values = np.concatenate([v for v, _ in parts])
        weights = np.concatenate([w for _, w in parts])
        if len(values) == 0:
            continue
        order = np.argsort(values, kind="stable")
        cum = np.cumsum(weights[order])
        at = min(int(np.searchsorted(cum, quantile * cum[-1])), len(values) - 1)
        floors[subject] = float(values[order][at])
    return floors


def _windows_to_samples(runs: list[tuple[int, int]], p: EventParams, n_times: int) -> list[tuple[int, int]]:
    spans = [(a * p.stride, min(n_times, (b - 1) * p.stride + p.window)) for a, b in runs]
    merged: list[tuple[int, int]] = []
    for start, stop in spans:
        if merged and start - merged[-1][1] <= p.min_gap:
            merged[-1] = (merged[-1][0], stop)
        else:
            merged.append((start, stop))
    return merged


def detect_read(read: Reader, n_times: int, n_chans: int, p: EventParams, floor: float | None = None,
                block_values: int = ENERGY_BLOCK_VALUES) -> list[tuple[int, int]]:
    """Events of one recording read block by block: half-open (start, stop) sample rows.

    ``floor`` is the hysteresis detector's noise floor when it comes from elsewhere (the
    subject's, see :func:`detect_hysteresis`); the energy detector ignores it. The events do
    not depend on ``block_values`` (see :func:`window_energy`).
    """
    energy = window_energy(read, n_times, n_chans, p.window, p.stride, block_values)
    if len(energy) == 0:
        return []
    if p.detector == "aemg_energy":
        return _windows_to_samples(_runs(detect_energy(energy, p)), p, n_times)
    runs = [(a, b) for a, b in _runs(detect_hysteresis(energy, p, floor))
            if (b - a - 1) * p.stride + p.window >= p.token_len]
    return _windows_to_samples(runs, p, n_times)


def detect(x: np.ndarray, p: EventParams, floor: float | None = None) -> list[tuple[int, int]]:
    """:func:`detect_read` on an in-memory (n_times, n_chans) array."""
    return detect_read(lambda a, b: x[a:b], len(x), x.shape[1], p, floor)


def tokens_from_events(
    x: np.ndarray, gesture: np.ndarray, events: list[tuple[int, int]], p: EventParams, demean: bool
) -> dict[str, np.ndarray]:
    """:func:`cut_tokens` on in-memory arrays."""
    return cut_tokens(lambda a, b: x[a:b], lambda a, b: gesture[a:b], len(x), x.shape[1], events, p, demean)


def sentence_orders(n_chans: int, p: EventParams) -> int:
    """Token orders per sentence: ``min(max_order, max_tokens_per_sentence // n_chans)``, at least one."""
    return max(1, min(p.max_order, p.max_tokens_per_sentence // n_chans))


def event_token_counts(events: list[tuple[int, int]], n_times: int, n_chans: int, p: EventParams
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, sentences) that :func:`cut_tokens` makes of each event, without reading a sample.

    Lets a driver lay out a dataset's event arrays (where each recording's tokens go) from the
    detected events alone, before any worker cuts a token.
    """
    if n_times < p.token_len:
        return np.zeros(len(events), np.int64), np.zeros(len(events), np.int64)
    n_tok = np.maximum(1, -(-np.diff(np.asarray(events, np.int64).reshape(-1, 2), axis=1)[:, 0] // p.token_len))
    return n_tok, -(-n_tok // sentence_orders(n_chans, p))


def token_counts(events: list[tuple[int, int]], n_times: int, n_chans: int, p: EventParams) -> tuple[int, int]:
    """(tokens, sentences) of all ``events`` together (see :func:`event_token_counts`)."""
    tokens, sentences = event_token_counts(events, n_times, n_chans, p)
    return int(tokens.sum()), int(sentences.sum())


def cut_tokens(
    read: Reader, read_gesture: Reader, n_times: int, n_chans: int, events: list[tuple[int, int]],
    p: EventParams, demean: bool, rows_per_read: int = 256,
) -> dict[str, np.ndarray]:
    """Cut events into fixed-length tokens in the signal's units, each token's mean removed only
    when ``demean`` (raw EMG, see :func:`demeans`); ``contraction`` is the index of the event in
    ``events`` a token was cut from, shared by all the sentences of one long contraction.

    A sentence holds at most ``max_tokens_per_sentence`` channel patches, so the number of
    token orders per sentence is ``min(max_order, max_tokens_per_sentence // n_chans)``.
    Samples are read per event, at most ``rows_per_read`` tokens at a time, so besides the
    tokens themselves (the result) memory holds one such piece, however long the recording.
    """
    T = p.token_len
    max_order = sentence_orders(n_chans, p)
    rows: list[tuple[int, int, int, int, int, int]] = []  # start, stop, sentence, order, sentence start, event
    pieces: list[tuple[int, int]] = []  # row ranges read together: within one event
    sentence = -1
    for contraction, (ev_start, ev_stop) in enumerate(events):
        n_tok = max(1, -(-(ev_stop - ev_start) // T))
        pieces += [(len(rows) + k, len(rows) + min(n_tok, k + rows_per_read)) for k in range(0, n_tok, rows_per_read)]
        for k in range(n_tok):
            if k % max_order == 0:
                sentence += 1
                sentence_start = ev_start + k * T
            start = min(ev_start + k * T, max(0, n_times - T))
            rows.append((start, min(start + T, n_times), sentence, k % max_order, sentence_start, contraction))
    if not rows or n_times < T:
        return empty_tokens(n_chans, T)
    starts = np.array([r[0] for r in rows], dtype=np.int64)
    tokens = np.empty((len(rows), n_chans, T), np.float32)
    energy = np.empty((len(rows), n_chans))
    labels = np.empty(len(rows), np.int16)
    for i0, i1 in pieces:
        a, b = int(starts[i0]), int(starts[i1 - 1]) + T
        windows = sliding_window_view(read(a, b), T, axis=0)[starts[i0:i1] - a]  # (rows, n_chans, T), a view
        energy[i0:i1] = (windows.astype(np.float64) ** 2).mean(axis=2)
        tokens[i0:i1] = windows - windows.mean(axis=2, keepdims=True) if demean else windows
        gesture = read_gesture(a, b)
        labels[i0:i1] = [_majority(gesture[s - a:s - a + T]) for s in starts[i0:i1]]
    return {
        "start": starts,
        "stop": np.array([r[1] for r in rows], dtype=np.int64),
        "sentence": np.array([r[2] for r in rows], dtype=np.int64),
        "order": np.array([r[3] for r in rows], dtype=np.int64),
        "sentence_start": np.array([r[4] for r in rows], dtype=np.int64),
        "contraction": np.array([r[5] for r in rows], dtype=np.int64),
        "dominant_channel": energy.argmax(axis=1).astype(np.int64),
        "energy": energy.astype(np.float32),
        "gesture": labels,
        "token": tokens,
    }


def _majority(labels: np.ndarray) -> int:
    values, counts = np.unique(labels, return_counts=True)
    return int(values[counts.argmax()])


def empty_tokens(n_chans: int, token_len: int) -> dict[str, np.ndarray]:
    ints = np.zeros(0, dtype=np.int64)
    return {
        "start": ints, "stop": ints, "sentence": ints, "order": ints, "sentence_start": ints, "contraction": ints,
        "dominant_channel": ints, "energy": np.zeros((0, n_chans), np.float32),
        "gesture": np.zeros(0, np.int16), "token": np.zeros((0, n_chans, token_len), np.float32),
    }
