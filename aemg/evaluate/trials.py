"""Trials = labelled contraction-event tokens; every method sees exactly the same ones."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from aemg.errors import AemgError


@dataclass
class Trials:
    dataset: str
    tokens: np.ndarray  # float32 (n, n_chans, T)
    gesture: np.ndarray  # int16 (n,)
    subject: np.ndarray  # str (n,)
    event_index: np.ndarray  # row in the token store's events table

    @property
    def subjects(self) -> list[str]:
        return sorted(set(self.subject.tolist()))


def load_trials(tokens_store: Path, dataset: str) -> Trials:
    """Labelled events of one dataset (unlabelled ones, gesture -1, are not trials)."""
    path = Path(tokens_store)
    if not (path / dataset / "events" / "zarr.json").exists():
        raise AemgError(f"{dataset}: no events in {path}; run `aemg tokenize {dataset}` first")
    events = xr.open_zarr(path, group=f"{dataset}/events", consolidated=False)
    gesture = events["gesture"].values
    keep = np.flatnonzero(gesture >= 0)
    return Trials(
        dataset=dataset,
        tokens=events["token"].values[keep],
        gesture=gesture[keep],
        subject=events["subject"].values.astype(object)[keep].astype(str),
        event_index=keep,
    )
