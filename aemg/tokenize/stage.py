"""The tokenize stage for one dataset: events and muscle states into the token store, one publish."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from aemg.schemas import EventTable
from aemg.store import publish_group
from aemg.tokenize.dataset import MapFn, tokenize_group
from aemg.tokenize.state_tokens import states_encoding, validate_states


def validate_tree(tree: xr.DataTree) -> None:
    """Read-back check of a dataset's token group, as readers will see it after publish."""
    events = tree["events"].to_dataset()
    scalar = [k for k, v in events.data_vars.items() if v.dims == ("event",)]
    frame = events[scalar].to_dataframe().reset_index(drop=True)
    EventTable.validate(frame.astype({"subject": str}))
    if "states" in tree.children:
        validate_states(tree["states"].to_dataset())


def tokenize_one(harmonized: Path, tokens: Path, dataset_id: str, tp: dict[str, Any], map_fn: MapFn = map) -> dict[str, Any]:
    groups = tokenize_group(harmonized, dataset_id, tp, map_fn)
    events, states = groups["events"], groups["states"]
    tree = xr.DataTree.from_dict(groups)
    tree.attrs = {"dataset": dataset_id}
    publish_group(tokens, dataset_id, tree, validate=validate_tree, encoding={"/states": states_encoding(states)})
    labelled = events["gesture"].values >= 0
    return {
        "dataset": dataset_id,
        "events": int(events.sizes["event"]),
        "sentences": len(np.unique(events["sentence"].values)),
        "labelled_events": int(labelled.sum()),
        "subjects": len(set(events["subject"].values.astype(object))),
        "frames": int(states.sizes["frame"]),
        "states_k": int(states.attrs["k"]),
        "heldout_subjects": len(states.attrs["heldout_subjects"]),
    }
