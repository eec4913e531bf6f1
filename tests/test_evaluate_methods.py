"""Every method learns a synthetic separable task under LOSO, and no fold can reuse an estimator."""

from __future__ import annotations

import numpy as np
import pytest

from aemg.errors import AemgError
from aemg.evaluate.estimators import CNNClassifier, EventTransformerClassifier, StateViTClassifier
from aemg.evaluate.features import hudgins, token_statistics
from aemg.evaluate.loso import SCORE_COLUMNS, run_folds
from aemg.evaluate.methods import METHODS, Method, MethodContext, get_methods
from aemg.evaluate.run import compute_features
from aemg.evaluate.synthetic import make_synthetic_trials

FAST = {"torch_epochs": 8, "transformer_epochs": 6, "state_kmeans_samples": 5000, "state_k": 6}
TINY_CFG = {"width": 32, "depth": 1, "heads": 2, "conv_channels": 8, "codebook_size": 16, "code_dim": 8}


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


@pytest.fixture(scope="module")
def trials():
    return make_synthetic_trials(n_subjects=3, n_classes=3, trials_per_class=10, seed=1, noise=0.3)


def _features(trials, names):
    methods = get_methods(names)
    return methods, compute_features(trials, {m.features for m in methods}, FAST, None)


@pytest.mark.parametrize("name", ["lda", "svm", "cnn", "state_svm", "state_vit", "transformer_scratch"])
def test_method_beats_chance_on_separable_trials(trials, name):
    methods, features = _features(trials, [name])
    if name == "transformer_scratch":
        methods = [Method(name, "trial_index", lambda c: EventTransformerClassifier(
            trials=c.trials, config=TINY_CFG, epochs=15, batch_size=64, lr=3e-3, seed=c.seed))]
    rows = run_folds(trials, methods, features, MethodContext(seed=0, ep=FAST, trials=trials)).rows
    assert len(rows) == 3 and {r["fraction"] for r in rows} == {0.0}
    acc = np.mean([r["accuracy"] for r in rows])
    assert acc > (0.6 if name == "transformer_scratch" else 0.75), (name, acc)  # chance is 1/3


def test_every_subject_is_held_out_once_and_rows_follow_the_contract(trials):
    methods, features = _features(trials, ["lda", "svm"])
    rows = run_folds(trials, methods, features, MethodContext(trials=trials)).rows
    assert sorted(r["subject"] for r in rows if r["method"] == "lda") == trials.subjects
    assert list(rows[0]) == SCORE_COLUMNS
    assert {r["protocol"] for r in rows} == {"zero_shot"} and {r["seed"] for r in rows} == {0}
    assert sum(r["n_trials"] for r in rows if r["method"] == "lda") == len(trials)


class _Memory:
    """A classifier that remembers every subject it was ever fitted on (as a reused object with
    warm-started state would) and refuses to predict a subject it has seen."""

    def fit(self, X, y):
        self.seen_ = getattr(self, "seen_", set()) | set(X[:, 0].tolist())
        self.label_ = int(np.bincount(y).argmax())
        return self

    def predict(self, X):
        leaked = set(X[:, 0].tolist()) & self.seen_
        assert not leaked, f"estimator was fitted on test subject(s) {leaked}"
        return np.full(len(X), self.label_)


def _subject_feature(trials):
    return {"sid": np.array([[float(s[1:])] for s in trials.subject])}


def test_fresh_estimator_per_fold_never_sees_the_test_subject(trials):
    method = Method("memory", "sid", lambda ctx: _Memory())
    rows = run_folds(trials, [method], _subject_feature(trials), MethodContext(trials=trials)).rows
    assert len(rows) == 3


def test_a_classifier_reused_across_folds_is_refused(trials):
    shared = _Memory()
    method = Method("reused", "sid", lambda ctx: shared)
    with pytest.raises(AemgError, match="already fitted in another fold"):
        run_folds(trials, [method], _subject_feature(trials), MethodContext(trials=trials))


def test_an_already_fitted_estimator_is_refused(trials):
    _methods, features = _features(trials, ["lda"])
    fitted = METHODS["lda"].make_estimator(MethodContext()).fit(features["hudgins"], trials.gesture)
    with pytest.raises(AemgError, match="already fitted"):
        run_folds(trials, [Method("lda", "hudgins", lambda ctx: fitted)], features, MethodContext(trials=trials))


@pytest.mark.parametrize("kind", ["cnn", "vit", "transformer"])
def test_refit_starts_from_scratch(trials, kind):
    """Fitting fold A then fold B on one object equals fitting B on a new one: no weights,
    codebook or optimiser state survive a fit."""
    a, b = np.flatnonzero(trials.subject == "S00"), np.flatnonzero(trials.subject != "S00")
    if kind == "cnn":
        X, make = trials.tokens, lambda: CNNClassifier(epochs=2, seed=3)
    elif kind == "vit":
        X = np.random.default_rng(0).integers(0, 5, (len(trials), 7, trials.n_chans))
        make = lambda: StateViTClassifier(k=5, epochs=2, seed=3)  # noqa: E731
    else:
        X = np.arange(len(trials))
        make = lambda: EventTransformerClassifier(trials=trials, config=TINY_CFG, epochs=2, batch_size=128, seed=3)  # noqa: E731
    reused = make().fit(X[a], trials.gesture[a]).fit(X[b], trials.gesture[b])
    fresh = make().fit(X[b], trials.gesture[b])
    np.testing.assert_allclose(reused.decision_function(X[a]), fresh.decision_function(X[a]), rtol=1e-5, atol=1e-5)


def test_hudgins_and_token_statistics_values():
    x = np.array([[[1.0, -1.0, 1.0, -1.0]]], dtype=np.float32)
    mav, wl, zc, ssc = hudgins(x)[0]
    assert (mav, wl, zc, ssc) == (1.0, 6.0, 3.0, 2.0)
    states = np.array([[0, 0, 1, 1, 1, 2]]).T[None]  # (1 trial, 6 frames, 1 channel)
    f = token_statistics(states, k=3)[0]
    np.testing.assert_allclose(f[:3], [2 / 6, 3 / 6, 1 / 6])  # token ratios
    assert f[3] == pytest.approx(2 / 5)  # two changes in five steps
    assert f[4] == pytest.approx(2 / 6)  # mean run 6/3 frames, as a share of 6
    assert f[5] == pytest.approx(3 / 6)  # longest run 3 frames
    assert f[6] == pytest.approx(np.mean([0, 0, 0.5, 0.5, 0.5, 1]))


def test_capped_pca_projects_wide_embeddings_only():
    from aemg.evaluate.estimators import CappedPCA

    X = np.random.default_rng(0).normal(size=(50, 300))
    assert CappedPCA(16).fit(X).transform(X).shape == (50, 16)
    assert CappedPCA(16).fit(X[:, :10]).transform(X[:, :10]).shape == (50, 10)  # narrow: unchanged
    assert CappedPCA(128).fit(X[:20]).transform(X).shape == (50, 20)  # never more than the rows
