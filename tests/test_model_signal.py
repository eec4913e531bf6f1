"""Pre-training reads unscaled tokens and scales each subject by itself; envelopes stay out of raw-EMG models."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from aemg.model import stage
from aemg.model.store_io import load_tokenset
from aemg.params import DEFAULTS
from aemg.store import open_group, publish_group
from aemg.tokenize.dataset import tokenize_dataset
from aemg.tokenize.synthetic_store import synthetic_group

TP = {**DEFAULTS["tokenize"], "recordings_per_task": 2}
KINDS = {"emg-a": "emg", "emg-b": "emg", "env": "envelope"}


@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("signal")
    for i, (name, kind) in enumerate(KINDS.items()):
        ds = synthetic_group(dataset=name, n_subjects=3, recordings_per_subject=1, duration_s=20.0, seed=i,
                             subject_gain={0: 1.0, 1: 20.0, 2: 0.05})
        if kind == "envelope":
            ds = ds.assign(emg=(("sample", "channel"), np.abs(ds["emg"].values)))
        ds.attrs["signal"] = kind
        publish_group(root / "h.zarr", name, ds)
        events = tokenize_dataset(root / "h.zarr", name, TP)
        publish_group(root / "t.zarr", name, xr.DataTree.from_dict({"events": events}))
    return root / "t.zarr"


def test_pretraining_tokenset_has_unit_rms_per_subject(tokens: Path) -> None:
    ts = load_tokenset(tokens, "emg-a")
    subject = ts.subject.astype(str)
    raw = open_group(tokens, "emg-a/events")["token"].values
    loud, quiet = (np.sqrt((raw[subject == s] ** 2).mean()) for s in ("S01", "S02"))
    assert loud > 100 * quiet  # the store keeps the subjects' own amplitudes
    assert len(set(subject)) == 3
    for s in set(subject):
        rms = np.sqrt((ts.tokens[subject == s].astype(np.float64) ** 2).mean(axis=(0, 2)))
        np.testing.assert_allclose(rms, 1.0, rtol=1e-4)


@pytest.fixture()
def no_training(monkeypatch):
    def fake(train_sets, heldout_sets, cfg, out_dir, **kwargs):
        return {k: 0.0 for k in stage.SCALAR_METRICS} | {"num_threads": 1, "budget": {}}
    monkeypatch.setattr(stage, "pretrain", fake)


def manifest_of(tokens: Path, out: Path, evaluated: str, **pp) -> dict:
    stage.pretrain_without(tokens, out, evaluated, list(KINDS), {**DEFAULTS["pretrain"], **pp}, seed=0)
    return json.loads((out / "manifest.json").read_text())


def test_raw_emg_model_excludes_envelope_datasets(tokens: Path, tmp_path: Path, no_training) -> None:
    m = manifest_of(tokens, tmp_path / "a", "emg-a")
    assert sorted(m["subjects_seen"]) == ["emg-b"]
    assert "env" in m["excluded"] and "signal" in m["excluded"]["env"]
    assert m["signal"] == "emg" and m["signal_mismatch"] is False
    everything = manifest_of(tokens, tmp_path / "b", "emg-a", match_signal=False)
    assert sorted(everything["subjects_seen"]) == ["emg-b", "env"] and everything["excluded"] == {}


def test_envelope_model_falls_back_loudly(tokens: Path, tmp_path: Path, no_training, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="aemg.model.stage"):
        m = manifest_of(tokens, tmp_path / "c", "env")
    assert m["signal_mismatch"] is True and m["signal_kinds"] == {"emg-a": "emg", "emg-b": "emg"}
    assert sorted(m["subjects_seen"]) == ["emg-a", "emg-b"]
    assert any("signal_mismatch" in r.message for r in caplog.records)
