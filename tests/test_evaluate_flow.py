"""The ``evaluate`` flow writes the metrics and fold manifests, then fails the run on a leak."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from aemg.errors import AemgError
from aemg.evaluate.loso import run_folds
from aemg.evaluate.methods import MethodContext, get_methods
from aemg.evaluate.run import compute_features
from aemg.evaluate.synthetic import make_synthetic_trials


def _fake_results(leak: bool):
    trials = make_synthetic_trials(n_subjects=3, n_classes=3, trials_per_class=6, seed=7)
    methods = get_methods(["lda", "svm"])
    res = run_folds(trials, methods, compute_features(trials, {"hudgins"}, {}, None), MethodContext(trials=trials),
                    few_shot_methods=["lda"], fractions=[0.2]).to_dict()
    if leak:  # a stage that saw the held-out subject, as a classifier head not reset between folds would
        fold = res["folds"][0]
        entry = fold["methods"]["svm"]["0"]
        entry["fitted_subjects"] = sorted([*entry["fitted_subjects"], fold["test_subject"]])
    return res


@pytest.mark.parametrize("leak", [False, True])
def test_flow_writes_manifests_and_fails_on_leak(workdir, prefect_harness, monkeypatch, capsys, leak):
    import aemg.evaluate.run
    import aemg.store
    from aemg.flows.evaluate import evaluate_flow

    monkeypatch.setattr(aemg.store, "list_groups", lambda path: ["synthetic"])
    monkeypatch.setattr(aemg.evaluate.run, "evaluate_dataset", lambda *args, **kwargs: _fake_results(leak))
    params = workdir / "params.yaml"
    params.write_text(yaml.safe_dump({"evaluate": {"datasets": ["synthetic"], "methods": ["lda", "svm"]}}))
    if leak:
        with pytest.raises(AemgError, match=r"leak check failed: synthetic: zero_shot: fold S00: svm \(seed 0\) was fitted on the test subject"):
            evaluate_flow(params_path=str(params))
    else:
        result = evaluate_flow(params_path=str(params))
        text = "\n".join(table for _, table in result["tables"])
        assert "lda" in text and "f=0.2" in text
        scores = pd.read_csv(workdir / "metrics" / "loso_scores.csv")
        assert set(scores.fraction) == {0.0, 0.2, 0.8}  # 0.8: the whole adaptation pool, the "full data" reference
        from aemg.summary import main as summary

        assert summary(str(params)) == 0
        printed = capsys.readouterr().out
        assert "Leave-one-subject-out" in printed and "synthetic / lda" in printed and "f=0.2" in printed
    folds = json.loads((workdir / "metrics" / "folds.json").read_text())  # written before the check
    assert [f["test_subject"] for f in folds["synthetic"]] == ["S00", "S01", "S02"]
