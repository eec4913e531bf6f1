"""Hudgins time-domain features (MAV, WL, ZC, SSC) per channel of each trial token."""

from __future__ import annotations

import numpy as np


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
