"""Muscle-state codebooks on synthetic recordings whose contraction levels are known."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from scipy import signal
from threadpoolctl import threadpool_limits

from aemg.tokenize.features import FEATURE_NAMES, window_features
from aemg.tokenize.states import (
    StateCodebook,
    assign_states,
    consistency,
    fit_state_codebook,
    select_k,
    token_histogram,
)

AMPLITUDES = (0.0, 0.03, 0.1, 0.3, 1.0)  # EMG amplitude per level: rest ... strongest
FLOOR = 0.01  # white sensor noise present at every level
SFREQ, WINDOW, STRIDE = 1000.0, 50, 25
EMG_BAND = signal.butter(4, [20.0, 150.0], btype="bandpass", fs=SFREQ, output="sos")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """These fits are tiny: OpenMP threads only add spin-wait time (100x on a busy machine)."""
    with threadpool_limits(1):
        yield


def levels(seed: int, gain: float = 1.0, seconds: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Feature rows (2 channels pooled) of EMG-like band-limited noise at each contraction level
    over a white noise floor, and the level of each row. A level's amplitude is known, its
    spectral features are as noisy as in real 50 ms windows."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SFREQ)
    feats, level = [], []
    for i, amp in enumerate(AMPLITUDES):
        emg = signal.sosfilt(EMG_BAND, rng.standard_normal((n, 2)), axis=0)
        emg /= emg.std()
        x = gain * (amp * emg + FLOOR * rng.standard_normal((n, 2)))
        f = window_features(x.astype(np.float32), SFREQ, WINDOW, STRIDE, wamp_threshold=0.05)
        feats.append(f.reshape(-1, len(FEATURE_NAMES)))
        level.append(np.full(feats[-1].shape[0], i))
    return np.concatenate(feats), np.concatenate(level)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_states_are_ordered_rest_to_strong(seed: int) -> None:
    feats, level = levels(seed)
    codebook = fit_state_codebook(feats, k=len(AMPLITUDES), seed=seed)
    states = assign_states(codebook, feats)
    assert states.dtype == np.int16 and states.shape == level.shape
    medians = [np.median(states[level == i]) for i in range(len(AMPLITUDES))]
    assert np.all(np.diff(medians) > 0), medians
    rms = codebook.centers[:, FEATURE_NAMES.index("rms")]
    assert np.all(np.diff(rms) > 0)


def test_assign_keeps_leading_shape() -> None:
    feats, _ = levels(0)
    codebook = fit_state_codebook(feats, k=4, seed=0)
    frames = feats[:60].reshape(30, 2, 10)
    np.testing.assert_array_equal(assign_states(codebook, frames).reshape(-1),
                                  assign_states(codebook, feats[:60]))


def test_subsampling_bounds_fit_but_keeps_order() -> None:
    feats, level = levels(3)
    codebook = fit_state_codebook(feats, k=len(AMPLITUDES), seed=0, max_samples=300)
    states = assign_states(codebook, feats)
    medians = [np.median(states[level == i]) for i in range(len(AMPLITUDES))]
    assert np.all(np.diff(medians) > 0), medians


def test_round_trip_through_arrays() -> None:
    feats, _ = levels(4)
    codebook = fit_state_codebook(feats, k=6, seed=0)
    arrays = codebook.to_arrays()
    assert all(isinstance(v, np.ndarray) for v in arrays.values())
    back = StateCodebook.from_arrays(arrays)
    assert not back.centers.flags.writeable  # shared across folds: no silent in-place edits
    assert back.k == codebook.k == 6
    assert back.feature_names == codebook.feature_names == FEATURE_NAMES
    for name in ("centers", "scale_mean", "scale_std", "log_floor"):
        np.testing.assert_array_equal(getattr(back, name), getattr(codebook, name))
    np.testing.assert_array_equal(assign_states(back, feats), assign_states(codebook, feats))


def test_select_k_sse_decreases_and_pnmi_peaks_at_true_levels() -> None:
    feats, level = levels(5, seconds=1.0)
    rows = select_k(feats, level, ks=[2, 3, 5, 8], seed=0)
    assert [r["k"] for r in rows] == [2, 3, 5, 8]
    sse = [r["sse"] for r in rows]
    assert np.all(np.diff(sse) < 0), sse
    pnmi = {r["k"]: r["pnmi"] for r in rows}
    assert all(0.0 <= p <= 1.0 + 1e-9 for p in pnmi.values())
    assert pnmi[5] > 0.8 and pnmi[5] > pnmi[2] + 0.2


def test_consistency_same_distribution_agrees() -> None:
    train, _ = levels(6)
    heldout, _ = levels(7)
    codebook = fit_state_codebook(train, k=len(AMPLITUDES), seed=0)
    result = consistency(codebook, heldout, k=len(AMPLITUDES), seed=1)
    assert result["kappa"] > 0.9
    assert result["overlap"] > 0.9
    assert result["overlap_pm1"] >= result["overlap"]


def test_consistency_drops_for_a_louder_subject() -> None:
    train, _ = levels(6)
    louder, _ = levels(7, gain=10.0)
    codebook = fit_state_codebook(train, k=len(AMPLITUDES), seed=0)
    result = consistency(codebook, louder, seed=1)
    assert result["kappa"] < 0.6
    with pytest.raises(ValueError, match="k=3"):
        consistency(codebook, louder, k=3)


def test_token_histogram_matches_counting() -> None:
    rng = np.random.default_rng(8)
    k = 7
    states = rng.integers(0, k, size=(50, 3), dtype=np.int16)
    hist = token_histogram(states, k)
    assert hist.shape == (3, k)
    for c in range(3):
        for token in range(k):
            assert hist[c, token] == pytest.approx(np.sum(states[:, c] == token) / 50)
    np.testing.assert_allclose(hist.sum(axis=-1), 1.0)
    assert token_histogram(np.zeros((0, 2), np.int16), k).sum() == 0.0
    with pytest.raises(ValueError):
        token_histogram(states, 3)


def test_rejects_non_finite_features() -> None:
    feats, _ = levels(9, seconds=0.5)
    feats[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_state_codebook(feats, k=3)
