"""Contraction events (AEMG's Neuromuscular Contraction Tokenizer) as index rows into a signal.

An event is a run of windows whose energy exceeds an adaptive threshold. Each event is cut into
tokens of ``token_len`` samples; the tokens of one event, in order, form a *sentence*. Tokens
are index rows (start, stop) plus the normalised samples; the dominant channel and per-channel
energy are taken *before* normalisation (AEMG's release computes it after z-scoring, which makes
every channel look alike).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

DETECTORS = ("aemg_energy", "hysteresis")


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
    on_ratio: float
    off_ratio: float

    @classmethod
    def from_params(cls, tp: dict[str, Any], sfreq: float) -> EventParams:
        if tp["detector"] not in DETECTORS:
            raise ValueError(f"unknown detector {tp['detector']!r}; available: {', '.join(DETECTORS)}")
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
            floor_quantile=float(tp["hysteresis"]["floor_quantile"]),
            on_ratio=float(tp["hysteresis"]["on_ratio"]),
            off_ratio=float(tp["hysteresis"]["off_ratio"]),
        )


def window_energy(x: np.ndarray, window: int, stride: int) -> np.ndarray:
    """Mean-square energy per window, summed over channels: (n_windows,)."""
    power = (x.astype(np.float64) ** 2).sum(axis=1)
    if len(power) < window:
        return np.array([power.mean()]) if len(power) else np.zeros(0)
    return sliding_window_view(power, window)[::stride].mean(axis=1)


def _runs(active: np.ndarray) -> list[tuple[int, int]]:
    """Half-open [first, last+1) index runs of True values."""
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def detect_energy(x: np.ndarray, p: EventParams) -> list[tuple[int, int]]:
    """AEMG: windows with energy > mean + k·std of the first ``baseline_fraction`` of windows.

    If nothing crosses (the recording starts mid-contraction, as single-gesture files do), the
    threshold falls back to the median + k·std of the whole recording, so that every recording
    yields its strongest activity rather than nothing.
    """
    energy = window_energy(x, p.window, p.stride)
    if len(energy) == 0:
        return []
    head = energy[: max(1, round(p.baseline_fraction * len(energy)))]
    active = energy > head.mean() + p.threshold_std * head.std()
    if not active.any():
        active = energy > np.median(energy) + p.threshold_std * energy.std()
    return _windows_to_samples(_runs(active), p, len(x))


def detect_hysteresis(x: np.ndarray, p: EventParams) -> list[tuple[int, int]]:
    """Onset/offset with hysteresis: on above ``on_ratio`` x the noise floor, off below ``off_ratio`` x.

    The floor is a low quantile of window energy, which is rest even when a file starts
    mid-contraction (unlike AEMG's first 10 %); ratios of energy make the thresholds
    independent of units and gain. Runs shorter than one token are dropped.
    """
    energy = window_energy(x, p.window, p.stride)
    if len(energy) == 0:
        return []
    floor = max(float(np.quantile(energy, p.floor_quantile)), np.finfo(np.float64).tiny)
    on, off = p.on_ratio * floor, p.off_ratio * floor
    state, active = False, np.zeros(len(energy), dtype=bool)
    for i, e in enumerate(energy):
        state = e > off if state else e > on
        active[i] = state
    runs = [(a, b) for a, b in _runs(active) if (b - a - 1) * p.stride + p.window >= p.token_len]
    return _windows_to_samples(runs, p, len(x))


def _windows_to_samples(runs: list[tuple[int, int]], p: EventParams, n_times: int) -> list[tuple[int, int]]:
    spans = [(a * p.stride, min(n_times, (b - 1) * p.stride + p.window)) for a, b in runs]
    merged: list[tuple[int, int]] = []
    for start, stop in spans:
        if merged and start - merged[-1][1] <= p.min_gap:
            merged[-1] = (merged[-1][0], stop)
        else:
            merged.append((start, stop))
    return merged


def detect(x: np.ndarray, p: EventParams) -> list[tuple[int, int]]:
    return (detect_energy if p.detector == "aemg_energy" else detect_hysteresis)(x, p)


def tokens_from_events(
    x: np.ndarray, gesture: np.ndarray, events: list[tuple[int, int]], p: EventParams, scale: np.ndarray
) -> dict[str, np.ndarray]:
    """Cut events into fixed-length tokens; ``scale`` (n_chans,) is the z-score divisor.

    A sentence holds at most ``max_tokens_per_sentence`` channel patches, so the number of
    token orders per sentence is ``min(max_order, max_tokens_per_sentence // n_chans)``.
    """
    n_times, n_chans = x.shape
    T = p.token_len
    max_order = max(1, min(p.max_order, p.max_tokens_per_sentence // n_chans))
    rows: list[tuple[int, int, int, int, int]] = []  # start, stop, sentence, order, sentence start
    sentence = -1
    for ev_start, ev_stop in events:
        n_tok = max(1, -(-(ev_stop - ev_start) // T))
        for k in range(n_tok):
            if k % max_order == 0:
                sentence += 1
                sentence_start = ev_start + k * T
            start = min(ev_start + k * T, max(0, n_times - T))
            rows.append((start, min(start + T, n_times), sentence, k % max_order, sentence_start))
    if not rows or n_times < T:
        return empty_tokens(n_chans, T)
    starts = np.array([r[0] for r in rows], dtype=np.int64)
    windows = sliding_window_view(x, T, axis=0)[starts]  # (n_tok, n_chans, T), a view
    energy = (windows.astype(np.float64) ** 2).mean(axis=2)
    tokens = (windows - windows.mean(axis=2, keepdims=True)) / scale[None, :, None]
    labels = np.array([_majority(gesture[s : s + T]) for s in starts], dtype=np.int16)
    return {
        "start": starts,
        "stop": np.array([r[1] for r in rows], dtype=np.int64),
        "sentence": np.array([r[2] for r in rows], dtype=np.int64),
        "order": np.array([r[3] for r in rows], dtype=np.int64),
        "sentence_start": np.array([r[4] for r in rows], dtype=np.int64),
        "dominant_channel": energy.argmax(axis=1).astype(np.int64),
        "energy": energy.astype(np.float32),
        "gesture": labels,
        "token": tokens.astype(np.float32),
    }


def _majority(labels: np.ndarray) -> int:
    values, counts = np.unique(labels, return_counts=True)
    return int(values[counts.argmax()])


def empty_tokens(n_chans: int, token_len: int) -> dict[str, np.ndarray]:
    ints = np.zeros(0, dtype=np.int64)
    return {
        "start": ints, "stop": ints, "sentence": ints, "order": ints, "sentence_start": ints,
        "dominant_channel": ints, "energy": np.zeros((0, n_chans), np.float32),
        "gesture": np.zeros(0, np.int16), "token": np.zeros((0, n_chans, token_len), np.float32),
    }
