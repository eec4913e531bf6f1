"""AEMG's 16-virtual-channel view (``harmonize.virtual_channels: 16``): by position, recorded, exact."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_faults_common import HP, builtin_spec

from aemg.datasets.spec import Channel
from aemg.errors import DatasetError
from aemg.harmonize.channels import channel_view
from aemg.harmonize.dataset import validate_group
from aemg.harmonize.stage import harmonize_one
from aemg.store import open_group

from conftest import SHARED_DATA


def test_eight_pod_ring_repeats_even_slots_and_averages_odd_ones() -> None:
    view = channel_view(builtin_spec("myo-armband-cote-allard"), 16)
    assert view.names[0] == "v01" and view.n_chans == 16
    np.testing.assert_allclose(view.angle_deg, np.arange(16) * 22.5)
    assert view.sources[0] == ("myo1",) and view.sources[2] == ("myo2",)  # a pod on the slot: repeated
    assert view.sources[1] == ("myo1", "myo2") and view.sources[15] == ("myo1", "myo8")  # between: averaged
    np.testing.assert_allclose(view.weights.sum(axis=1), 1.0)


def test_dense_array_averages_every_electrode_into_its_nearest_slot() -> None:
    spec = builtin_spec("flexemg")
    view = channel_view(spec, 16)
    used = np.flatnonzero(view.weights.sum(axis=0))
    assert len(used) == spec.n_chans  # no electrode dropped
    assert all(np.count_nonzero(w) >= 1 for w in view.weights)


def test_unplaced_electrodes_are_left_out_by_name_and_no_position_is_an_error() -> None:
    spec = builtin_spec("ninapro-db4")
    view = channel_view(spec, 16)
    unplaced = [c.name for c in spec.channels if not np.isfinite(c.angle_deg)]
    assert view.unplaced == tuple(unplaced) and len(unplaced) == 2
    assert not view.weights[:, [spec.ch_names.index(n) for n in unplaced]].any()
    blind = replace(spec, channels=tuple(Channel(c.name, float("nan"), c.distance) for c in spec.channels))
    with pytest.raises(DatasetError, match=r"ninapro-db4.*no electrode has an angle_deg.*virtual_channels: null"):
        channel_view(blind, 16)


def test_store_holds_the_virtual_ring_and_records_it(tmp_path: Path) -> None:
    spec, subjects = builtin_spec("myo-armband-cote-allard"), ["pre-Female0"]
    root = SHARED_DATA / spec.id
    harmonize_one(spec, root, tmp_path / "e.zarr", HP, subjects)
    harmonize_one(spec, root, tmp_path / "v.zarr", {**HP, "virtual_channels": 16}, subjects)
    electrodes = open_group(tmp_path / "e.zarr", spec.id).load()
    virtual = open_group(tmp_path / "v.zarr", spec.id).load()
    validate_group(virtual, 16)
    assert virtual["channel"].values.tolist() == [f"v{k:02d}" for k in range(1, 17)]
    assert virtual.attrs["channel_view"] == "virtual-16" and json.loads(virtual.attrs["harmonize_params"])["virtual_channels"] == 16
    assert json.loads(virtual.attrs["channel_sources"])["v02"] == ["myo1", "myo2"]
    assert "channel_view" not in electrodes.attrs
    e, v = electrodes["emg"].values, virtual["emg"].values
    # the map is linear, so mapping before filtering equals filtering then mapping
    np.testing.assert_allclose(v[:, 0], e[:, 0], rtol=0, atol=1e-5 * np.abs(e).max())
    np.testing.assert_allclose(v[:, 1], (e[:, 0] + e[:, 1]) / 2, rtol=0, atol=1e-5 * np.abs(e).max())
    np.testing.assert_array_equal(virtual["gesture"].values, electrodes["gesture"].values)
    q_e, q_v = electrodes["quality"].values, virtual["quality"].values
    np.testing.assert_array_equal(q_v[:, 1], q_e[:, 0] | q_e[:, 1])  # a virtual channel carries its sources' flags
