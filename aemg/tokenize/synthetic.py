"""Seeded synthetic sEMG with known contraction onsets and offsets: ground truth for detectors.

Rest is low-level band-limited noise; a contraction is a burst of band-limited noise whose
power sits ``snr_db`` above rest, with a short raised-cosine ramp at each end (muscles do not
switch on in one sample). Each burst activates a random subset of channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal


@dataclass
class SyntheticRecording:
    emg: np.ndarray  # float32 (n_times, n_chans)
    events: list[tuple[int, int]]  # true half-open [onset, offset) sample indices
    sfreq: float


def synthetic_recording(
    seed: int,
    *,
    sfreq: float = 200.0,
    n_chans: int = 8,
    duration_s: float = 60.0,
    snr_db: float = 10.0,
    burst_s: tuple[float, float] = (0.6, 2.0),
    gap_s: tuple[float, float] = (1.0, 3.0),
    band: tuple[float, float] = (20.0, 90.0),
) -> SyntheticRecording:
    rng = np.random.default_rng(seed)
    n_times = int(duration_s * sfreq)
    sos = signal.butter(4, [band[0], min(band[1], 0.45 * sfreq)], btype="bandpass", fs=sfreq, output="sos")

    def noise(n: int) -> np.ndarray:
        x = signal.sosfilt(sos, rng.standard_normal((n + 200, n_chans)), axis=0)[200:]
        return x / x.std(axis=0)

    x = noise(n_times)
    events: list[tuple[int, int]] = []
    t = int(rng.uniform(*gap_s) * sfreq) + int(0.1 * duration_s * sfreq)  # quiet head for AEMG's baseline
    gain = 10 ** (snr_db / 20)
    while True:
        length = int(rng.uniform(*burst_s) * sfreq)
        if t + length >= n_times:
            break
        ramp = min(length // 4, int(0.1 * sfreq))
        envelope = np.ones(length)
        envelope[:ramp] = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, ramp))
        envelope[length - ramp :] = envelope[:ramp][::-1]
        active = rng.random(n_chans) < 0.6
        active[rng.integers(n_chans)] = True
        x[t : t + length] += noise(length) * (gain * envelope[:, None] * active[None, :])
        events.append((t, t + length))
        t += length + int(rng.uniform(*gap_s) * sfreq)
    return SyntheticRecording(x.astype(np.float32) * 1e-5, events, sfreq)
