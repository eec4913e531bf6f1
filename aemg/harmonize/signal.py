"""Signal conditioning shared by every dataset: rate, filters, quality flags."""

from __future__ import annotations

from fractions import Fraction

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
        sos = signal.butter(order, [low, high], btype="bandpass", fs=sfreq, output="sos")
        x = signal.sosfiltfilt(sos, x, axis=0)
    if notch_hz:
        for f0 in np.arange(notch_hz, 0.95 * nyquist, notch_hz):
            b, a = signal.iirnotch(f0, notch_q, fs=sfreq)
            x = signal.filtfilt(b, a, x, axis=0)
    return x


def quality_mask(
    x: np.ndarray, valid_range: tuple[float, float] | None, nonfinite: np.ndarray
) -> np.ndarray:
    """CF-style bit mask per channel (bit i = ``QUALITY_FLAGS[i]``), computed on native samples.

    clipped: >0.1 % of samples at the device's range limits; saturated: >1 % of samples at the
    channel's own extreme value (a plateau, whatever the device); flat: no variation at all.
    """
    finite = np.where(np.isfinite(x), x, 0.0)
    flat = np.ptp(finite, axis=0) == 0
    if valid_range is not None:
        at_limit = (finite <= valid_range[0]) | (finite >= valid_range[1])
        clipped = at_limit.mean(axis=0) > 1e-3
    else:
        clipped = np.zeros(x.shape[1], dtype=bool)
    at_extreme = (finite == finite.max(axis=0)) | (finite == finite.min(axis=0))
    saturated = ~flat & (at_extreme.mean(axis=0) > 1e-2)
    bits = np.stack([flat, clipped, saturated, nonfinite]).astype(np.uint8)
    return (bits << np.arange(len(QUALITY_FLAGS), dtype=np.uint8)[:, None]).sum(axis=0).astype(np.uint8)
