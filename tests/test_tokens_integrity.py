"""The token store holds no subject statistic; tokens keep an envelope's level; contraction ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from aemg.params import DEFAULTS
from aemg.store import publish_group
from aemg.tokenize.dataset import tokenize_dataset
from aemg.tokenize.events import EventParams, tokens_from_events
from aemg.tokenize.synthetic_store import synthetic_group

TP = {**DEFAULTS["tokenize"], "recordings_per_task": 2}


def write(store: Path, ds: xr.Dataset) -> Path:
    publish_group(store, ds.attrs["dataset"], ds)
    return store


def with_recording_scaled(ds: xr.Dataset, rec: int, factor: float) -> xr.Dataset:
    """``ds`` with recording ``rec``'s samples multiplied by ``factor`` (same length, same events)."""
    emg = ds["emg"].values.copy()
    o, n = int(ds["offset"].values[rec]), int(ds["n_times"].values[rec])
    emg[o:o + n] *= np.float32(factor)
    return ds.assign(emg=(("sample", "channel"), emg))


def test_envelope_tokens_keep_their_level(tmp_path: Path) -> None:
    ds = synthetic_group(n_subjects=2, recordings_per_subject=1, duration_s=20.0)
    level = 5.0 * float(np.abs(ds["emg"].values).mean())
    envelope = ds.assign(emg=(("sample", "channel"), np.abs(ds["emg"].values) + np.float32(level)))
    envelope.attrs["signal"] = "envelope"
    events = tokenize_dataset(write(tmp_path / "h.zarr", envelope), "synthetic", TP)
    assert events.attrs["signal"] == "envelope" and not events.attrs["token_demeaned"]
    means = events["token"].values.mean(axis=2)
    assert np.all(means > 0.9 * level)  # the level is in every token, in the signal's units
    emg = tokenize_dataset(write(tmp_path / "e.zarr", ds), "synthetic", TP)
    assert emg.attrs["signal"] == "emg" and emg.attrs["token_demeaned"] and emg.attrs["token_units"] == "V"
    assert np.abs(emg["token"].values.mean(axis=2)).max() < 1e-5


def test_tokens_do_not_depend_on_other_recordings_of_the_subject(tmp_path: Path) -> None:
    ds = synthetic_group(n_subjects=2, recordings_per_subject=3, duration_s=30.0)
    tp = {**TP, "detector": "hysteresis"}  # default floor: the first 20 s (calibration), inside recording 0
    before = tokenize_dataset(write(tmp_path / "a.zarr", ds), "synthetic", tp)
    after = tokenize_dataset(write(tmp_path / "b.zarr", with_recording_scaled(ds, 2, 30.0)), "synthetic", tp)
    for events in (before, after):
        assert events.attrs["detector"] == "hysteresis" and events.attrs["floor_scope"] == "calibration"
    keep = [0, 1, 3, 4, 5]  # every recording but the changed one
    a, b = (e.isel(event=np.flatnonzero(np.isin(e["recording"].values, keep))) for e in (before, after))
    assert a.sizes["event"] > 20
    for name in ("start", "stop", "token", "order"):  # ids are offset by the changed recording's count
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_contraction_is_shared_by_the_sentences_of_one_event() -> None:
    p = EventParams.from_params(TP, 200.0)
    x = np.ones((3000, 64), np.float32)
    tok = tokens_from_events(x, np.zeros(3000, np.int16), [(0, 2000), (2500, 2600)], p, True)
    long = tok["contraction"] == 0
    assert len(np.unique(tok["sentence"][long])) > 1  # 64 channels: 4 tokens per sentence
    assert np.array_equal(np.unique(tok["contraction"]), [0, 1])
    assert not set(tok["sentence"][long]) & set(tok["sentence"][~long])


def test_contraction_ids_are_unique_within_the_dataset(tmp_path: Path) -> None:
    ds = synthetic_group(n_subjects=2, recordings_per_subject=2, duration_s=20.0)
    events = tokenize_dataset(write(tmp_path / "h.zarr", ds), "synthetic", {**TP, "max_order": 1})
    contraction, recording = events["contraction"].values, events["recording"].values
    assert events["contraction"].dtype == np.int64
    for c in np.unique(contraction):  # one contraction never spans two recordings
        assert len(np.unique(recording[contraction == c])) == 1
    per = {c: len(np.unique(events["sentence"].values[contraction == c])) for c in np.unique(contraction)}
    assert max(per.values()) > 1 and len(np.unique(recording)) == 4
