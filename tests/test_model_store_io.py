"""Token store -> model input: subject-disjoint splits and sentence-preserving subsampling."""

from __future__ import annotations

import numpy as np

from aemg.model.data import TokenSet
from aemg.model.store_io import limit_patches, split_by_subject


def tokenset(n_sentences: int = 40, per_sentence: int = 3, n_chans: int = 8) -> TokenSet:
    n = n_sentences * per_sentence
    rng = np.random.default_rng(0)
    return TokenSet(
        tokens=rng.standard_normal((n, n_chans, 50)).astype(np.float32),
        positions=np.zeros((n_chans, 3), np.float32),
        sentence=np.repeat(np.arange(n_sentences), per_sentence),
        order=np.tile(np.arange(per_sentence), n_sentences),
        onset=np.tile(np.arange(per_sentence) * 0.25, n_sentences).astype(np.float32),
        subject=np.repeat([f"s{i}" for i in range(10)], n // 10),
        dataset="synthetic",
    )


def test_split_by_subject_is_disjoint_and_complete():
    ts = tokenset()
    train, heldout = split_by_subject(ts, 0.2, seed=1)
    assert set(train.subject) & set(heldout.subject) == set()
    assert len(set(heldout.subject)) == 2 and len(train.tokens) + len(heldout.tokens) == len(ts.tokens)


def test_limit_patches_keeps_whole_sentences_within_budget():
    ts = tokenset()
    small = limit_patches(ts, max_patches=10 * 3 * 8, seed=0)
    assert small.tokens.shape[0] * 8 <= 10 * 3 * 8
    _, counts = np.unique(small.sentence, return_counts=True)
    assert np.all(counts == 3)  # no sentence cut in half
    assert limit_patches(ts, max_patches=10**9, seed=0) is ts
