"""Few-shot splits, fold manifests and the leak check, including the pre-trained AEMG methods."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from aemg.errors import AemgError
from aemg.evaluate.loso import SCORE_COLUMNS, check_folds, run_folds, summarize, write_metrics
from aemg.evaluate.methods import MethodContext, get_methods
from aemg.evaluate.run import compute_features, evaluate_trials
from aemg.evaluate.splits import few_shot_split
from aemg.evaluate.synthetic import make_synthetic_trials

FRACTIONS = [0.01, 0.05, 0.1, 0.2, 0.4, 0.8]
TINY = {"width": 32, "depth": 1, "heads": 2, "conv_channels": 8, "codebook_size": 16, "code_dim": 8,
        "epochs_vq": 1, "epochs_mtm": 1, "batch_size": 512}


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


@pytest.fixture(scope="module")
def trials():
    return make_synthetic_trials(n_subjects=3, n_classes=3, trials_per_class=20, seed=2, noise=0.3)


def test_few_shot_subsets_are_stratified_nested_earliest_and_disjoint_from_test(trials):
    index = np.flatnonzero(trials.subject == "S01")
    split = few_shot_split(trials.gesture, trials.chrono, trials.contraction, index, FRACTIONS, 0.8, "S01")
    test = set(split.test.tolist())
    assert test and test <= set(index.tolist())
    assert not test & set(split.pool.tolist())
    # no contraction (nor sentence) straddles adaptation and test
    assert not set(trials.contraction[split.pool]) & set(trials.contraction[split.test])
    assert not set(trials.sentence[split.pool]) & set(trials.sentence[split.test])
    previous: set[int] = set()
    for f in FRACTIONS:
        subset = split.subsets[f]
        assert not test & set(subset.tolist()), f
        assert set(subset.tolist()) <= set(split.pool.tolist())
        counts = np.bincount(trials.gesture[subset], minlength=3)
        assert (counts >= 1).all(), (f, counts)  # every class, at least one trial
        assert counts.max() - counts.min() <= 1  # stratified: classes equally represented here
        assert previous <= set(subset.tolist())  # nested: more data extends less data
        previous = set(subset.tolist())
        for c in range(3):  # the earliest trials of the class come first
            pool_c = split.pool[trials.gesture[split.pool] == c]
            chosen = subset[trials.gesture[subset] == c]
            assert trials.chrono[chosen].max() <= np.sort(trials.chrono[pool_c])[len(chosen) - 1]
    assert len(split.subsets[0.01]) == 3 and len(split.subsets[0.8]) == len(split.pool)
    # test trials are the latest ones of each class
    for c in range(3):
        t_c = split.test[trials.gesture[split.test] == c]
        p_c = split.pool[trials.gesture[split.pool] == c]
        assert trials.chrono[t_c].min() > trials.chrono[p_c].max()


def test_few_shot_rejects_fractions_beyond_the_pool(trials):
    with pytest.raises(ValueError, match="pool_fraction"):
        few_shot_split(trials.gesture, trials.chrono, trials.contraction, np.arange(10), [0.9], 0.8)


def test_few_shot_never_splits_a_contraction_that_spans_several_sentences():
    """One contraction cut into two sentences: the pool/test boundary falls between its sentences
    (10 trials of one class, cut at 8); splitting by sentence would leave trials 6-7 in the pool."""
    gesture = np.zeros(10, np.int16)
    sentence = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    contraction = np.array([0, 0, 1, 1, 2, 2, 3, 3, 3, 3])  # sentences 3 and 4 are one contraction
    split = few_shot_split(gesture, np.arange(10), contraction, np.arange(10), [0.8], 0.8)
    assert split.test.tolist() == [8, 9]
    assert split.pool.tolist() == [0, 1, 2, 3, 4, 5]
    assert not set(contraction[split.pool]) & set(contraction[split.test])
    by_sentence = few_shot_split(gesture, np.arange(10), sentence, np.arange(10), [0.8], 0.8)
    assert {6, 7} <= set(by_sentence.pool.tolist())  # what a sentence-level split leaves in the pool


def _run(trials, names, fs=("lda",)):
    methods = get_methods(names)
    features = compute_features(trials, {m.features for m in methods}, {}, None)
    return run_folds(trials, methods, features, MethodContext(trials=trials), few_shot_methods=fs,
                     fractions=FRACTIONS, pool_fraction=0.8)


def test_few_shot_rows_manifests_and_leak_check(trials):
    res = _run(trials, ["lda", "svm"])
    table = pd.DataFrame(res.rows)
    fs = table[table.fraction > 0]
    assert set(fs.method) == {"lda"} and sorted(fs.fraction.unique()) == FRACTIONS
    assert len(fs) == 3 * len(FRACTIONS)
    # every fraction of a subject is scored on the same test set
    assert fs.groupby("subject").n_trials.nunique().eq(1).all()
    folds = {"synthetic": res.folds}
    check_folds(folds)  # passes
    assert [f["test_subject"] for f in res.folds] == trials.subjects
    for fold in res.folds:
        fs_fit = fold["few_shot"]["methods"]["lda"]["0"]["0.8"]["fitted_subjects"]
        assert fold["test_subject"] in fs_fit  # adaptation data of the target is used ...
        assert fold["test_subject"] not in fold["methods"]["lda"]["0"]["fitted_subjects"]  # ... never in LOSO

    leaked = copy.deepcopy(folds)
    leaked["synthetic"][1]["methods"]["svm"]["0"]["fitted_subjects"].append(leaked["synthetic"][1]["test_subject"])
    with pytest.raises(AemgError, match=r"svm \(seed 0\) was fitted on the test subject"):
        check_folds(leaked)
    overlap = copy.deepcopy(folds)
    fs0 = overlap["synthetic"][0]["few_shot"]
    fs0["adaptation_trials"]["0.05"].append(fs0["test_trials"][0])
    with pytest.raises(AemgError, match="adaptation trial"):
        check_folds(overlap)


def test_summary_has_mean_std_few_shot_and_wilcoxon(trials, tmp_path):
    res = _run(trials, ["lda", "svm"])
    rows = res.rows + [dict(r, method="aemg_probe") for r in res.rows if r["method"] == "svm" and r["fraction"] == 0]
    summary = write_metrics(rows, tmp_path, few_shot_zero=res.few_shot_zero, predictions=res.predictions,
                            folds={"synthetic": res.folds})
    per = summary["synthetic"]
    assert {"lda", "svm", "aemg_probe"} <= set(per)
    assert per["lda"]["n_subjects"] == 3 and 0 <= per["lda"]["accuracy_std"]
    fs = per["lda"]["few_shot"]
    assert set(fs) == {"0", *(f"{f:g}" for f in FRACTIONS)}
    assert fs["0.8"]["relative_mean"] == pytest.approx(1.0)
    w = per["aemg_probe"]["wilcoxon_vs_best_baseline"]
    assert w["baseline"] in {"lda", "svm"} and 0 <= w["p_value"] <= 1 and w["n_subjects"] == 3
    assert per["aemg_probe"]["best_aemg"] is True
    scores = pd.read_csv(tmp_path / "loso_scores.csv")
    assert list(scores.columns) == SCORE_COLUMNS
    preds = pd.read_csv(tmp_path / "loso_predictions.csv.gz")
    assert len(preds[preds.method == "lda"]) == len(trials)
    assert json.loads((tmp_path / "folds.json").read_text())["synthetic"][0]["test_subject"] == "S00"
    assert summarize(pd.DataFrame(res.rows))["synthetic"]["lda"]["accuracy_mean"] == per["lda"]["accuracy_mean"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, trials) -> Path:
    """A tiny model pre-trained on *another* dataset, with its manifest."""
    from aemg.model import make_synthetic_tokenset, preset, pretrain

    out = tmp_path_factory.mktemp("model")
    train = make_synthetic_tokenset(n_events=300, n_chans=trials.n_chans, n_subjects=3, dataset="other", seed=0)
    held = make_synthetic_tokenset(n_events=80, n_chans=trials.n_chans, n_subjects=1, dataset="other", seed=1, subject_offset=3)
    torch.set_num_threads(1)
    pretrain([train], [held], preset("cpu-small", **TINY), out, progress=False)
    (out / "manifest.json").write_text(json.dumps({"evaluated_dataset": "synthetic", "subjects_seen": {"other": ["S01", "S02", "S03"]}}))
    return out


def test_aemg_methods_run_with_the_leak_check_recorded(trials, pretrained):
    ep = {"methods": ["lda", "aemg_probe", "aemg_finetune"], "few_shot_methods": ["aemg_probe"],
          "few_shot_fractions": [0.05, 0.4], "transformer_epochs": 1, "seed": 0, "min_subjects": 3}
    res = evaluate_trials(trials, ep, pretrained)
    table = pd.DataFrame(res["rows"])
    assert set(table[table.fraction == 0].method) == {"lda", "aemg_probe", "aemg_finetune"}
    assert set(table[table.fraction > 0].method) == {"aemg_probe"}
    for fold in res["folds"]:
        for name in ("aemg_probe", "aemg_finetune"):
            assert fold["methods"][name]["0"]["pretrained"]["leak_check"] == "passed"
    check_folds({"synthetic": res["folds"]})


def test_leak_check_fails_when_the_model_saw_a_test_subject(trials, pretrained, tmp_path):
    import shutil

    leaky = tmp_path / "leaky"
    shutil.copytree(pretrained, leaky)
    (leaky / "manifest.json").write_text(json.dumps({"subjects_seen": {"synthetic": ["S02"], "other": ["S01"]}}))
    ep = {"methods": ["lda", "aemg_probe"], "few_shot_methods": [], "seed": 0}
    with pytest.raises(AemgError, match=r"leak check failed: test subjects \['S02'\]"):
        evaluate_trials(trials, ep, leaky)
    # the recorded manifests are checked independently of the per-fold check
    res = evaluate_trials(trials, ep, pretrained)
    res["folds"][2]["methods"]["aemg_probe"]["0"]["pretrained"]["subjects_seen"]["synthetic"] = ["S02"]
    with pytest.raises(AemgError, match=r"pre-trained model \(seed 0\) saw the test subject"):
        check_folds({"synthetic": res["folds"]})


def test_chronology_follows_repetitions_not_file_order():
    from aemg.evaluate.trials import chronological_rank

    # recordings stored in file-name order: classe_0 (rep 0), classe_10 (rep 1), classe_2 (rep 0)
    repetition = np.array([0, 1, 0])
    recording = np.array([1, 1, 0, 2, 0])
    start = np.array([0, 50, 100, 0, 0])
    rank = chronological_rank(recording, start, repetition)
    # rep 0 first (recording 0 by start, then recording 2), then rep 1 (recording 1 by start)
    assert rank.tolist() == [3, 4, 1, 2, 0]
    assert chronological_rank(recording, start).tolist() == [2, 3, 1, 4, 0]
