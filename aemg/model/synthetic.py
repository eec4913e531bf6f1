"""Synthetic TokenSets for tests, demos and timing: a few prototype bursts plus noise.

Each sentence follows one of ``n_gestures`` patterns, a cycle through the prototypes; every
channel of an event carries the same prototype (with a per-channel time shift, gain and
noise), z-scored per channel. So a masked patch is predictable from the other channels of its
event and from its neighbours in the sentence, and a codebook has a handful of shapes to find.
"""

from __future__ import annotations

import numpy as np

from aemg.model.data import TokenSet


def prototype_waveforms(n_prototypes: int = 8, n_times: int = 50, sfreq: float = 200.0,
                        seed: int = 0) -> np.ndarray:
    """(n_prototypes, n_times) distinct burst shapes (Gaussian envelope x sinusoid)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_times) / sfreq
    dur = n_times / sfreq
    out = np.empty((n_prototypes, n_times), np.float32)
    freqs = np.linspace(12.0, 70.0, n_prototypes)
    for p in range(n_prototypes):
        centre = rng.uniform(0.25, 0.75) * dur
        width = rng.uniform(0.08, 0.3) * dur
        env = np.exp(-0.5 * ((t - centre) / width) ** 2)
        out[p] = env * np.sin(2 * np.pi * freqs[p] * t + rng.uniform(0, 2 * np.pi))
    return out


def make_synthetic_tokenset(
    n_events: int = 2000,
    n_chans: int = 8,
    n_times: int = 50,
    n_prototypes: int = 8,
    n_gestures: int = 4,
    n_subjects: int = 4,
    noise: float = 0.3,
    max_sentence: int = 15,
    seed: int = 0,
    dataset: str = "synthetic",
    subject_offset: int = 0,
    structure_seed: int = 1234,
) -> TokenSet:
    """A TokenSet of ``n_events`` events in sentences of 2..max_sentence events.

    Subjects are ``S{k:02d}`` for k = subject_offset+1 .. subject_offset+n_subjects, assigned
    per sentence in turn. ``structure_seed`` fixes the prototypes, gesture patterns and channel
    gains (shared by a train and a held-out set); ``seed`` draws the sentences and noise.
    """
    srng = np.random.default_rng(structure_seed)
    protos = prototype_waveforms(n_prototypes, n_times, seed=structure_seed)
    patterns = [srng.permutation(n_prototypes)[: srng.integers(2, 5)] for _ in range(n_gestures)]
    gain = srng.uniform(0.5, 2.0, n_chans)
    rng = np.random.default_rng(seed)
    tokens = np.empty((n_events, n_chans, n_times), np.float32)
    sentence = np.empty(n_events, np.int64)
    order = np.empty(n_events, np.int64)
    onset = np.empty(n_events, np.float32)
    subject = np.empty(n_events, dtype=object)
    i, s = 0, 0
    while i < n_events:
        n = int(min(rng.integers(2, max_sentence + 1), n_events - i))
        g = int(rng.integers(n_gestures))
        pat = patterns[g]
        times = np.concatenate([[0.0], np.cumsum(rng.uniform(0.05, 0.3, n - 1))])
        for k in range(n):
            p = pat[k % len(pat)]
            shifts = rng.integers(-2, 3, n_chans)
            x = np.stack([np.roll(protos[p], sh) for sh in shifts]) * gain[:, None]
            x = x + noise * rng.standard_normal((n_chans, n_times))
            x = (x - x.mean(axis=1, keepdims=True)) / (x.std(axis=1, keepdims=True) + 1e-8)
            tokens[i + k] = x
        sentence[i:i + n] = s
        order[i:i + n] = np.arange(n)
        onset[i:i + n] = times
        subject[i:i + n] = f"S{subject_offset + s % n_subjects + 1:02d}"
        i += n
        s += 1
    angles = 2 * np.pi * np.arange(n_chans) / n_chans
    positions = np.stack([np.cos(angles), np.sin(angles), np.full(n_chans, 0.3)], axis=1)
    return TokenSet(tokens=tokens, positions=positions, sentence=sentence, order=order,
                    onset=onset, subject=subject.astype(str), dataset=dataset)
