"""Per-trial features: Hudgins time-domain set, ten-feature windows, muscle-state token statistics.

All of them are computed from the same trial tokens (the shared front-end); none is fitted, so
computing them once per dataset leaks nothing. What *is* fitted (the muscle-state K-means) lives
in the per-fold estimators of :mod:`aemg.evaluate.estimators`.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

from aemg.tokenize.features import N_FEATURES, window_features
from aemg.tokenize.states import token_histogram


def hudgins(tokens: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """(n, n_chans, T) -> (n, 4·n_chans). Tokens are already per-subject normalised, so the
    ZC/SSC dead-band ``threshold`` is in those units (0 = count every sign change)."""
    x = tokens.astype(np.float64)
    d = np.diff(x, axis=2)
    mav = np.abs(x).mean(axis=2)
    wl = np.abs(d).sum(axis=2)
    zc = ((x[..., :-1] * x[..., 1:] < 0) & (np.abs(d) > threshold)).sum(axis=2)
    ssc = ((d[..., :-1] * d[..., 1:] < 0) & ((np.abs(d[..., :-1]) > threshold) | (np.abs(d[..., 1:]) > threshold))).sum(axis=2)
    return np.concatenate([mav, wl, zc, ssc], axis=1).astype(np.float32)


def state_window_samples(sfreq: float, window_s: float, stride_s: float) -> tuple[int, int]:
    """The muscle-state paper's 50 ms window / 25 ms stride in samples at ``sfreq``."""
    return max(2, round(window_s * sfreq)), max(1, round(stride_s * sfreq))


def trial_window_features(
    tokens: np.ndarray, sfreq: float, window: int, stride: int, wamp_threshold: float
) -> np.ndarray:
    """Ten features (RMS ... PSR) per window of every trial and channel: (n, frames, n_chans, 10).

    All trials x channels are laid side by side as columns of one (T, n·n_chans) signal, so the
    colleague's chunked extractor runs once per dataset; columns never mix.
    """
    n, c, t = tokens.shape
    if t < window:
        raise ValueError(f"trials have n_times={t} samples, shorter than the state window={window}")
    x = np.ascontiguousarray(tokens.transpose(2, 0, 1).reshape(t, n * c), dtype=np.float32)
    f = window_features(x, sfreq, window, stride, wamp_threshold=wamp_threshold)
    return f.reshape(f.shape[0], n, c, N_FEATURES).transpose(1, 0, 2, 3)


def token_statistics(states: np.ndarray, k: int) -> np.ndarray:
    """The muscle-state paper's SVM input: per channel, over the token sequence of a trial,

    token ratios (k), transition frequency, mean and longest run duration (as fractions of the
    sequence), and mean, variance, skewness, kurtosis of the token values.
    ``states`` (n, frames, n_chans) int -> (n, n_chans·(k + 7)) float32.
    """
    s = np.asarray(states).astype(np.int64)
    n, f, c = s.shape
    ratios = token_histogram(s.transpose(1, 0, 2), k)  # (n, c, k)
    change = s[:, 1:] != s[:, :-1]
    transitions = change.mean(axis=1) if f > 1 else np.zeros((n, c))
    n_runs = 1 + change.sum(axis=1)
    mean_run = (f / n_runs) / f
    cur = np.ones((n, c))
    best = np.ones((n, c))
    for t in range(1, f):
        cur = np.where(~change[:, t - 1], cur + 1, 1)
        best = np.maximum(best, cur)
    values = s.astype(np.float64) / max(k - 1, 1)
    mean = values.mean(axis=1)
    var = values.var(axis=1)
    flat = var < 1e-12
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # near-constant sequences; set to 0 below
        skew = np.where(flat, 0.0, stats.skew(values, axis=1))
        kurt = np.where(flat, 0.0, stats.kurtosis(values, axis=1))
    per_channel = np.concatenate(
        [ratios, np.stack([transitions, mean_run, best / f, mean, var, skew, kurt], axis=-1)], axis=-1
    )
    return np.nan_to_num(per_channel.reshape(n, -1)).astype(np.float32)
