"""Protocols, per-fold scaling, inner CV, seeds and cross-session: what each fold may look at."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from aemg.errors import AemgError
from aemg.evaluate import loso
from aemg.evaluate.adaptation import FoldInputSource, standardise_per_subject
from aemg.evaluate.loso import InnerCV, check_folds, run_cross_session, run_folds, summarize
from aemg.evaluate.methods import MethodContext, get_methods
from aemg.evaluate.run import compute_features, evaluate_trials
from aemg.evaluate.synthetic import make_synthetic_trials
from aemg.scaling import channel_rms

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


@pytest.fixture(scope="module")
def trials():
    return make_synthetic_trials(n_subjects=4, n_classes=3, trials_per_class=8, seed=5, noise=0.3)


def _compute(trials_, keys, seed):
    return compute_features(trials_, keys, {}, None)


def _louder(trials, subject: str, factor: float):
    tokens = trials.tokens.copy()
    tokens[trials.subject == subject] *= factor
    return trials.with_tokens(tokens)


def test_zero_shot_scaling_never_reads_the_test_subject(trials):
    """The test subject 100x louder: the training subjects' scaled trials and features are
    unchanged (no statistic of the test subject), the test subject's own rows scale with it."""
    train = ["S00", "S01", "S02"]
    quiet = FoldInputSource(trials, _compute, {"hudgins"}, "zero_shot").for_fold(train, ["S03"], 0)
    loud = FoldInputSource(_louder(trials, "S03", 100.0), _compute, {"hudgins"}, "zero_shot").for_fold(train, ["S03"], 0)
    others = trials.subject != "S03"
    np.testing.assert_array_equal(quiet.trials.tokens[others], loud.trials.tokens[others])
    np.testing.assert_array_equal(quiet.features["hudgins"][others], loud.features["hudgins"][others])
    np.testing.assert_allclose(loud.trials.tokens[~others], 100.0 * quiet.trials.tokens[~others], rtol=1e-5)
    assert quiet.statistics["scale_subjects"] == train and quiet.statistics["protocol"] == "zero_shot"
    with pytest.raises(ValueError, match="test subject"):
        FoldInputSource(trials, _compute, {"hudgins"}, "zero_shot").for_fold([*train, "S03"], ["S03"], 0)


def test_unlabelled_target_normalises_every_subject_by_its_own_trials(trials):
    """Under the unlabelled-target protocol a subject's gain no longer matters: its scaled tokens
    and standardised features are the same whatever its amplitude."""
    source = FoldInputSource(trials, _compute, {"hudgins"}, "unlabelled_target")
    loud = FoldInputSource(_louder(trials, "S03", 100.0), _compute, {"hudgins"}, "unlabelled_target")
    a, b = source.for_fold(["S00", "S01", "S02"], ["S03"], 0), loud.for_fold(["S00", "S01", "S02"], ["S03"], 0)
    np.testing.assert_allclose(a.trials.tokens, b.trials.tokens, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a.features["hudgins"], b.features["hudgins"], rtol=1e-3, atol=1e-4)
    mine = trials.subject == "S03"
    np.testing.assert_allclose(channel_rms(a.trials.tokens[mine]), 1.0, rtol=1e-4)
    assert a.statistics["target_statistics"] == "own unlabelled trials" and a.statistics["standardised"]


def test_standardise_per_subject_for_rows_and_window_features():
    rng = np.random.default_rng(0)
    subject = np.array(["a"] * 30 + ["b"] * 30)
    x = rng.normal(size=(60, 5)) * np.where(subject == "a", 1.0, 7.0)[:, None] + 3.0
    z = standardise_per_subject(x, subject)
    for s in "ab":
        np.testing.assert_allclose(z[subject == s].mean(axis=0), 0.0, atol=1e-5)
        np.testing.assert_allclose(z[subject == s].std(axis=0), 1.0, atol=1e-4)
    w = standardise_per_subject(rng.normal(size=(60, 4, 3, 10)) + 5.0, subject)  # (n, frames, chans, 10)
    assert w.shape == (60, 4, 3, 10)
    np.testing.assert_allclose(w[subject == "b"].mean(axis=(0, 1)), 0.0, atol=1e-5)


