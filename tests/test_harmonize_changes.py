"""Only what changed is rebuilt (the scheduled run): files, parameters, and the spec itself."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from test_faults_common import HP, builtin_spec

from aemg.harmonize.stage import harmonize_one
from aemg.store import open_group
from aemg.vocabulary import GESTURES

from conftest import SHARED_DATA


def test_a_changed_gesture_map_counts_as_changed(tmp_path: Path) -> None:
    spec, subjects = builtin_spec("unibo-inail"), ["1"]
    root, store = SHARED_DATA / spec.id, tmp_path / "h.zarr"
    assert harmonize_one(spec, root, store, HP, subjects)["action"] == "harmonized"
    assert harmonize_one(spec, root, store, HP, subjects, only_changed=True)["action"] == "unchanged"
    assert GESTURES["hand_open"] in np.unique(open_group(store, spec.id)["gesture"].values)
    remapped = replace(spec, gestures={**spec.gestures, 6: "fingers_adduction"})  # native 6 was hand_open
    assert harmonize_one(remapped, root, store, HP, subjects, only_changed=True)["action"] == "harmonized"
    codes = np.unique(open_group(store, spec.id)["gesture"].values)
    assert GESTURES["fingers_adduction"] in codes and GESTURES["hand_open"] not in codes
    assert harmonize_one(remapped, root, store, HP, subjects, only_changed=True)["action"] == "unchanged"
    assert harmonize_one(remapped, root, store, {**HP, "notch_q": 20.0}, subjects, only_changed=True)["action"] == "harmonized"
