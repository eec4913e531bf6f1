"""Pre-training seeds (one model per dataset and seed, mean ± sd), the wall-time budget, no cap."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aemg.errors import AemgError
from aemg.model import ModelConfig, load_checkpoint, make_synthetic_tokenset, pretrain
from aemg.model.stage import aggregate, model_dir, pretrain_all, seeds_of, write_metrics
from aemg.model.store_io import pretraining_rows
from aemg.params import DEFAULTS

from conftest import TINY_MODEL, write_token_store

DATASETS = ["alpha", "beta"]


def _params(**pretrain: object) -> dict:
    pp = {**DEFAULTS["pretrain"], "overrides": TINY_MODEL, "seeds": [0, 1], **pretrain}
    return {"pretrain": pp, "evaluate": {**DEFAULTS["evaluate"], "datasets": DATASETS}}


def test_one_model_per_dataset_and_seed_and_resume_keeps_them(tmp_path):
    store = tmp_path / "tokens.zarr"
    write_token_store(store, DATASETS)
    params = _params()
    per_model = pretrain_all(store, tmp_path / "models", params, device="cpu")
    assert sorted(per_model) == DATASETS and all(sorted(runs) == [0, 1] for runs in per_model.values())
    weights = {}
    for d in DATASETS:
        for seed in (0, 1):
            out = model_dir(tmp_path / "models", d, seed)
            assert out == tmp_path / "models" / d / f"seed{seed}"
            manifest = json.loads((out / "manifest.json").read_text())
            assert manifest["seed"] == seed and d not in manifest["subjects_seen"]
            weights[d, seed] = load_checkpoint(out / "mtm.pt")["state_dict"]
    differs = [k for k in weights[DATASETS[0], 0] if not np.array_equal(weights[DATASETS[0], 0][k], weights[DATASETS[0], 1][k])]
    assert differs  # the seed changes split, init and order, hence the weights
    summary = write_metrics(tmp_path / "metrics", per_model)
    assert summary["seeds"] == [0, 1] and "masked_token_accuracy_sd" in summary
    assert (tmp_path / "metrics" / "pretrain_history" / "mtm" / DATASETS[0] / "seed1.json").exists()
    # --resume: every finished model is kept as it is
    again = pretrain_all(store, tmp_path / "models", params, device="cpu", resume=True)
    assert again[DATASETS[0]][1]["masked_token_accuracy"] == per_model[DATASETS[0]][1]["masked_token_accuracy"]
    assert all(np.array_equal(v, load_checkpoint(model_dir(tmp_path / "models", DATASETS[0], 1) / "mtm.pt")["state_dict"][k])
               for k, v in weights[DATASETS[0], 1].items())


def test_aggregate_reports_mean_and_sd_over_seeds():
    def m(x: float) -> dict:
        return dict.fromkeys(("codebook_usage", "codebook_perplexity", "reconstruction_error",
                              "masked_token_accuracy", "masked_token_baseline_accuracy"), x)

    out = aggregate({"a": {0: m(0.1), 1: m(0.3)}, "b": {0: m(0.5), 1: m(0.7)}})
    assert out["seeds"] == [0, 1]
    assert out["masked_token_accuracy"] == pytest.approx(0.4)
    assert out["masked_token_accuracy_sd"] == pytest.approx(np.std([0.3, 0.5], ddof=1))  # of per-seed means
    assert out["models"]["a"]["masked_token_accuracy_sd"] == pytest.approx(np.std([0.1, 0.3], ddof=1))
    assert sorted(out["models"]["a"]["seeds"]) == ["seed0", "seed1"]
    assert aggregate({"a": {0: m(0.2)}})["masked_token_accuracy_sd"] == 0.0


def test_seeds_must_be_distinct_integers():
    with pytest.raises(AemgError, match=r"pretrain\.seeds"):
        seeds_of({"seeds": [0, 0]})
    with pytest.raises(AemgError, match=r"pretrain\.seeds"):
        seeds_of({"seeds": []})


def test_no_cap_takes_every_row(tmp_path):
    store = tmp_path / "tokens.zarr"
    write_token_store(store, ["alpha"], n_events=200)
    train, held, _ = pretraining_rows(store, "alpha", 0.2, 0, seed=0)
    assert sorted(np.concatenate([train, held]).tolist()) == list(range(200))
    capped, _, _ = pretraining_rows(store, "alpha", 0.2, 4 * 40, seed=0)
    assert 0 < len(capped) < len(train)


def test_budget_stops_each_stage_cleanly_and_resume_keeps_the_stop(tmp_path):
    train = make_synthetic_tokenset(n_events=400, n_chans=4, n_subjects=3, seed=0)
    held = make_synthetic_tokenset(n_events=100, n_chans=4, n_subjects=1, subject_offset=3, seed=1)
    cfg = ModelConfig(**{**TINY_MODEL, "epochs_vq": 3, "epochs_mtm": 3})
    m = pretrain([train], [held], cfg, tmp_path, device="cpu", progress=False, num_threads=1, budget_s=1e-6)
    assert m["complete"] and m["budget"] == {"budget_s": 1e-6, "stopped": ["vq", "mtm"], "epochs_vq": 1, "epochs_mtm": 1}
    assert len(m["history"]["vq"]["budget_left_s"]) == 1 and m["history"]["mtm"]["budget_left_s"][0] < 0
    for name in ("vq.pt", "mtm.pt"):
        ck = load_checkpoint(tmp_path / name)
        assert ck["budget_stopped"] and ck["epoch"] == 1 and not ck["complete"]
    again = pretrain([train], [held], cfg, tmp_path, device="cpu", progress=False, resume=True)
    assert again["budget"]["stopped"] == ["vq", "mtm"] and again["budget"]["epochs_mtm"] == 1
    assert again["weights_sha256"] == m["weights_sha256"]
    unbounded = pretrain([train], [held], cfg, tmp_path / "full", device="cpu", progress=False, num_threads=1, budget_s=1e6)
    assert unbounded["budget"]["stopped"] == [] and unbounded["budget"]["epochs_mtm"] == 3