def test_fitted_subjects_come_from_what_fit_received(trials, monkeypatch):
    """A runner bug that hands fit one test row shows in the manifest and fails the leak check:
    the manifest records the subjects of the rows fit received, not the index meant for it."""
    original = loso._Fitter.fit_predict

    def buggy(self, fit_rows, test_rows, select):
        return original(self, np.append(fit_rows, test_rows[:1]), test_rows, select)

    methods = get_methods(["lda"])
    ok = run_folds(trials, methods, compute_features(trials, {"hudgins"}, {}, None))
    check_folds({"synthetic": ok.folds})
    monkeypatch.setattr(loso._Fitter, "fit_predict", buggy)
    res = run_folds(trials, methods, compute_features(trials, {"hudgins"}, {}, None))
    fold = res.folds[0]
    assert fold["test_subject"] in fold["methods"]["lda"]["0"]["fitted_subjects"]
    with pytest.raises(AemgError, match=r"lda \(seed 0\) was fitted on the test subject"):
        check_folds({"synthetic": res.folds})


def test_leak_check_refuses_a_zero_shot_scale_computed_from_the_test_subject(trials):
    res = evaluate_trials(trials, {"methods": ["lda"], "few_shot_methods": [], "target_adaptation": ["none"],
                                   "inner_cv": {"methods": []}})
    check_folds({"synthetic": res["folds"]})
    bad = copy.deepcopy(res["folds"])
    bad[0]["statistics"]["scale_subjects"].append(bad[0]["test_subject"])
    with pytest.raises(AemgError, match="scaling statistic was computed from the test subject"):
        check_folds({"synthetic": bad})


def test_inner_cv_sees_training_subjects_only_and_records_its_choice(trials, monkeypatch):
    from sklearn.model_selection import GroupKFold

    groups_seen: list[set[str]] = []
    split = GroupKFold.split

    def spy(self, X, y=None, groups=None):
        groups_seen.append(set(np.asarray(groups).tolist()))
        return split(self, X, y, groups)

    monkeypatch.setattr(GroupKFold, "split", spy)
    cv = InnerCV(grids={"svm": {"svc__gamma": [1e4, "scale"]}}, n_splits=3)
    res = run_folds(trials, get_methods(["svm", "lda"]), compute_features(trials, {"hudgins"}, {}, None), inner_cv=cv,
                    few_shot_methods=["svm"], fractions=[0.2])
    assert len(groups_seen) == 4  # one search per outer fold, lda has no grid
    for fold, groups in zip(res.folds, groups_seen, strict=True):
        assert groups == set(fold["train_subjects"]) and fold["test_subject"] not in groups
        entry = fold["methods"]["svm"]["0"]
        assert entry["selected"] == {"svc__gamma": "scale"}  # gamma=1e4 memorises, never generalises
        assert 0.5 < entry["inner_cv_accuracy"] <= 1.0
        assert fold["few_shot"]["methods"]["svm"]["0"]["0.2"]["selected"] == {"svc__gamma": "scale"}  # reused, no new search
        assert "selected" not in fold["methods"]["lda"]["0"]


def test_seeded_methods_run_per_seed_and_the_summary_reports_seed_noise(trials):
    methods = get_methods(["lda", "cnn"])
    ctx = MethodContext(ep={"torch_epochs": 2}, trials=trials)
    res = run_folds(trials, methods, compute_features(trials, {"hudgins", "tokens"}, {}, None), ctx, seeds=(0, 1))
    table = pd.DataFrame(res.rows)
    assert sorted(table[table.method == "cnn"].seed.unique()) == [0, 1]
    assert table[table.method == "lda"].seed.unique().tolist() == [0]
    per = summarize(table)["synthetic"]
    assert per["cnn"]["n_seeds"] == 2 and per["cnn"]["accuracy_seed_sd"] >= 0
    assert per["lda"]["n_seeds"] == 1 and per["lda"]["accuracy_seed_sd"] == 0
    by_seed = table[table.method == "cnn"].groupby("seed").accuracy.mean()
    assert per["cnn"]["accuracy_mean"] == pytest.approx(by_seed.mean(), abs=1e-4)


