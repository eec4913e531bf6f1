"""Signal conditioning shared by every dataset: rate, filters, quality flags."""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy import signal

QUALITY_FLAGS = ("flat", "clipped", "saturated", "nonfinite")


def resample(x: np.ndarray, sfreq: float, target: float) -> np.ndarray:
    """Polyphase resampling along time; its FIR low-pass is the anti-alias filter."""
    if sfreq == target:
        return x
    ratio = Fraction(target / sfreq).limit_denominator(1000)
    return signal.resample_poly(x, ratio.numerator, ratio.denominator, axis=0)


def resample_labels(labels: np.ndarray, sfreq: float, target: float, n_out: int) -> np.ndarray:
    """Nearest-sample label for each output sample: labels are classes, never interpolated."""
    idx = np.round(np.arange(n_out) * (sfreq / target)).astype(np.int64)
    return labels[np.clip(idx, 0, len(labels) - 1)]


def condition(
    x: np.ndarray,
    sfreq: float,
    band: tuple[float, float] | None,
    order: int,
    notch_hz: float | None,
    notch_q: float,
) -> np.ndarray:
    """Zero-phase band-pass and mains notches, each clipped to what ``sfreq`` can represent."""
    nyquist = sfreq / 2
    if band is not None:
        low, high = band[0], min(band[1], 0.95 * nyquist)
        if not 0 < low < high:
            raise ValueError(f"empty pass band after clipping to Nyquist: {band=}, {sfreq=}")
        x = signal.sosfiltfilt(_bandpass(order, low, high, sfreq), x, axis=0)
    if notch_hz:
        for b, a in _notches(notch_hz, notch_q, sfreq):
            x = signal.filtfilt(b, a, x, axis=0)
    return x


@lru_cache(maxsize=64)
def _bandpass(order: int, low: float, high: float, sfreq: float) -> np.ndarray:
    """Designed once per setting: designing costs more than filtering a short recording."""
    return signal.butter(order, [low, high], btype="bandpass", fs=sfreq, output="sos")


@lru_cache(maxsize=64)
def _notches(notch_hz: float, notch_q: float, sfreq: float) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """(b, a) of a notch at each multiple of ``notch_hz`` below 0.95 x Nyquist."""
    return tuple(signal.iirnotch(f0, notch_q, fs=sfreq) for f0 in np.arange(notch_hz, 0.95 * sfreq / 2, notch_hz))


def quality_mask(
    x: np.ndarray, valid_range: tuple[float, float] | None, nonfinite: np.ndarray
) -> np.ndarray:
    """CF-style bit mask per channel (bit i = ``QUALITY_FLAGS[i]``), computed on native samples.

    clipped: >0.1 % of samples at the device's range limits; saturated: >1 % of samples at the
    channel's own extreme value (a plateau, whatever the device); flat: no variation at all.
    """
    finite = np.where(np.isfinite(x), x, 0.0)
    hi, lo = finite.max(axis=0), finite.min(axis=0)  # once: three of the flags need them
    flat = hi == lo
    if valid_range is not None:
        at_limit = (finite <= valid_range[0]) | (finite >= valid_range[1])
        clipped = at_limit.mean(axis=0) > 1e-3
    else:
        clipped = np.zeros(x.shape[1], dtype=bool)
    at_extreme = (finite == hi) | (finite == lo)
    saturated = ~flat & (at_extreme.mean(axis=0) > 1e-2)
    bits = np.stack([flat, clipped, saturated, nonfinite]).astype(np.uint8)
    return (bits << np.arange(len(QUALITY_FLAGS), dtype=np.uint8)[:, None]).sum(axis=0).astype(np.uint8)
