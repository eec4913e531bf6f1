"""Evaluation grids, and the `aemg` commands that wrap evaluation: ablation, report, quality."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from aemg.cli import app
from aemg.errors import AemgError
from aemg.evaluate.settings import ep_get, resolve_grid
from aemg.params import DEFAULTS, with_overrides


def test_grid_overrides_its_keys_and_is_recorded():
    ep = with_overrides({"evaluate": {"grid": "full"}})["evaluate"]
    full = resolve_grid(ep)
    assert full["few_shot_fractions"] == [0.01, 0.05, 0.1, 0.2, 0.4, 0.8]
    assert "state_svm" in full["few_shot_methods"] and full["grid"] == "full"
    assert "grids" not in full
    demo = resolve_grid(ep, "demo")  # the argument wins over evaluate.grid
    assert demo["few_shot_fractions"] == [0.05] and demo["max_folds"] == 5
    none = resolve_grid(with_overrides({"evaluate": {"grid": None}})["evaluate"])
    assert none["few_shot_methods"] == [] and "grid" not in none


def test_unknown_grid_and_unknown_grid_key_fail_with_the_valid_names():
    ep = DEFAULTS["evaluate"]
    with pytest.raises(AemgError, match="unknown grid 'paper'; valid: demo, full"):
        resolve_grid(ep, "paper")
    bad = with_overrides({"evaluate": {"grids": {"demo": {"few_shots": [0.1]}}}})["evaluate"]
    with pytest.raises(AemgError, match=r"evaluate.grids.demo: unknown key\(s\) few_shots"):
        resolve_grid(bad)


def test_users_add_their_own_grids():
    ep = with_overrides({"evaluate": {"grid": "quick", "grids": {"quick": {"torch_epochs": 2}}}})["evaluate"]
    assert set(ep["grids"]) == {"demo", "full", "quick"}
    assert resolve_grid(ep)["torch_epochs"] == 2


def test_partial_sections_fall_back_to_the_defaults():
    assert ep_get({}, "aemg_pool") == DEFAULTS["evaluate"]["aemg_pool"] == "channels"
    assert ep_get({"aemg_pool": "mean"}, "aemg_pool") == "mean"


def test_evaluate_flow_hands_the_resolved_grid_to_every_dataset(workdir, prefect_harness, monkeypatch):
    import aemg.evaluate.run
    import aemg.store
    from aemg.flows.evaluate import evaluate_flow

    seen = {}

    def fake(tokens, model_dir, dataset, ep, harmonized=None, log=None, fixedwin_dir=None, seeds=()):
        seen[dataset] = (ep, fixedwin_dir, seeds)
        raise AemgError(f"{dataset}: stop here")

    monkeypatch.setattr(aemg.store, "list_groups", lambda path: ["a", "b"])
    monkeypatch.setattr(aemg.evaluate.run, "evaluate_dataset", fake)
    params = workdir / "params.yaml"
    params.write_text(yaml.safe_dump({"evaluate": {"datasets": ["a", "b"]}}))
    with pytest.raises(AemgError, match="a: stop here; b: stop here"):
        evaluate_flow(params_path=str(params), grid="full")
    assert set(seen) == {"a", "b"}
    ep, fixedwin, seeds = seen["b"]
    assert ep["grid"] == "full" and len(ep["few_shot_fractions"]) == 6
    assert seeds == [0, 1, 2]  # every pre-training seed is evaluated
    assert fixedwin(2).as_posix().endswith("models-fixedwin/b/seed2")  # model_dir(root, dataset, seed)


def test_ablation_does_nothing_unless_the_ablation_is_evaluated(workdir, prefect_harness):
    params = workdir / "params.yaml"
    params.write_text(yaml.safe_dump({"evaluate": {"methods": ["lda"]}}))
    result = CliRunner().invoke(app, ["ablation", "--params", str(params)])
    assert result.exit_code == 0, result.output
    assert (workdir / "models-fixedwin").is_dir() and not any((workdir / "models-fixedwin").iterdir())


def test_report_without_an_evaluation_says_what_to_run(workdir, prefect_harness):
    result = CliRunner().invoke(app, ["report"])
    assert result.exit_code == 1
    assert "run `aemg evaluate` first" in result.output


def test_quality_command_scores_two_token_files(tmp_path):
    rng = np.random.default_rng(0)
    ref = np.repeat(rng.integers(0, 13, size=(20, 3)), 3, axis=0)
    cand = ref.copy()
    cand[:, 1] = np.maximum(cand[:, 1] - 4, 0)  # the second muscle under-activates
    np.save(tmp_path / "ref.npy", ref)
    np.save(tmp_path / "cand.npy", cand)
    runner = CliRunner()
    same = runner.invoke(app, ["quality", str(tmp_path / "ref.npy"), str(tmp_path / "ref.npy")])
    assert same.exit_code == 0, same.output
    assert "overall quality: 100.0 / 100" in same.output
    worse = runner.invoke(app, ["quality", str(tmp_path / "ref.npy"), str(tmp_path / "cand.npy"), "--json"])
    import json

    result = json.loads(worse.output)
    scores = list(result["per_muscle"].values())
    assert result["overall"] < 100 and scores[1] < scores[0] == 100.0
    missing = runner.invoke(app, ["quality", str(tmp_path / "nope.npy"), str(tmp_path / "ref.npy"),
                                  "--store", str(tmp_path / "no.zarr")])
    assert missing.exit_code == 1 and "aemg: error:" in missing.output