def test_both_protocols_are_reported_side_by_side_never_mixed(trials):
    res = evaluate_trials(trials, {"methods": ["lda", "svm"], "few_shot_methods": ["lda"], "few_shot_fractions": [0.2],
                                   "inner_cv": {"methods": []}})
    table = pd.DataFrame(res["rows"])
    assert set(table.protocol) == {"zero_shot", "unlabelled_target", "few_shot"}
    assert set(table[table.protocol == "few_shot"].method) == {"lda"}
    per = summarize(table)["synthetic"]
    assert per["lda"]["unlabelled_target"]["n_subjects"] == 4 and "accuracy_mean" in per["lda"]
    zero = table[(table.protocol == "zero_shot") & (table.method == "lda")].accuracy.mean()
    assert per["lda"]["accuracy_mean"] == pytest.approx(zero, abs=1e-4)
    check_folds({"synthetic": res["folds"]})


def test_cross_session_fits_one_session_and_scores_the_others():
    base = make_synthetic_trials(n_subjects=3, n_classes=3, trials_per_class=9, seed=3, noise=0.3)
    session = np.array(["training0", "Test0", "Test1"])[(np.arange(len(base)) // 3) % 3]
    from dataclasses import replace

    trials = replace(base, session=session)
    source = FoldInputSource(trials, _compute, {"hudgins"}, "cross_session", "training0")
    res = run_cross_session(trials, get_methods(["lda"]), source, MethodContext(trials=trials),
                            train_session="training0", test_sessions=["Test0", "Test1"])
    table = pd.DataFrame(res.rows)
    assert set(table.session) == {"Test0", "Test1"} and set(table.protocol) == {"cross_session"}
    assert len(table) == 3 * 2 and table.accuracy.mean() > 0.6
    for fold in res.folds:
        assert fold["methods"]["lda"]["0"]["fitted_subjects"] == [fold["test_subject"]]
        assert fold["statistics"]["scale_session"] == "training0"
    check_folds({"synthetic": res.folds})
    per = summarize(table)["synthetic"]["lda"]["cross_session"]
    assert set(per) == {"Test0", "Test1"} and per["Test0"]["n_subjects"] == 3


def test_grouped_folds_hold_every_subject_out_once_with_per_subject_rows(trials):
    from aemg.evaluate.splits import subject_folds

    folds = list(subject_folds(trials.subject, max_folds=2, seed=0))
    assert len(folds) == 2 and sorted(s for held, _, _ in folds for s in held) == trials.subjects
    for held, train, test in folds:
        assert set(trials.subject[test]) == set(held) and not set(held) & set(trials.subject[train])
    assert [h for h, _, _ in subject_folds(trials.subject, max_folds=10)] == [[s] for s in trials.subjects]  # LOSO
    res = run_folds(trials, get_methods(["lda"]), compute_features(trials, {"hudgins"}, {}, None), max_folds=2,
                    few_shot_methods=["lda"], fractions=[0.2], few_shot_max_subjects=3)
    assert len({r["subject"] for r in res.rows if r["fraction"] > 0}) == 3  # a seeded subset of targets
    zero = [r for r in res.rows if r["fraction"] == 0]
    assert sorted(r["subject"] for r in zero) == trials.subjects
    assert sum(r["n_trials"] for r in zero) == len(trials)
    assert len(res.folds) == 4 and {len(f["held_out_together"]) for f in res.folds} == {2}
    check_folds({"synthetic": res.folds})


def test_inner_cv_searches_a_bounded_subset_then_fits_everything(trials, monkeypatch):
    from sklearn.model_selection import GroupKFold

    sizes: list[int] = []
    split = GroupKFold.split

    def spy(self, X, y=None, groups=None):
        sizes.append(len(X))
        return split(self, X, y, groups)

    monkeypatch.setattr(GroupKFold, "split", spy)
    cv = InnerCV(grids={"svm": {"svc__C": [0.1, 10.0]}}, n_splits=2, max_rows=40)
    res = run_folds(trials, get_methods(["svm"]), compute_features(trials, {"hudgins"}, {}, None), inner_cv=cv)
    assert sizes == [40] * 4
    assert all(f["methods"]["svm"]["0"]["fitted_subjects"] == f["train_subjects"] for f in res.folds)


def test_fold_statistics_carry_the_token_store_provenance(trials):
    from dataclasses import replace

    marked = replace(trials, provenance={"detector": "hysteresis", "floor_scope": "calibration", "calibration_s": 20.0})
    res = run_folds(marked, get_methods(["lda"]), FoldInputSource(marked, _compute, {"hudgins"}, "zero_shot"))
    assert res.folds[0]["statistics"]["token_store"] == {"detector": "hysteresis", "floor_scope": "calibration",
                                                          "calibration_s": 20.0}
