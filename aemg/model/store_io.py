"""Token store -> :class:`TokenSet`; the only part of ``aemg.model`` that reads a store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from aemg.errors import AemgError
from aemg.model.data import TokenSet


def open_events(tokens_store: Path, dataset: str) -> xr.Dataset:
    path = Path(tokens_store)
    if not (path / dataset / "events" / "zarr.json").exists():
        raise AemgError(f"{dataset}: no events in {path}; run `aemg tokenize {dataset}` first")
    return xr.open_zarr(path, group=f"{dataset}/events", consolidated=False)


def electrode_positions(events: xr.Dataset) -> np.ndarray:
    """(cos angle, sin angle, distance) per channel; unknown coordinates become 0."""
    angle = np.deg2rad(np.nan_to_num(events["angle_deg"].values.astype(np.float64)))
    distance = np.nan_to_num(events["distance"].values.astype(np.float64))
    return np.stack([np.cos(angle), np.sin(angle), distance], axis=1).astype(np.float32)


def load_tokenset(tokens_store: Path, dataset: str, index: np.ndarray | None = None) -> TokenSet:
    """Events of one dataset (optionally rows ``index``) as model input."""
    events = open_events(tokens_store, dataset)
    rows = slice(None) if index is None else index
    return TokenSet(
        tokens=events["token"].values[rows],
        positions=electrode_positions(events),
        sentence=events["sentence"].values[rows],
        order=events["order"].values[rows],
        onset=events["time_in_sentence_s"].values[rows],
        subject=events["subject"].values.astype(object)[rows],
        dataset=dataset,
    )


def split_by_subject(ts: TokenSet, heldout_fraction: float, seed: int) -> tuple[TokenSet, TokenSet]:
    """Whole subjects go to the held-out side (AEMG's release split by window, which leaks)."""
    subjects = np.array(sorted(set(ts.subject.tolist())))
    rng = np.random.default_rng(seed)
    n_held = max(1, round(heldout_fraction * len(subjects))) if len(subjects) > 1 else 0
    held = set(rng.choice(subjects, size=n_held, replace=False).tolist())
    mask = np.isin(ts.subject, list(held))
    return subset(ts, ~mask), subset(ts, mask)


def subset(ts: TokenSet, mask: np.ndarray) -> TokenSet:
    return TokenSet(
        tokens=ts.tokens[mask], positions=ts.positions, sentence=ts.sentence[mask], order=ts.order[mask],
        onset=ts.onset[mask], subject=ts.subject[mask], dataset=ts.dataset,
    )


def limit_patches(ts: TokenSet, max_patches: int, seed: int) -> TokenSet:
    """Whole sentences, drawn at random, until ``max_patches`` (events x channels) are reached.

    Bounds pre-training cost per dataset (a 64-channel array would otherwise dominate) while
    keeping sentences intact for masked-token modelling.
    """
    n_chans = ts.tokens.shape[1]
    if max_patches <= 0 or len(ts.tokens) * n_chans <= max_patches:
        return ts
    sentences, sizes = np.unique(ts.sentence, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(sentences))
    kept = order[np.cumsum(sizes[order] * n_chans) <= max_patches]
    return subset(ts, np.isin(ts.sentence, sentences[kept]))
