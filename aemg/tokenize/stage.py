"""The tokenize stage for one dataset: events and muscle states into the token store, one commit."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from aemg.params import params_hash
from aemg.schemas import EventTable
from aemg.store import StoreLike, group_writer, open_events, pin
from aemg.tokenize.dataset import MapFn, tokenize_into
from aemg.tokenize.state_tokens import validate_states


def validate_tree(tree: xr.DataTree) -> None:
    """Read-back check of a dataset's token group, as readers will see it after the commit."""
    events = tree["events"].to_dataset()
    scalar = [k for k, v in events.data_vars.items() if v.dims == ("event",)] + ["subject", "gesture"]
    frame = events[scalar].reset_coords()[scalar].to_dataframe().reset_index(drop=True)
    EventTable.validate(frame.astype({"subject": str}))
    if "states" in tree.children:
        validate_states(tree["states"].to_dataset())


def tokenize_one(harmonized: StoreLike, tokens: StoreLike, dataset_id: str, tp: dict[str, Any], map_fn: MapFn = map
                 ) -> dict[str, Any]:
    """Tokenize one dataset of the harmonized store's current snapshot and commit it to the token store.

    Every task reads the same harmonized snapshot (pinned once here), and the commit names it, so
    a token snapshot says exactly which harmonized data it was cut from.
    """
    source = pin(harmonized)
    provenance = {"stage": "tokenize", "params_hash": params_hash(tp), "harmonized": str(source)}
    message = f"tokenize {dataset_id}: params {provenance['params_hash']}, harmonized snapshot {source.snapshot}"
    with group_writer(tokens, dataset_id, validate=validate_tree, tree=True, message=message,
                      metadata=provenance) as write:
        states = tokenize_into(write, source, dataset_id, tp, map_fn)
    assert write.published is not None
    events = open_events(tokens, dataset_id)
    return {
        "dataset": dataset_id,
        "events": int(events.sizes["event"]),
        "sentences": len(np.unique(events["sentence"].values)),
        "labelled_events": int((events["gesture"].values >= 0).sum()),
        "subjects": len(set(events["subject"].values.tolist())),
        **states,
        "snapshot": write.published.snapshot,
    }
