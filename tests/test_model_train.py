"""Pre-training: learning signal, checkpoints, exact resume, config errors, padding invariance."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from aemg.model import (
    PRESETS,
    MaskedTokenModel,
    ModelConfig,
    ModelConfigError,
    TokenSet,
    collate_sentences,
    content_hash,
    embed_tokens,
    load_model,
    make_synthetic_tokenset,
    preset,
    pretrain,
    sentence_chunks,
)
from aemg.model.stage import history_records

TINY = ModelConfig(
    width=32, depth=1, heads=2, conv_channels=8, codebook_size=32, code_dim=16,
    batch_size=512, epochs_vq=2, epochs_mtm=2, lr=3e-3, dead_code_threshold=20,
)


@pytest.fixture(scope="module")
def data() -> tuple[TokenSet, TokenSet]:
    train = make_synthetic_tokenset(n_events=2400, n_chans=8, n_subjects=3, seed=0)
    held = make_synthetic_tokenset(n_events=600, n_chans=8, n_subjects=1, subject_offset=3, seed=1)
    return train, held


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("pretrain")
    cfg = ModelConfig(**{**asdict(TINY), "epochs_vq": 3, "epochs_mtm": 3})
    metrics = pretrain([data[0]], [data[1]], cfg, out, device="cpu", progress=False)
    return out, metrics


# ---------------------------------------------------------------- learning signal
def test_pretrain_learns_codebook_and_beats_baseline(trained):
    _, m = trained
    assert m["complete"]
    assert m["codebook_usage"] > 0.25  # more codes in use than prototypes (8 of 32)
    assert m["codebook_perplexity"] > 8
    assert m["reconstruction_error"] < 0.8
    assert m["masked_token_accuracy"] > m["masked_token_baseline_accuracy"] + 0.05
    assert len(m["history"]["vq"]["train_loss"]) == 3
    assert len(m["history"]["mtm"]["heldout_masked_token_accuracy"]) == 3
    assert m["history"]["vq"]["tokens_per_s"][0] > 0


def test_history_records_are_per_epoch_rows_for_dvc_plots(trained):
    _, m = trained
    rows = history_records(m["history"])
    assert [r["epoch"] for r in rows["vq"]] == [1, 2, 3] and [r["epoch"] for r in rows["mtm"]] == [1, 2, 3]
    assert {r["stage"] for r in rows["vq"]} == {"vq"} and {r["stage"] for r in rows["mtm"]} == {"mtm"}
    for key in ("loss", "reconstruction_error", "codebook_usage", "codebook_perplexity"):
        assert all(isinstance(r[key], float) for r in rows["vq"]), key
    for key in ("loss", "masked_token_accuracy", "masked_token_baseline_accuracy"):
        assert all(isinstance(r[key], float) for r in rows["mtm"]), key
    # the last row is the model's final held-out score
    assert rows["vq"][-1]["reconstruction_error"] == m["reconstruction_error"]
    assert rows["mtm"][-1]["masked_token_accuracy"] == m["masked_token_accuracy"]


# ---------------------------------------------------------------- checkpoints
def test_checkpoints_load_weights_only_with_config_and_hash(trained, data):
    out, m = trained
    for name in ("vq.pt", "mtm.pt"):
        ck = torch.load(out / name, map_location="cpu", weights_only=True)
        assert ck["data_hash"] == content_hash([data[0]]) == m["data_hash"]
        assert ck["heldout_hash"] == content_hash([data[1]])
        cfg = ModelConfig.from_dict(ck["config"])
        assert cfg.epochs_vq == 3 and cfg.width == TINY.width
        assert ck["complete"] and ck["epoch"] == 3
        assert {"state_dict", "optimizer", "rng"} <= set(ck)
    vq_model, mtm, cfg = load_model(out, "cpu")
    assert not vq_model.training
    assert not mtm.training and cfg.codebook_size == 32


def test_embed_tokens_shapes_and_unseen_layout(trained, data):
    out, _ = trained
    emb = embed_tokens(out, data[1])
    assert emb.shape == (data[1].n_events, TINY.width) and emb.dtype == np.float32
    assert np.isfinite(emb).all() and np.abs(emb).sum(axis=1).min() > 0
    # a 4-channel layout never seen in training still embeds (continuous positions)
    other = make_synthetic_tokenset(n_events=50, n_chans=4, seed=5, dataset="four")
    emb4 = embed_tokens(load_model(out, "cpu"), other)
    assert emb4.shape == (50, TINY.width) and np.isfinite(emb4).all()


# ---------------------------------------------------------------- resume
def _weights(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {n: torch.load(out / n, weights_only=True)["state_dict"] for n in ("vq.pt", "mtm.pt")}


def test_resume_is_exact(data, tmp_path):
    train = [data[0].select(np.arange(1200))]
    held = [data[1].select(np.arange(300))]
    full, parts = tmp_path / "full", tmp_path / "parts"
    # the CPU thread count changes the last bits: pin it for both runs (resume reuses the saved one)
    pretrain(train, held, TINY, full, device="cpu", progress=False, num_threads=1)
    m1 = pretrain(train, held, TINY, parts, device="cpu", progress=False, max_epochs=1, num_threads=1)
    assert not m1["complete"] and not (parts / "mtm.pt").exists()  # stopped after vq epoch 1
    pretrain(train, held, TINY, parts, device="cpu", progress=False, resume=True, max_epochs=2)  # vq 2, mtm 1
    assert torch.load(parts / "mtm.pt", weights_only=True)["epoch"] == 1
    m3 = pretrain(train, held, TINY, parts, device="cpu", progress=False, resume=True)  # mtm 2
    assert m3["complete"]
    a, b = _weights(full), _weights(parts)
    for name in a:
        assert a[name].keys() == b[name].keys()
        for k in a[name]:
            assert torch.equal(a[name][k], b[name][k]), (name, k)


def test_resume_rejects_other_config(data, tmp_path):
    train, held = [data[0].select(np.arange(400))], [data[1].select(np.arange(100))]
    cfg = ModelConfig(**{**asdict(TINY), "epochs_vq": 1, "epochs_mtm": 0})
    pretrain(train, held, cfg, tmp_path, device="cpu", progress=False)
    other = ModelConfig(**{**asdict(cfg), "lr": 1e-4})
    with pytest.raises(ModelConfigError, match="lr"):
        pretrain(train, held, other, tmp_path, device="cpu", progress=False, resume=True)


def test_subject_in_train_and_heldout_is_rejected(data, tmp_path):
    with pytest.raises(ValueError, match="split by subject"):
        pretrain([data[0]], [data[0].select(np.arange(10))], TINY, tmp_path, progress=False)


# ---------------------------------------------------------------- config
def test_unknown_config_key_lists_valid_keys():
    with pytest.raises(ModelConfigError) as err:
        ModelConfig.from_dict({"widht": 64})
    msg = str(err.value)
    assert "widht" in msg
    for key in ("width", "depth", "codebook_size", "mask_ratio", "spatial_conditioning"):
        assert key in msg
    with pytest.raises(ModelConfigError, match="cpu-small"):
        preset("tiny")


def test_config_round_trip_and_presets():
    assert ModelConfig.from_dict(asdict(TINY)) == TINY
    assert ModelConfig.from_dict({"preset": "base", "epochs_vq": 1}).codebook_size == 8192
    assert PRESETS["base"].width == 256 and PRESETS["base"].depth == 6
    assert PRESETS["large"].width == 512 and PRESETS["large"].depth == 12
    assert 64 <= PRESETS["cpu-small"].codebook_size <= 128
    with pytest.raises(ModelConfigError, match="spatial_conditioning"):
        ModelConfig(spatial_conditioning="grid")


# ---------------------------------------------------------------- data + padding
def test_sentence_chunks_cover_every_event_once():
    ts = make_synthetic_tokenset(n_events=300, n_chans=64, seed=3)
    chunks = sentence_chunks(ts, max_patches=256)
    idx = np.concatenate(chunks)
    assert np.array_equal(np.sort(idx), np.arange(300))
    assert max(len(c) for c in chunks) * 64 <= 256
    for c in chunks:  # one sentence per chunk, in order
        assert len(set(ts.sentence[c])) == 1 and np.all(np.diff(ts.order[c]) > 0)
    with pytest.raises(ModelConfigError, match="max_patches"):
        sentence_chunks(ts, max_patches=32)


def test_content_hash_tracks_content(data):
    a = data[1].select(np.arange(20))
    b = data[1].select(np.arange(20))
    assert content_hash([a]) == content_hash([b])
    b.tokens[0, 0, 0] += 1.0
    assert content_hash([a]) != content_hash([b])


@pytest.mark.parametrize("spatial", ["position", "slot16"])
def test_padding_does_not_change_embedding(data, spatial):
    torch.manual_seed(0)
    cfg = ModelConfig(**{**asdict(TINY), "depth": 2, "spatial_conditioning": spatial})
    model = MaskedTokenModel(cfg).eval()
    ts = data[1]
    chunks = ts.chunks(cfg.max_patches)
    short = min(chunks, key=len)
    long = max(chunks, key=len)
    alone = collate_sentences([ts], [(0, short)])
    padded = collate_sentences([ts], [(0, short)], pad_to=alone.patches.shape[1] + 37)
    mixed = collate_sentences([ts], [(0, long), (0, short)])  # padded by a longer batch-mate
    assert padded.padding.sum() > 0
    e_alone = model.embed(alone.to("cpu"))[0, : len(short)]
    e_padded = model.embed(padded.to("cpu"))[0, : len(short)]
    e_mixed = model.embed(mixed.to("cpu"))[1, : len(short)]
    torch.testing.assert_close(e_padded, e_alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(e_mixed, e_alone, atol=1e-5, rtol=0)
    # also through the public helper: the order of events in the output follows the TokenSet
    sub = ts.select(short)
    emb = embed_tokens(model, sub)
    np.testing.assert_allclose(emb, e_alone.numpy(), atol=1e-5)
