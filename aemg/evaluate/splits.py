"""Leave-one-subject-out and few-shot splits over trials, kept apart from fitting and scoring."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import LeaveOneGroupOut


def loso_folds(subject: np.ndarray) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(held-out subject, train indices, test indices); each subject is held out exactly once."""
    for train, test in LeaveOneGroupOut().split(subject, groups=subject):
        held_out = subject[test[0]]
        assert held_out not in set(subject[train]), "LOSO split leaked the test subject"
        yield str(held_out), train, test


def subject_folds(subject: np.ndarray, max_folds: int | None = None, seed: int = 0
                  ) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
    """(held-out subjects, train indices, test indices); every subject is held out exactly once.

    LOSO (one subject per fold) unless ``max_folds`` is set and smaller than the number of
    subjects: then the subjects, in a seeded random order, are dealt into ``max_folds`` groups
    of near-equal size (leave-subjects-out), which bounds the cost on a 40-person dataset.
    """
    names = np.array(sorted(set(np.asarray(subject).tolist())))
    if not max_folds or len(names) <= max_folds:
        for held_out, train, test in loso_folds(subject):
            yield [held_out], train, test
        return
    order = np.random.default_rng(seed).permutation(len(names))
    for k in range(int(max_folds)):
        held_out = sorted(names[order[k::int(max_folds)]].tolist())
        test_mask = np.isin(subject, held_out)
        train, test = np.flatnonzero(~test_mask), np.flatnonzero(test_mask)
        assert not set(held_out) & set(subject[train].tolist()), "leave-subjects-out split leaked a test subject"
        yield held_out, train, test


@dataclass(frozen=True)
class FewShotSplit:
    """One target subject's trials: an adaptation pool (earliest trials of every class), a fixed
    test set (the rest, whole contractions), and per fraction the adaptation subset."""

    subject: str
    pool: np.ndarray  # trial indices available for adaptation
    test: np.ndarray  # trial indices scored, identical for every fraction
    subsets: dict[float, np.ndarray]  # fraction -> trial indices, a class-stratified prefix of pool


def few_shot_split(
    gesture: np.ndarray,
    chrono: np.ndarray,
    contraction: np.ndarray,
    index: np.ndarray,
    fractions: Sequence[float],
    pool_fraction: float = 0.8,
    subject: str = "",
) -> FewShotSplit:
    """Split one subject's trials (``index``) for few-shot adaptation.

    Per class, trials are put in chronological order (``chrono``: earliest repetition first);
    the first ``round(pool_fraction·n_c)`` form the pool and the rest the test set. A contraction
    (``contraction``: the detected event the trials were cut from, which may span several
    sentences) with any trial in the test set is removed from the pool entirely, so no
    contraction is split between adaptation and test. For a fraction ``f`` the subset takes, per
    class, the earliest ``max(1, round(f·n_c))`` pool trials (``n_c`` = the subject's trials of
    that class), capped by the pool; subsets are nested (a larger fraction extends a smaller one).
    """
    if not 0 < pool_fraction < 1:
        raise ValueError(f"pool_fraction={pool_fraction} must lie in (0, 1)")
    bad = [f for f in fractions if not 0 < f <= pool_fraction + 1e-9]
    if bad:
        raise ValueError(f"few-shot fractions {bad} must lie in (0, pool_fraction={pool_fraction}]")
    index = np.asarray(index)
    pool_parts, test_parts, per_class = [], [], []
    for c in np.unique(gesture[index]):
        idx = index[gesture[index] == c]
        idx = idx[np.argsort(chrono[idx], kind="stable")]
        n_c = len(idx)
        cut = min(max(round(pool_fraction * n_c), 1 if n_c > 1 else 0), n_c - 1 if n_c > 1 else 0)
        pool_parts.append(idx[:cut])
        test_parts.append(idx[cut:])
        per_class.append((idx[:cut], n_c))
    test = np.sort(np.concatenate(test_parts)) if test_parts else np.zeros(0, np.int64)
    in_test = np.unique(contraction[test])
    clean = [(p[~np.isin(contraction[p], in_test)], n_c) for p, n_c in per_class]
    pool = np.sort(np.concatenate([p for p, _ in clean])) if clean else np.zeros(0, np.int64)
    subsets = {}
    for f in fractions:
        parts = [p[: min(len(p), max(1, round(f * n_c)))] for p, n_c in clean]
        subsets[float(f)] = np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
    return FewShotSplit(subject=subject, pool=pool, test=test, subsets=subsets)
