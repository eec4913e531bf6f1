"""Token store -> :class:`TokenSet`; the only part of ``aemg.model`` that reads a store."""

from __future__ import annotations

import numpy as np
import xarray as xr

from aemg.model.data import TokenSet
from aemg.scaling import scale_by_own_subject
from aemg.store import StoreLike, open_events


def electrode_positions(events: xr.Dataset) -> np.ndarray:
    """(cos angle, sin angle, distance) per channel; unknown coordinates become 0.

    An unknown angle gives (0, 0), not the (1, 0) of angle 0: it is then told apart from a
    known electrode at 0 degrees and stays put when training turns the array (rotation_deg).
    """
    raw = events["angle_deg"].values.astype(np.float64)
    known = np.isfinite(raw)
    angle = np.deg2rad(np.where(known, raw, 0.0))
    distance = np.nan_to_num(events["distance"].values.astype(np.float64))
    return np.stack([np.cos(angle) * known, np.sin(angle) * known, distance], axis=1).astype(np.float32)


def load_tokenset(tokens_store: StoreLike, dataset: str, index: np.ndarray | None = None) -> TokenSet:
    """Events of one dataset (optionally rows ``index``) as model input, each subject's tokens
    divided by that subject's own channel RMS over the rows loaded.

    The store keeps tokens unscaled (:mod:`aemg.tokenize.events`); scaling by a subject's own
    rows is right for pre-training, whose subjects are all training data, and for figures of
    one subject. Evaluation scales its trials per fold instead (:mod:`aemg.evaluate.trials`).
    With ``index``, only the Zarr chunks holding those rows are read: pre-training picks its
    rows from the small per-event columns first (:func:`pretraining_sets`), so the token array
    of a large dataset is never loaded whole.
    """
    events = open_events(tokens_store, dataset)
    if index is not None:
        events = events.isel(event=np.asarray(index))
    subject = events["subject"].values.astype(object)
    return TokenSet(
        tokens=scale_by_own_subject(events["token"].values, subject),
        positions=electrode_positions(events),
        sentence=events["sentence"].values,
        order=events["order"].values,
        onset=events["time_in_sentence_s"].values,
        subject=subject,
        dataset=dataset,
    )


def signal_kind(tokens_store: StoreLike, dataset: str) -> str:
    """The ``signal`` kind a dataset's events were cut from (``emg`` for a store that predates the attr)."""
    return str(open_events(tokens_store, dataset).attrs.get("signal", "emg"))


def split_rows(subject: np.ndarray, heldout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, held-out rows): whole subjects go to the held-out side (AEMG's release split
    by window, which leaks)."""
    subject = np.asarray(subject).astype(object).astype(str)  # Zarr v3 strings are StringDType
    subjects = np.array(sorted(set(subject.tolist())))
    rng = np.random.default_rng(seed)
    n_held = max(1, round(heldout_fraction * len(subjects))) if len(subjects) > 1 else 0
    held = set(rng.choice(subjects, size=n_held, replace=False).tolist())
    mask = np.isin(subject, list(held))
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def limit_rows(sentence: np.ndarray, rows: np.ndarray, n_chans: int, max_patches: int, seed: int) -> np.ndarray:
    """Of ``rows``, whole sentences drawn at random until ``max_patches`` (events x channels).

    Bounds pre-training cost per dataset (a 64-channel array would otherwise dominate) while
    keeping sentences intact for masked-token modelling.
    """
    if max_patches <= 0 or len(rows) * n_chans <= max_patches:
        return rows
    sentences, sizes = np.unique(sentence[rows], return_counts=True)
    order = np.random.default_rng(seed).permutation(len(sentences))
    kept = order[np.cumsum(sizes[order] * n_chans) <= max_patches]
    return rows[np.isin(sentence[rows], sentences[kept])]


def pretraining_rows(tokens_store: StoreLike, dataset: str, heldout_fraction: float, max_patches: int,
                     seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(train rows, held-out rows, n_chans) chosen from the per-event columns alone; the
    held-out side gets a quarter of the patch budget."""
    events = open_events(tokens_store, dataset)
    subject, sentence = events["subject"].values, events["sentence"].values
    n_chans = events.sizes["channel"]
    train, held = split_rows(subject, heldout_fraction, seed)
    return (limit_rows(sentence, train, n_chans, max_patches, seed),
            limit_rows(sentence, held, n_chans, max_patches // 4, seed), n_chans)


def pretraining_sets(tokens_store: StoreLike, dataset: str, heldout_fraction: float, max_patches: int,
                     seed: int) -> tuple[TokenSet, TokenSet]:
    """The train and held-out TokenSets of one dataset, reading only their token rows."""
    train, held, _ = pretraining_rows(tokens_store, dataset, heldout_fraction, max_patches, seed)
    return load_tokenset(tokens_store, dataset, train), load_tokenset(tokens_store, dataset, held)


def split_by_subject(ts: TokenSet, heldout_fraction: float, seed: int) -> tuple[TokenSet, TokenSet]:
    """:func:`split_rows` on an in-memory TokenSet."""
    train, held = split_rows(ts.subject, heldout_fraction, seed)
    return ts.select(train), ts.select(held)


def limit_patches(ts: TokenSet, max_patches: int, seed: int) -> TokenSet:
    """:func:`limit_rows` on an in-memory TokenSet (the same TokenSet when within budget)."""
    rows = np.arange(ts.n_events)
    kept = limit_rows(ts.sentence, rows, ts.n_chans, max_patches, seed)
    return ts if len(kept) == len(rows) else ts.select(kept)
