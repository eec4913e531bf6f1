"""Block-wise event detection: the same bits as one block over the whole recording, bounded reads."""

from __future__ import annotations

import numpy as np
import pytest

from aemg.params import DEFAULTS
from aemg.tokenize.events import (
    EventParams,
    cut_tokens,
    detect_read,
    n_windows,
    tokens_from_events,
    window_energy,
)
from aemg.tokenize.synthetic import synthetic_recording

SFREQ = 200.0
WHOLE = 1 << 40  # block_values that hold any test recording in one block


class CountingReader:
    """``read(a, b)`` over an array that remembers the longest read, to bound what a block holds."""

    def __init__(self, x: np.ndarray) -> None:
        self.x, self.longest = x, 0

    def __call__(self, a: int, b: int) -> np.ndarray:
        self.longest = max(self.longest, b - a)
        return self.x[a:b]


def reference_energy(x: np.ndarray, window: int, stride: int) -> np.ndarray:
    """Float64 mean over each window of the channel-summed power, one window at a time."""
    power = (x.astype(np.float64) ** 2).sum(axis=1)
    if len(x) < window:
        return np.array([power.mean()])
    return np.array([power[i * stride:i * stride + window].mean() for i in range(n_windows(len(x), window, stride))])


@pytest.mark.parametrize(("window", "stride"), [(50, 10), (7, 3), (10, 10), (5, 7), (12, 8)])
def test_energy_blocks_are_bit_identical_to_one_block(window: int, stride: int) -> None:
    x = np.random.default_rng(0).standard_normal((5003, 3)).astype(np.float32)
    whole = window_energy(lambda a, b: x[a:b], len(x), 3, window, stride, WHOLE)
    assert whole.dtype == np.float32 and len(whole) == n_windows(len(x), window, stride)
    np.testing.assert_allclose(whole, reference_energy(x, window, stride), rtol=1e-5)
    for values in (3, 3 * stride + 1, 3 * (window + stride), 1000):  # one stride per block and up
        read = CountingReader(x)
        got = window_energy(read, len(x), 3, window, stride, values)
        assert read.longest <= max(stride, values // 3), values
        np.testing.assert_array_equal(got, whole, err_msg=f"{values=}")


@pytest.mark.parametrize("n_times", [0, 1, 49, 50, 59, 60, 100, 101])
def test_energy_edges_short_and_exact_lengths(n_times: int) -> None:
    """Shorter than a window, exactly one window, a block ending exactly on a window end."""
    x = np.random.default_rng(1).standard_normal((n_times, 2)).astype(np.float32)
    whole = window_energy(lambda a, b: x[a:b], n_times, 2, 50, 10, WHOLE)
    assert len(whole) == n_windows(n_times, 50, 10)
    if n_times:
        np.testing.assert_allclose(whole, reference_energy(x, 50, 10), rtol=1e-5)
    for values in (20, 100, 120):  # blocks of 10, 50 and 60 samples: boundaries on and off window ends
        np.testing.assert_array_equal(window_energy(lambda a, b: x[a:b], n_times, 2, 50, 10, values), whole)


@pytest.mark.parametrize("detector", ["aemg_energy", "hysteresis"])
def test_detection_in_blocks_matches_whole_recording(detector: str) -> None:
    rec = synthetic_recording(7, sfreq=SFREQ, duration_s=300.0, snr_db=12.0)  # 60 000 samples
    p = EventParams.from_params({**DEFAULTS["tokenize"], "detector": detector}, SFREQ)
    n, c = rec.emg.shape
    whole = detect_read(lambda a, b: rec.emg[a:b], n, c, p, block_values=WHOLE)
    assert len(whole) >= 50
    for values in (c * p.stride, 4096, 8 * 1237):  # 1 window per block, ~50, an odd block size
        read = CountingReader(rec.emg)
        assert detect_read(read, n, c, p, block_values=values) == whole
        assert read.longest <= max(p.stride, values // c) < n // 10


def test_tokens_read_per_event_match_one_array() -> None:
    rec = synthetic_recording(3, sfreq=SFREQ, duration_s=120.0, snr_db=12.0)
    gesture = np.arange(len(rec.emg), dtype=np.int16) // 1000
    p = EventParams.from_params(DEFAULTS["tokenize"], SFREQ)
    events = [*rec.events, (len(rec.emg) - 30, len(rec.emg))]  # a last token clipped to the end
    want = tokens_from_events(rec.emg, gesture, events, p, True)
    read = CountingReader(rec.emg)
    got = cut_tokens(read, lambda a, b: gesture[a:b], *rec.emg.shape, events, p, True, rows_per_read=2)
    assert read.longest <= 2 * p.token_len
    assert got.keys() == want.keys() and len(got["start"]) > 50
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    assert got["stop"][-1] == len(rec.emg)
