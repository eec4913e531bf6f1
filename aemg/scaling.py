"""Per-subject amplitude scaling of event tokens, chosen by *who may be looked at*.

Tokens are stored in the harmonized signal's units (de-meaned for raw EMG only), so the token
store holds no statistic of any subject. A consumer scales them at read time, from a source it
names: pre-training scales each of its (training) subjects by that subject's own tokens; an
evaluation fold scales its training subjects the same way and its *test* subject from what the
protocol allows: the training subjects' pooled statistic (strict zero-shot), the subject's own
unlabelled trials (``target_adaptation: unlabelled``) or its few-shot adaptation trials.

Pure numpy, imported by ``tokenize``, ``model`` and ``evaluate`` alike.
"""

from __future__ import annotations

import numpy as np

FLAT = 1e-12  # a channel whose RMS is at or below this is flat: its scale is 1, it stays zero


def channel_rms(tokens: np.ndarray) -> np.ndarray:
    """(C,) RMS per channel over every token and sample of ``tokens`` (n, C, T); flat -> 1."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 3:
        raise ValueError(f"tokens must be (n_events, n_chans, n_times), got shape {tokens.shape}")
    if tokens.shape[0] == 0:
        return np.ones(tokens.shape[1], np.float32)
    ms = np.einsum("nct,nct->c", tokens, tokens, dtype=np.float64) / (tokens.shape[0] * tokens.shape[2])
    rms = np.sqrt(ms)
    return np.where(rms > FLAT, rms, 1.0).astype(np.float32)


def subject_rms(tokens: np.ndarray, subject: np.ndarray) -> dict[str, np.ndarray]:
    """``{subject: (C,) channel RMS over that subject's tokens}``."""
    subject = np.asarray(subject).astype(str)
    return {s: channel_rms(tokens[subject == s]) for s in sorted(set(subject.tolist()))}


def pooled_rms(per_subject: dict[str, np.ndarray], subjects: list[str] | None = None) -> np.ndarray:
    """Geometric mean over ``subjects`` (default: all) of their channel RMS: the scale of a person
    nobody has measured yet, robust to one very loud or quiet subject."""
    names = sorted(per_subject) if subjects is None else list(subjects)
    if not names:
        raise ValueError("pooled_rms needs at least one subject")
    logs = np.stack([np.log(per_subject[s].astype(np.float64)) for s in names])
    return np.exp(logs.mean(axis=0)).astype(np.float32)


def scale_rows(tokens: np.ndarray, row_scale: np.ndarray) -> np.ndarray:
    """``tokens`` (n, C, T) divided by a per-row, per-channel scale (n, C) or one scale (C,)."""
    row_scale = np.asarray(row_scale, np.float32)
    if row_scale.ndim == 1:
        row_scale = np.broadcast_to(row_scale, tokens.shape[:2])
    if row_scale.shape != tokens.shape[:2]:
        raise ValueError(f"scale shape {row_scale.shape} does not match tokens {tokens.shape[:2]}")
    return (np.asarray(tokens, np.float32) / row_scale[:, :, None]).astype(np.float32)


def scale_by_own_subject(tokens: np.ndarray, subject: np.ndarray) -> np.ndarray:
    """Each subject's tokens divided by its own channel RMS (only for subjects one may look at)."""
    subject = np.asarray(subject).astype(str)
    per = subject_rms(tokens, subject)
    return scale_rows(tokens, np.stack([per[s] for s in subject.tolist()]) if len(subject) else
                      np.ones(tokens.shape[:2], np.float32))


__all__ = ["FLAT", "channel_rms", "pooled_rms", "scale_by_own_subject", "scale_rows", "subject_rms"]
