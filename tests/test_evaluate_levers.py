"""Levers: parameters with one lever flipped, and the ablation table built from score rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aemg.errors import AemgError
from aemg.evaluate.levers import ablation_table, format_ablation, lever_ep, lever_params
from aemg.evaluate.loso import SCORE_COLUMNS
from aemg.params import with_overrides


def _params(**variants):
    return with_overrides({"levers": {"methods": ["aemg_probe"], "run": list(variants), "variants": variants}})


def test_lever_params_override_one_section_and_check_names():
    params = _params(mean_pool={"evaluate": {"aemg_pool": "mean"}}, typo={"evaluate": {"aemg_poool": "mean"}},
                     wrong={"tokenize": {"token_len": 10}})
    flipped = lever_params(params, "mean_pool")
    assert flipped["evaluate"]["aemg_pool"] == "mean" and params["evaluate"]["aemg_pool"] == "channels"
    assert flipped["pretrain"] == params["pretrain"]
    with pytest.raises(AemgError, match="aemg_poool"):
        lever_params(params, "typo")
    with pytest.raises(AemgError, match="pretrain and evaluate only"):
        lever_params(params, "wrong")
    with pytest.raises(AemgError, match="unknown lever 'nope'"):
        lever_params(params, "nope")
    ep = lever_ep(flipped["evaluate"], ["aemg_probe"])
    assert ep["methods"] == ["aemg_probe"] and ep["target_adaptation"] == ["none"] and ep["few_shot_methods"] == []


def _rows(method, protocol, accs, seeds=(0, 1), dataset="d"):
    out = []
    for seed in seeds:
        for i, a in enumerate(accs):
            out.append(dict.fromkeys(SCORE_COLUMNS, 0) | {
                "dataset": dataset, "protocol": protocol, "subject": f"S{i}", "method": method, "seed": seed,
                "fraction": 0.0, "session": "", "accuracy": a + 0.01 * seed, "inner_cv_accuracy": np.nan})
    return out


def test_ablation_table_pairs_default_flipped_and_best_baseline():
    params = _params(mean_pool={"evaluate": {"aemg_pool": "mean"}})
    main = pd.DataFrame(_rows("aemg_probe", "zero_shot", [0.8, 0.7, 0.9, 0.6, 0.75, 0.85])
                        + _rows("aemg_probe", "unlabelled_target", [0.85, 0.8, 0.95, 0.7, 0.8, 0.9])
                        + _rows("svm", "zero_shot", [0.7, 0.6, 0.8, 0.5, 0.7, 0.8], seeds=(0,))
                        + _rows("lda", "zero_shot", [0.5] * 6, seeds=(0,)))
    lever = pd.DataFrame(_rows("aemg_probe", "zero_shot", [0.7, 0.6, 0.8, 0.5, 0.7, 0.8])).assign(lever="mean_pool")
    rows = ablation_table(main, lever, params)
    by = {r["lever"]: r for r in rows}
    assert set(by) == {"target_adaptation: none -> unlabelled", "mean_pool"}
    r = by["mean_pool"]
    assert r["default_baseline"] == r["flipped_baseline"] == "svm" and r["n_seeds"] == 2 and r["n_subjects"] == 6
    assert r["difference"] == pytest.approx(np.mean([0.1, 0.1, 0.1, 0.1, 0.05, 0.05]), abs=1e-4)
    assert r["default_seed_sd"] == pytest.approx(np.std([0.775, 0.785], ddof=1), abs=1e-4)
    assert r["flipped_vs_baseline"] == pytest.approx(0.005, abs=1e-4)
    protocol = by["target_adaptation: none -> unlabelled"]
    assert protocol["difference"] < 0  # unlabelled scores higher here
    assert "flipped_baseline" not in protocol  # no baseline ran under that protocol: never compared across protocols
    table = format_ablation(rows)
    assert "| d | aemg_probe | mean_pool |" in table and "vs svm 0.683" in table


def test_report_writes_the_ablation_table(tmp_path):
    from aemg.evaluate.report import write_ablation

    params = _params(mean_pool={"evaluate": {"aemg_pool": "mean"}})
    main = pd.DataFrame(_rows("aemg_probe", "zero_shot", [0.8, 0.7, 0.9]) + _rows("svm", "zero_shot", [0.7, 0.6, 0.8], seeds=(0,)))
    assert write_ablation(main, tmp_path, params, tmp_path) is None  # no lever measured: no table
    pd.DataFrame(_rows("aemg_probe", "zero_shot", [0.7, 0.6, 0.8])).assign(lever="mean_pool").to_csv(
        tmp_path / "levers_scores.csv", index=False)
    path = write_ablation(main, tmp_path, params, tmp_path)
    text = path.read_text()
    assert path.name == "ablation.md" and "| d | aemg_probe | mean_pool |" in text and "Wilcoxon" in text
