"""Electrode-shift augmentation: rotated positions, untouched signal, training batches only."""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import pytest
import xarray as xr

import aemg.model.train as train_mod
from aemg.evaluate.estimators import EventTransformerClassifier
from aemg.evaluate.synthetic import make_synthetic_trials
from aemg.model import ModelConfig, ModelConfigError, collate_sentences, embed_tokens, make_synthetic_tokenset, pretrain
from aemg.model.data import rotate_batch, rotate_positions, rotation_angles
from aemg.model.store_io import electrode_positions

from conftest import TINY_MODEL

TINY_CFG = ModelConfig(**TINY_MODEL)


def _angles(positions: np.ndarray) -> np.ndarray:
    return np.degrees(np.arctan2(positions[..., 1], positions[..., 0]))


def _wrap(deg: np.ndarray) -> np.ndarray:
    return (deg + 180.0) % 360.0 - 180.0


def test_rotated_batch_keeps_signal_and_turns_each_sentence_by_its_angle():
    ts = make_synthetic_tokenset(n_events=60, n_chans=4, n_subjects=2, seed=0)
    ts.positions[3] = 0.0  # an electrode of unknown position
    items = [(0, chunk) for chunk in ts.chunks(64)[:5]]
    batch = collate_sentences([ts], items)
    delta = rotation_angles(len(items), 40.0, np.random.default_rng(0))
    turned = rotate_batch(batch, delta)
    assert np.array_equal(turned.patches, batch.patches) and np.array_equal(turned.padding, batch.padding)
    assert np.array_equal(turned.positions[..., 2], batch.positions[..., 2])  # distance kept
    known = ~batch.padding & (np.abs(batch.positions[..., :2]).sum(-1) > 0)
    for b in range(len(items)):
        diff = _wrap(_angles(turned.positions[b]) - _angles(batch.positions[b]))[known[b]]
        assert np.allclose(diff, delta[b], atol=1e-3)
    unknown = ~batch.padding & ~known
    assert unknown.any() and not turned.positions[unknown].any()  # unknown stays unknown
    assert len(np.unique(np.round(delta, 6))) == len(items) and np.abs(delta).max() <= 40.0
    assert not rotation_angles(3, 0.0, np.random.default_rng(0)).any()


def test_rotation_works_on_torch_tensors_as_on_arrays():
    import torch

    pos = make_synthetic_tokenset(n_events=4, n_chans=6, seed=1).positions
    delta = np.linspace(-30, 30, len(pos))
    assert np.allclose(rotate_positions(torch.from_numpy(pos), torch.from_numpy(delta)).numpy(),
                       rotate_positions(pos, delta), atol=1e-6)


def test_unknown_electrode_angle_is_zero_not_angle_zero():
    events = xr.Dataset({"angle_deg": ("channel", [90.0, np.nan]), "distance": ("channel", [0.5, np.nan])})
    pos = electrode_positions(events)
    assert np.allclose(pos[0], [0.0, 1.0, 0.5], atol=1e-6) and not pos[1].any()


def test_pretrain_rotates_training_batches_only(monkeypatch, tmp_path):
    calls = {"batch": 0, "patches": 0}

    def count(name, fn):
        def wrapped(*args):
            calls[name] += 1
            return fn(*args)
        return wrapped

    monkeypatch.setattr(train_mod, "rotate_batch", count("batch", train_mod.rotate_batch))
    monkeypatch.setattr(train_mod, "rotate_positions", count("patches", train_mod.rotate_positions))
    train = make_synthetic_tokenset(n_events=400, n_chans=4, n_subjects=3, seed=0)
    held = make_synthetic_tokenset(n_events=100, n_chans=4, n_subjects=1, subject_offset=3, seed=1)
    cfg = replace(TINY_CFG, rotation_deg=45.0)
    m = pretrain([train], [held], cfg, tmp_path / "on", device="cpu", progress=False, num_threads=1)
    steps = m["history"]["vq"]["steps"][0], m["history"]["mtm"]["steps"][0]
    assert (calls["patches"], calls["batch"]) == (int(steps[0]), int(steps[1]))  # every training step, no eval
    before = dict(calls)
    emb = embed_tokens(tmp_path / "on", held, device="cpu")
    assert calls == before and np.array_equal(emb, embed_tokens(tmp_path / "on", held, device="cpu"))
    off = pretrain([train], [held], TINY_CFG, tmp_path / "off", device="cpu", progress=False, num_threads=1)
    assert calls == before and off["weights_sha256"] != m["weights_sha256"]


def test_rotation_range_is_checked():
    with pytest.raises(ModelConfigError, match="rotation_deg"):
        ModelConfig(**{**asdict(TINY_CFG), "rotation_deg": 200.0})


def test_finetune_rotates_training_batches_only():
    trials = make_synthetic_trials(n_subjects=3, n_classes=3, trials_per_class=6, n_chans=4, seed=0)
    est = EventTransformerClassifier(trials, rotation_deg=60.0)
    est.cfg_ = est._cfg()
    X = np.arange(len(trials))
    y = np.zeros(len(trials), dtype=int)
    plain = [b for b, _, _ in est._batches(X, None, None)]
    again = [b for b, _, _ in est._batches(X, None, None)]
    assert all(np.array_equal(a.positions, b.positions) for a, b in zip(plain, again, strict=True))
    assert np.allclose(plain[0].positions[0, :4], trials.tokenset(X).positions, atol=1e-6)  # eval: as recorded
    trained = [b for b, _, _ in est._batches(X, y, np.random.default_rng(0))]
    turns = _wrap(_angles(trained[0].positions[:, 0]) - _angles(trials.tokenset(X).positions[0]))
    assert len(np.unique(np.round(turns, 4))) > 1 and np.abs(turns).max() <= 60.0 + 1e-3  # one angle per sentence
    assert np.array_equal(
        np.sort(np.concatenate([b.patches.reshape(-1) for b in trained])),
        np.sort(np.concatenate([b.patches.reshape(-1) for b in plain])),
    )  # same signal, other order
