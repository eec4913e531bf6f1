"""The tokenize stage for one dataset: events from the harmonized store into the token store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from aemg.store import publish_group
from aemg.tokenize.dataset import MapFn, tokenize_dataset


def tokenize_one(harmonized: Path, tokens: Path, dataset_id: str, tp: dict[str, Any], map_fn: MapFn = map) -> dict[str, Any]:
    events = tokenize_dataset(harmonized, dataset_id, tp, map_fn)
    tree = xr.DataTree.from_dict({"events": events})
    tree.attrs = {"dataset": dataset_id}
    publish_group(tokens, dataset_id, tree)
    labelled = events["gesture"].values >= 0
    return {
        "dataset": dataset_id,
        "events": int(events.sizes["event"]),
        "sentences": len(np.unique(events["sentence"].values)),
        "labelled_events": int(labelled.sum()),
        "subjects": len(set(events["subject"].values.astype(object))),
    }
