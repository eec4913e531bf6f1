"""Hysteresis floor per subject: a recording that never rests still gets its contraction as events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aemg.params import DEFAULTS
from aemg.tokenize.dataset import tokenize_dataset
from aemg.tokenize.events import EventParams, floor_summary, subject_floors
from aemg.tokenize.synthetic_store import write_synthetic_store

ACTIVE = (1, 0)  # subject 1's first recording contracts from start to end


def hysteresis(scope: str) -> dict:
    tp = DEFAULTS["tokenize"]
    return {**tp, "detector": "hysteresis", "recordings_per_task": 2,
            "hysteresis": {**tp["hysteresis"], "floor_scope": scope}}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return write_synthetic_store(tmp_path_factory.mktemp("floor") / "harmonized.zarr", n_subjects=2,
                                 recordings_per_subject=3, duration_s=30.0, always_active=[ACTIVE])


def covered(events, rec: int, n_times: int) -> float:
    """Share of the recording's samples inside an event."""
    mask = np.zeros(n_times, bool)
    sel = events["recording"].values == rec
    for a, b in zip(events["start"].values[sel], events["stop"].values[sel], strict=True):
        mask[a:b] = True
    return float(mask.mean())


def test_subject_floor_finds_the_contraction_of_a_recording_without_rest(store: Path) -> None:
    n_times = 30 * 200
    active = ACTIVE[0] * 3 + ACTIVE[1]
    by_recording = tokenize_dataset(store, "synthetic", hysteresis("recording"))
    by_subject = tokenize_dataset(store, "synthetic", hysteresis("subject"))
    # its own floor is contraction, so the recording-scope detector sees little of it
    assert covered(by_recording, active, n_times) < 0.6
    assert covered(by_subject, active, n_times) > 0.95
    # recordings with rest keep their events (the pooled floor is rest for them too)
    for rec in (3 + 1, 3 + 2):
        assert abs(covered(by_subject, rec, n_times) - covered(by_recording, rec, n_times)) < 0.1


def test_subject_floors_pool_recordings_and_stay_small() -> None:
    rng = np.random.default_rng(0)
    quiet, busy = rng.uniform(1, 2, 30_000), rng.uniform(50, 60, 10_000)  # 75 % of the windows are quiet
    summaries = [("A", floor_summary(quiet)), ("A", floor_summary(busy)), ("B", floor_summary(busy))]
    assert all(len(v) == len(w) <= 1024 for _, (v, w) in summaries)
    floors = subject_floors(summaries, 0.2)
    want = np.quantile(np.concatenate([quiet, busy]), 0.2)
    assert floors["A"] == pytest.approx(want, rel=0.01)
    assert floors["B"] == pytest.approx(np.quantile(busy, 0.2), rel=0.01)


def test_unknown_floor_scope_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"floor_scope='session'.*recording, subject"):
        EventParams.from_params(hysteresis("session"), 200.0)


def test_calibration_floor_ignores_later_louder_recordings(tmp_path: Path) -> None:
    from aemg.store import publish_group
    from aemg.tokenize.dataset import hysteresis_floors
    from aemg.tokenize.synthetic_store import synthetic_group

    ds = synthetic_group(n_subjects=2, recordings_per_subject=6, duration_s=30.0)
    emg = ds["emg"].values.copy()
    offset, n_times = ds["offset"].values.astype(int), ds["n_times"].values.astype(int)
    for rec in range(1, 6):  # subject 0's later recordings, much louder (band slipped, gain changed)
        emg[offset[rec]:offset[rec] + n_times[rec]] *= np.float32(50.0)
    kept = [0, *range(6, 12)]  # without them
    only_first = ds.isel(recording=kept, sample=np.concatenate([np.arange(offset[r], offset[r] + n_times[r]) for r in kept]))
    only_first = only_first.assign(offset=("recording", np.concatenate([[0], np.cumsum(n_times[kept])[:-1]])))
    louder = ds.assign(emg=(("sample", "channel"), emg))
    for name, group in (("first", only_first), ("louder", louder)):
        publish_group(tmp_path / f"{name}.zarr", "synthetic", group)
    floors = {name: {scope: hysteresis_floors(tmp_path / f"{name}.zarr", "synthetic", hysteresis(scope))
                     for scope in ("calibration", "subject")} for name in ("first", "louder")}
    assert floors["louder"]["calibration"] == floors["first"]["calibration"]
    assert floors["louder"]["subject"]["S00"] > 2 * floors["first"]["subject"]["S00"]  # the pooled floor moves
