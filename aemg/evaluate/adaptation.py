"""What each fold may look at: the named protocols, the scaled trials and their features per fold.

Tokens arrive in signal units (the token store holds no subject statistic). A fold scales them,
and standardises features, only from what its protocol allows, and records *from which subjects*
each statistic was computed, so the leak check can prove it (``metrics/folds.json``):

- ``zero_shot`` (strict): nothing from the test subject. Every trial is divided by the pooled
  channel RMS of the fold's *training* subjects (train as you test: the network sees the amplitude
  spread between people that it will meet in a new one).
- ``unlabelled_target``: the test subject's own *unlabelled* trials may set normalisation
  statistics, for every method alike. Every subject (training and test) is divided by its own
  channel RMS, and per-subject feature standardisation (z-score per subject) is applied to every
  feature array a classifier reads (Hudgins, the ten muscle-state features, AEMG embeddings); the
  networks that read tokens get the per-subject input scaling. Labels of the test subject are
  never read.
- ``cross_session``: a subject's own *training session* is labelled training data; its channel
  RMS over that session scales all of the subject's sessions.

Features that do not depend on a pre-training seed are computed once per scaling; the AEMG
embeddings once per scaling and seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aemg.evaluate.trials import Trials
from aemg.scaling import pooled_rms, scale_rows, subject_rms

PROTOCOLS = ("zero_shot", "unlabelled_target", "cross_session")
TARGET_ADAPTATION = {"none": "zero_shot", "unlabelled": "unlabelled_target"}
SEEDED_FEATURES = frozenset({"aemg_embedding", "aemg_embedding_fixedwin", "aemg_embedding_rms"})
STANDARDISED_FEATURES = frozenset({"hudgins", "state_windows"}) | SEEDED_FEATURES

FeatureFn = Callable[[Trials, set[str], int], dict[str, np.ndarray]]


@dataclass
class FoldInputs:
    """One fold's scaled trials, the feature arrays its methods read, and the provenance of
    every statistic used to build them."""

    trials: Trials
    features: dict[str, np.ndarray]
    statistics: dict[str, Any] = field(default_factory=dict)


def standardise_per_subject(x: np.ndarray, subject: np.ndarray) -> np.ndarray:
    """z-score ``x`` (n, F) or (n, frames, ...) within each subject, per feature (for window
    features per channel and feature, rows and frames pooled); constant features become 0."""
    x = np.asarray(x, np.float64)
    flat = x.reshape(x.shape[0], x.shape[1] if x.ndim > 2 else 1, -1)
    out = np.empty_like(flat)
    for s in np.unique(subject):
        rows = subject == s
        part = flat[rows]
        mean, std = part.mean(axis=(0, 1), keepdims=True), part.std(axis=(0, 1), keepdims=True)
        out[rows] = (part - mean) / np.where(std > 1e-12, std, 1.0)
    return out.reshape(x.shape).astype(np.float32)


class FoldInputSource:
    """Builds :class:`FoldInputs` per fold and seed for one protocol over raw (unscaled) trials."""

    def __init__(self, trials: Trials, compute: FeatureFn, needed: set[str], protocol: str,
                 train_session: str | None = None):
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
        if protocol == "cross_session" and not train_session:
            raise ValueError("the cross_session protocol needs train_session")
        self.raw, self.compute, self.needed, self.protocol = trials, compute, set(needed), protocol
        self.train_session = train_session
        self._own = subject_rms(trials.tokens, trials.subject)
        in_train = trials.session == train_session
        self._own_train = subject_rms(trials.tokens[in_train], trials.subject[in_train]) if train_session else {}
        self._cache_key: Any = None
        self._cache: dict[Any, dict[str, np.ndarray]] = {}

    def _scaling(self, train_subjects: Sequence[str], test_subjects: Sequence[str]
                 ) -> tuple[Any, Callable[[], np.ndarray], dict[str, Any]]:
        """(cache key, a builder of the per-row scale (n, C), provenance); the scale is built only
        when the key changes."""
        subject = self.raw.subject
        if self.protocol == "zero_shot":
            used = sorted(set(train_subjects))
            if set(test_subjects) & set(used):
                raise ValueError(f"{self.raw.dataset}: zero-shot scaling asked to use test subject(s) "
                                 f"{sorted(set(test_subjects) & set(used))}")
            pooled = pooled_rms(self._own, used)
            stats = {"protocol": self.protocol, "scale": "pooled channel RMS of the training subjects",
                     "scale_subjects": used, "standardised": False}
            return ("pooled", tuple(used)), lambda: np.broadcast_to(pooled, (len(subject), pooled.shape[0])), stats
        if self.protocol == "unlabelled_target":
            stats = {"protocol": self.protocol, "scale": "each subject's own channel RMS (labels unused)",
                     "scale_subjects": sorted(self._own), "target_statistics": "own unlabelled trials",
                     "standardised": True}
            return ("own",), lambda: np.stack([self._own[s] for s in subject.tolist()]), stats
        # cross_session: each subject by its own training session
        own_train = self._own_train
        ones = np.ones(self.raw.n_chans, np.float32)
        stats = {"protocol": self.protocol, "scale": f"each subject's channel RMS over its {self.train_session!r} session",
                 "scale_subjects": sorted(own_train), "scale_session": self.train_session,
                 "unscaled_subjects": sorted(set(subject.tolist()) - set(own_train)), "standardised": False}
        return ("session", self.train_session), lambda: np.stack([own_train.get(s, ones) for s in subject.tolist()]), stats

    def for_fold(self, train_subjects: Sequence[str], test_subjects: Sequence[str], seed: int) -> FoldInputs:
        key, scale, stats = self._scaling(train_subjects, test_subjects)
        stats = stats | {"token_store": self.raw.provenance}  # the detector's floor is a statistic too
        if key != self._cache_key:
            self._cache_key, self._cache = key, {}
            trials = self.raw.with_tokens(scale_rows(self.raw.tokens, scale()))
            self._cache["trials"] = trials  # type: ignore[assignment]
            self._cache["base"] = self._finish(self.compute(trials, self.needed - SEEDED_FEATURES, seed), trials)
        trials = self._cache["trials"]  # type: ignore[assignment]
        seeded_keys = self.needed & SEEDED_FEATURES
        if seeded_keys and seed not in self._cache:
            self._cache[seed] = self._finish(self.compute(trials, seeded_keys, seed), trials)
        features = {**self._cache["base"], **(self._cache.get(seed, {}) if seeded_keys else {})}
        return FoldInputs(trials=trials, features=features, statistics=stats)  # type: ignore[arg-type]

    def _finish(self, features: dict[str, np.ndarray], trials: Trials) -> dict[str, np.ndarray]:
        if self.protocol != "unlabelled_target":
            return features
        return {k: standardise_per_subject(v, trials.subject) if k in STANDARDISED_FEATURES else v
                for k, v in features.items()}


class GivenInputs:
    """Features computed by the caller and used as they are (tests, diagnostics): no statistic of
    any subject is applied, so the rows count as strict zero-shot."""

    protocol = "zero_shot"

    def __init__(self, trials: Trials, features: dict[str, np.ndarray]):
        self.raw, self.features = trials, features

    def for_fold(self, train_subjects: Sequence[str], test_subjects: Sequence[str], seed: int) -> FoldInputs:
        return FoldInputs(self.raw, self.features, {"protocol": self.protocol, "scale": "none (features given by the caller)",
                                                     "scale_subjects": []})
