"""Leave-one-subject-out and few-shot scoring: one row per (dataset, subject, method, fraction).

The runner asks every method for a *new* estimator per fold (and per few-shot fit), refuses an
object it has already used or one that arrives fitted, and records what each fit saw in a fold
manifest (``metrics/folds.json``); :func:`check_folds` fails the run if a test subject appears
in any fitted stage or an adaptation trial is also a test trial.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import NotFittedError
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from sklearn.utils.validation import check_is_fitted

from aemg.errors import AemgError
from aemg.evaluate.adaptation import FoldInputs, FoldInputSource, GivenInputs
from aemg.evaluate.methods import Method, MethodContext, is_aemg, is_baseline
from aemg.evaluate.splits import few_shot_split, subject_folds
from aemg.evaluate.trials import Trials, plain_value

SCORE_COLUMNS = ["dataset", "protocol", "subject", "method", "seed", "fraction", "session", "accuracy",
                 "balanced_accuracy", "macro_f1", "n_trials", "inner_cv_accuracy"]
PREDICTION_COLUMNS = ["dataset", "protocol", "subject", "method", "seed", "fraction", "session", "event_index",
                      "y_true", "y_pred"]

LeakCheck = Callable[[Method, str, int], dict[str, Any]]
Inputs = FoldInputSource | GivenInputs | dict[str, np.ndarray]


@dataclass
class LosoResult:
    rows: list[dict[str, Any]] = field(default_factory=list)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    folds: list[dict[str, Any]] = field(default_factory=list)
    few_shot_zero: list[dict[str, Any]] = field(default_factory=list)  # LOSO model on the few-shot test set
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "predictions": self.predictions, "folds": self.folds,
                "few_shot_zero": self.few_shot_zero, "seconds": self.seconds}

    def extend(self, other: LosoResult) -> None:
        for name in ("rows", "predictions", "folds", "few_shot_zero"):
            getattr(self, name).extend(getattr(other, name))
        for k, v in other.seconds.items():
            self.seconds[k] = self.seconds.get(k, 0.0) + v


@dataclass(frozen=True)
class InnerCV:
    """Settings chosen per outer fold by leave-subjects-out CV on its training subjects only:
    ``grids[method]`` is a scikit-learn parameter grid; ``n_splits`` subject groups at most;
    the search sees at most ``max_rows`` training trials (a seeded random subset, so that the
    choice costs a fraction of the fit), and the chosen setting is then fitted on all of them."""

    grids: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    n_splits: int = 3
    max_rows: int | None = None


def scores(dataset: str, subject: str, method: str, fraction: float, y_true: np.ndarray, y_pred: np.ndarray,
           protocol: str = "zero_shot", seed: int = 0, session: str = "", inner_cv_accuracy: float = math.nan
           ) -> dict[str, Any]:
    """One result row; ``inner_cv_accuracy`` is the chosen setting's score in the inner CV over the
    training subjects (NaN without a search): a criterion that never saw the test subject."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # balanced accuracy warns when y_pred has classes y_true lacks
        return {
            "dataset": dataset,
            "protocol": protocol,
            "subject": subject,
            "method": method,
            "seed": int(seed),
            "fraction": float(fraction),
            "session": session,
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro")),
            "n_trials": len(y_true),
            "inner_cv_accuracy": inner_cv_accuracy,
        }


class _FreshGuard:
    """Refuses an estimator object already used in this run, or one that arrives fitted."""

    def __init__(self) -> None:
        self._used: list[Any] = []

    def __call__(self, method: str, estimator: Any) -> Any:
        if any(estimator is e for e in self._used):
            raise AemgError(f"method {method!r} returned an estimator already fitted in another fold; "
                            "its factory must build a new one per fold (a reused classifier leaks the test subject)")
        if _looks_fitted(estimator):
            raise AemgError(f"method {method!r} returned an already fitted estimator; build it unfitted per fold")
        self._used.append(estimator)
        return estimator


def _looks_fitted(estimator: Any) -> bool:
    """sklearn's fitted test; for other objects, any public attribute ending in '_'."""
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        return False
    except (TypeError, AttributeError):
        return any(k.endswith("_") and not k.startswith("_") for k in vars(estimator))
    return True


class SubjectsSeen:
    """Which subjects' rows an array handed to ``fit`` holds, found from the rows' bytes alone.

    The fold manifest records this instead of the index array the runner meant to pass, so a
    slicing bug that feeds the test subject to ``fit`` shows in ``metrics/folds.json``. A row
    whose bytes occur in several subjects (e.g. an all-zero window) proves nothing and is
    counted apart, as ``ambiguous_rows``.
    """

    def __init__(self, features: np.ndarray, subject: np.ndarray):
        self._owner: dict[bytes, str | None] = {}
        for key, s in zip(self._keys(features), subject.tolist(), strict=True):
            self._owner[key] = s if self._owner.get(key, s) == s else None

    @staticmethod
    def _keys(x: np.ndarray) -> list[bytes]:
        rows = np.ascontiguousarray(x).reshape(len(x), -1)
        return [hashlib.blake2b(r.tobytes(), digest_size=12).digest() for r in rows]

    def __call__(self, x: np.ndarray) -> dict[str, Any]:
        owners = [self._owner.get(k, "<unknown>") for k in self._keys(x)]
        return {"fitted_subjects": sorted({o for o in owners if o is not None}),
                "ambiguous_rows": sum(o is None for o in owners)}


def _select(estimator: Any, grid: dict[str, list[Any]], X: np.ndarray, y: np.ndarray, groups: np.ndarray,
            cv: InnerCV, seed: int) -> tuple[dict[str, Any], float] | None:
    """(best setting, its inner-CV accuracy) by ``GroupKFold`` over ``groups`` (subjects), on at
    most ``cv.max_rows`` rows; None when fewer than two subjects leave nothing to cross-validate."""
    from sklearn.model_selection import GridSearchCV, GroupKFold

    k = min(cv.n_splits, len(np.unique(groups)))
    if not grid or k < 2:
        return None
    rows = np.arange(len(y))
    if cv.max_rows and len(rows) > cv.max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(rows, int(cv.max_rows), replace=False))
    search = GridSearchCV(estimator, grid, cv=GroupKFold(n_splits=k), scoring="accuracy", refit=False,
                          error_score="raise", n_jobs=1)
    search.fit(X[rows], y[rows], groups=groups[rows])
    return {k_: plain_value(v) for k_, v in search.best_params_.items()}, float(search.best_score_)


class _Fitter:
    """One method on one fold and seed: fresh estimator, inner-CV selection, recorded fit."""

    def __init__(self, method: Method, ctx: MethodContext, fold: FoldInputs, guard: _FreshGuard,
                 seconds: dict[str, float], inner_cv: InnerCV | None):
        self.method, self.ctx, self.fold, self.guard, self.seconds = method, ctx, fold, guard, seconds
        self.inner_cv = inner_cv
        self.X = fold.features[method.features]
        self.seen = SubjectsSeen(self.X, fold.trials.subject)
        self.selected: dict[str, Any] | None = None

    def fit_predict(self, fit_rows: np.ndarray, test_rows: np.ndarray, select: bool) -> tuple[np.ndarray, dict[str, Any]]:
        t0 = time.perf_counter()
        model = self.guard(self.method.name, self.method.make_estimator(self.ctx))
        y = self.fold.trials.gesture
        X_fit = self.X[fit_rows]
        record = self.seen(X_fit)
        grid = (self.inner_cv.grids.get(self.method.name) if self.inner_cv else None) or {}
        chosen = _select(model, grid, X_fit, y[fit_rows], self.fold.trials.subject[fit_rows], self.inner_cv,
                         self.ctx.seed) if select and grid and self.inner_cv else None
        if chosen is not None:
            self.selected, score = chosen
            record["inner_cv_accuracy"] = round(score, 4)
        if self.selected:
            model.set_params(**self.selected)
            record["selected"] = self.selected
        model.fit(X_fit, y[fit_rows])
        pred = np.asarray(model.predict(self.X[test_rows]))
        self.seconds[self.method.name] = self.seconds.get(self.method.name, 0.0) + time.perf_counter() - t0
        return pred, record


def _fitter_for(method: Method, seed: int, source: FoldInputSource | GivenInputs, train_subjects: Sequence[str],
                held_out: Sequence[str], ctx: MethodContext, model_dirs: Callable[[int], Path | None] | None,
                leak_check: LeakCheck | None, guard: _FreshGuard, seconds: dict[str, float],
                inner_cv: InnerCV | None) -> tuple[_Fitter, dict[str, Any]]:
    """One method and seed on one fold: its scaled inputs and model, and (pre-trained methods) the
    leak check per held-out subject."""
    inputs_f = source.for_fold(train_subjects, held_out, seed)
    model_dir = model_dirs(seed) if model_dirs else ctx.model_dir
    fit_ctx = replace(ctx, seed=seed, trials=inputs_f.trials, model_dir=model_dir)
    checks = {}
    if method.pretrained:
        if leak_check is None:
            raise AemgError(f"{source.raw.dataset}: method {method.name!r} uses a pre-trained model but no leak check was given")
        checks = {s: leak_check(method, s, seed) for s in held_out}
    return _Fitter(method, fit_ctx, inputs_f, guard, seconds, inner_cv), checks


def _repeat_for_balance(n_train: int, n_train_subjects: int, n_subset: int, max_repeat: int) -> int:
    """Repeat the adaptation trials so the target subject weighs about as much as one training
    subject (at most ``max_repeat`` times; 1 = simply added)."""
    if n_subset == 0:
        return 1
    per_subject = n_train / max(n_train_subjects, 1)
    return int(min(max_repeat, max(1, round(per_subject / n_subset))))


def _as_source(trials: Trials, inputs: Inputs) -> FoldInputSource | GivenInputs:
    return GivenInputs(trials, inputs) if isinstance(inputs, dict) else inputs


def _seeds_of(method: Method, seeds: Sequence[int]) -> list[int]:
    return list(seeds) if method.seeded else list(seeds[:1])


def run_folds(
    trials: Trials,
    methods: Sequence[Method],
    inputs: Inputs,
    ctx: MethodContext | None = None,
    *,
    few_shot_methods: Sequence[str] = (),
    fractions: Sequence[float] = (),
    pool_fraction: float = 0.8,
    max_repeat: int = 20,
    seeds: Sequence[int] = (0,),
    inner_cv: InnerCV | None = None,
    max_folds: int | None = None,
    few_shot_max_subjects: int | None = None,
    model_dirs: Callable[[int], Path | None] | None = None,
    leak_check: LeakCheck | None = None,
    log: Callable[[str], None] | None = None,
) -> LosoResult:
    """Leave-subjects-out scoring of every method (fraction 0) plus few-shot rows (fraction > 0).

    Every subject is held out exactly once: alone (LOSO) or, with ``max_folds`` and more
    subjects than that, together with others in one of ``max_folds`` seeded groups (a demo-sized
    grid on a 40-person dataset); rows and fold manifests are per held-out subject either way.
    ``inputs`` gives each fold its scaled trials and features under one protocol
    (:class:`~aemg.evaluate.adaptation.FoldInputSource`), or is a plain dict of feature arrays
    used as they are. Seeded methods (torch, K-means, pre-trained) run once per seed in
    ``seeds`` with the pre-trained model ``model_dirs(seed)``; the others once. With ``inner_cv``,
    a method's settings are chosen per fold by leave-subjects-out CV on the training subjects
    (the runner hands the search their subject ids), and few-shot fits reuse that choice.

    Few-shot: for each target subject, :func:`~aemg.evaluate.splits.few_shot_split` gives a fixed
    test set and nested class-stratified adaptation subsets from the earliest trials; the subset
    (repeated to weigh like one training subject, see ``max_repeat``) is added to the training
    subjects' trials and a fresh estimator is fitted. ``pool_fraction`` is always evaluated too:
    it is the "full data" reference of the few-shot table. ``few_shot_max_subjects`` limits the
    targets to a seeded subset (one fit per target, fraction and seed is the cost of few-shot).
    """
    ctx = ctx or MethodContext(trials=trials)
    source = _as_source(trials, inputs)
    protocol = source.protocol
    guard = _FreshGuard()
    result = LosoResult()
    y = trials.gesture
    fs_methods = {m.name for m in methods if m.name in set(few_shot_methods)}
    fracs = sorted({float(f) for f in fractions} | ({float(pool_fraction)} if fs_methods and fractions else set()))
    targets = set(trials.subjects)
    if few_shot_max_subjects and len(targets) > few_shot_max_subjects:
        rng = np.random.default_rng(int(seeds[0]))
        targets = set(rng.choice(trials.subjects, int(few_shot_max_subjects), replace=False).tolist())
    for fold_no, (held_out, train, test) in enumerate(subject_folds(trials.subject, max_folds, int(seeds[0]))):
        train_subjects = sorted(set(trials.subject[train].tolist()))
        folds = {s: {"fold": fold_no, "protocol": protocol, "test_subject": s, "held_out_together": held_out,
                     "train_subjects": train_subjects, "n_train_trials": len(train),
                     "n_test_trials": int((trials.subject[test] == s).sum()), "methods": {}} for s in held_out}
        splits = {}
        for s in [s for s in held_out if s in targets] if fs_methods and fracs else []:
            mine = test[trials.subject[test] == s]
            splits[s] = split = few_shot_split(y, trials.chrono, trials.contraction, mine, fracs, pool_fraction, s)
            if len(split.test) == 0:
                raise AemgError(f"{trials.dataset}: subject {s} has too few trials for a few-shot test set")
            folds[s]["few_shot"] = {
                "test_trials": trials.event_index[split.test].tolist(), "pool_size": len(split.pool),
                "adaptation_trials": {str(f): trials.event_index[idx].tolist() for f, idx in split.subsets.items()},
                "methods": {},
            }
        for method in methods:
            for seed in _seeds_of(method, seeds):
                fitter, checks = _fitter_for(method, seed, source, train_subjects, held_out, ctx, model_dirs,
                                             leak_check, guard, result.seconds, inner_cv)
                pred, record = fitter.fit_predict(train, test, select=True)
                for s in held_out:
                    mine = trials.subject[test] == s
                    folds[s].setdefault("statistics", fitter.fold.statistics)
                    folds[s]["methods"].setdefault(method.name, {})[str(seed)] = record | (
                        {"pretrained": checks[s]} if s in checks else {})
                    result.rows.append(scores(trials.dataset, s, method.name, 0.0, y[test][mine], pred[mine], protocol,
                                              seed, inner_cv_accuracy=record.get("inner_cv_accuracy", math.nan)))
                    result.predictions.extend(
                        {"dataset": trials.dataset, "protocol": protocol, "subject": s, "method": method.name,
                         "seed": seed, "fraction": 0.0, "session": "", "event_index": int(e), "y_true": int(t),
                         "y_pred": int(p)}
                        for e, t, p in zip(trials.event_index[test][mine], y[test][mine], pred[mine], strict=True)
                    )
                    if s in splits and method.name in fs_methods:
                        _few_shot(trials, method, fitter, splits[s], train, test, pred, len(train_subjects), max_repeat,
                                  protocol, seed, folds[s]["few_shot"], result, leak_check)
        result.folds.extend(folds.values())
        if log:
            accs = ", ".join(f"{r['method']}={r['accuracy']:.3f}" for r in result.rows
                             if r["subject"] in held_out and r["fraction"] == 0 and r["seed"] == seeds[0])
            log(f"{trials.dataset}: {protocol}: fold {fold_no + 1} (test {', '.join(held_out)}): {accs}")
    return result


def _few_shot(trials: Trials, method: Method, fitter: _Fitter, split: Any, train: np.ndarray, test: np.ndarray,
              loso_pred: np.ndarray, n_train_subjects: int, max_repeat: int, protocol: str, seed: int,
              fs_entry: dict[str, Any], result: LosoResult, leak_check: LeakCheck | None) -> None:
    """Few-shot rows of one method, fold and seed (the settings chosen for the LOSO fit are kept)."""
    y = trials.gesture
    subject = split.subject
    pos = np.searchsorted(test, split.test)  # test is sorted (LeaveOneGroupOut)
    result.few_shot_zero.append(scores(trials.dataset, subject, method.name, 0.0, y[split.test], loso_pred[pos], "few_shot", seed))
    for f, subset in split.subsets.items():
        r = _repeat_for_balance(len(train), n_train_subjects, len(subset), max_repeat)
        fit_idx = np.concatenate([train, np.tile(subset, r)])
        if method.pretrained and leak_check is not None:
            leak_check(method, subject, seed)
        pred, record = fitter.fit_predict(fit_idx, split.test, select=False)
        result.rows.append(scores(trials.dataset, subject, method.name, f, y[split.test], pred, "few_shot", seed))
        fs_entry["methods"].setdefault(method.name, {}).setdefault(str(seed), {})[str(f)] = record | {"adaptation_repeat": r}


def run_cross_session(
    trials: Trials,
    methods: Sequence[Method],
    source: FoldInputSource,
    ctx: MethodContext,
    *,
    train_session: str,
    test_sessions: Sequence[str],
    seeds: Sequence[int] = (0,),
    model_dirs: Callable[[int], Path | None] | None = None,
    leak_check: LeakCheck | None = None,
    log: Callable[[str], None] | None = None,
) -> LosoResult:
    """Within-subject, across sessions: fit on a subject's ``train_session`` trials, score each of
    its ``test_sessions`` (the Myo evaluation part's training0 -> Test0, Test1). Subjects without
    the training session or any test session are skipped. No inner CV (one subject is one group):
    every method keeps its defaults."""
    guard = _FreshGuard()
    result = LosoResult()
    y = trials.gesture
    for subject in trials.subjects:
        mine = trials.subject == subject
        train = np.flatnonzero(mine & (trials.session == train_session))
        tests = {s: np.flatnonzero(mine & (trials.session == s)) for s in test_sessions}
        tests = {s: rows for s, rows in tests.items() if len(rows)}
        if not len(train) or not tests or len(np.unique(y[train])) < 2:
            continue
        fold: dict[str, Any] = {"protocol": "cross_session", "test_subject": subject, "train_subjects": [subject],
                                "train_session": train_session, "test_sessions": sorted(tests), "methods": {}}
        for method in methods:
            for seed in _seeds_of(method, seeds):
                fitter, checks = _fitter_for(method, seed, source, [subject], [subject], ctx, model_dirs, leak_check,
                                             guard, result.seconds, None)
                fold.setdefault("statistics", fitter.fold.statistics)
                test_rows = np.concatenate(list(tests.values()))
                pred, record = fitter.fit_predict(train, test_rows, select=False)
                fold["methods"].setdefault(method.name, {})[str(seed)] = record | (
                    {"pretrained": checks[subject]} if checks else {})
                at = 0
                for session, rows in tests.items():
                    p = pred[at:at + len(rows)]
                    at += len(rows)
                    result.rows.append(scores(trials.dataset, subject, method.name, 0.0, y[rows], p, "cross_session", seed, session))
        result.folds.append(fold)
        if log:
            log(f"{trials.dataset}: cross_session: {subject} done")
    return result


def run_loso(trials: Trials, methods: list[Method], features: dict[str, np.ndarray], seed: int = 0) -> list[dict[str, Any]]:
    """Zero-shot LOSO rows only (no pre-trained methods: those need :func:`run_folds`'s leak check)."""
    return run_folds(trials, methods, features, MethodContext(seed=seed, trials=trials), seeds=(seed,)).rows


# --------------------------------------------------------------------------- leak check
def check_folds(folds: dict[str, list[dict[str, Any]]]) -> None:
    """Fail if any test subject was seen by any fitted stage of its fold (an estimator, a
    pre-trained model, or a scaling statistic under strict zero-shot), or if an adaptation trial
    is also a test trial. ``folds``: dataset -> fold manifests from :func:`run_folds` (and
    :func:`run_cross_session`, whose folds must test other sessions than they fit)."""
    problems = []
    for dataset, manifests in folds.items():
        by_protocol: dict[str, list[str]] = {}
        for m in manifests:
            by_protocol.setdefault(m.get("protocol", "zero_shot"), []).append(m["test_subject"])
        for protocol, held_out in by_protocol.items():
            if len(held_out) != len(set(held_out)):
                problems.append(f"{dataset}: {protocol}: a subject is held out more than once")
        for m in manifests:
            problems += _fold_problems(dataset, m)
    if problems:
        raise AemgError("leak check failed: " + "; ".join(problems[:10]) + (f" (+{len(problems) - 10} more)" if len(problems) > 10 else ""))


def _fold_problems(dataset: str, m: dict[str, Any]) -> list[str]:
    s, protocol = m["test_subject"], m.get("protocol", "zero_shot")
    where = f"{dataset}: {protocol}: fold {s}"
    if protocol == "cross_session":
        if m["train_session"] in m["test_sessions"]:
            return [f"{where}: the training session {m['train_session']} is also tested"]
        return []
    problems = []
    if s in m["train_subjects"]:
        problems.append(f"{where}: test subject in the training subjects")
    if protocol == "zero_shot" and s in m.get("statistics", {}).get("scale_subjects", []):
        problems.append(f"{where}: the scaling statistic was computed from the test subject")
    for name, per_seed in m["methods"].items():
        for seed, entry in per_seed.items():
            if s in entry["fitted_subjects"]:
                problems.append(f"{where}: {name} (seed {seed}) was fitted on the test subject")
            seen = entry.get("pretrained", {}).get("subjects_seen", {})
            if s in seen.get(dataset, []):
                problems.append(f"{where}: {name}'s pre-trained model (seed {seed}) saw the test subject")
    fs = m.get("few_shot")
    if fs:
        test = set(fs["test_trials"])
        for frac, trials in fs["adaptation_trials"].items():
            overlap = test & set(trials)
            if overlap:
                problems.append(f"{where}: few-shot {frac}: {len(overlap)} adaptation trial(s) are test trials")
        for name, per_seed in fs["methods"].items():
            for seed, per in per_seed.items():
                for frac, entry in per.items():
                    extra = set(entry["fitted_subjects"]) - set(m["train_subjects"]) - {s}
                    if extra:
                        problems.append(f"{where}: {name} (seed {seed}) few-shot {frac} fitted on unexpected subjects {sorted(extra)}")
    return problems


# --------------------------------------------------------------------------- summaries
def _wilcoxon(a: np.ndarray, b: np.ndarray) -> dict[str, float | None]:
    from scipy.stats import wilcoxon

    d = a - b
    out: dict[str, float | None] = {"mean_difference": round(float(d.mean()), 4), "n_subjects": len(d)}
    if len(d) == 0 or np.allclose(d, 0):
        return out | {"statistic": None, "p_value": 1.0}
    res = wilcoxon(a, b, zero_method="zsplit")
    return out | {"statistic": float(res.statistic), "p_value": round(float(res.pvalue), 6)}


def _stats(group: pd.DataFrame) -> dict[str, Any]:
    """Accuracy of one (dataset, method, protocol): mean over subjects per seed, then mean and sd
    over seeds (``accuracy_seed_sd``: the run-to-run noise a difference is judged against);
    ``accuracy_std`` is the spread over subjects of their seed-averaged accuracy."""
    per_seed = group.groupby("seed").accuracy.mean()
    per_subject = group.groupby("subject")[["accuracy", "balanced_accuracy", "macro_f1"]].mean()
    return {
        "accuracy_mean": round(float(per_seed.mean()), 4),
        "accuracy_std": round(float(per_subject.accuracy.std(ddof=0)), 4),
        "accuracy_seed_sd": round(float(per_seed.std(ddof=1)) if len(per_seed) > 1 else 0.0, 4),
        "n_seeds": len(per_seed),
        "balanced_accuracy_mean": round(float(per_subject.balanced_accuracy.mean()), 4),
        "macro_f1_mean": round(float(per_subject.macro_f1.mean()), 4),
        "n_subjects": int(group.subject.nunique()),
        "inner_cv_accuracy_mean": round(float(group.inner_cv_accuracy.mean()), 4) if group.inner_cv_accuracy.notna().any() else None,
    }


def _per_subject(rows: pd.DataFrame, method: str) -> pd.Series:
    return rows[rows.method == method].groupby("subject").accuracy.mean()


def _compare_to_best_baseline(rows: pd.DataFrame, per: dict[str, dict[str, Any]]) -> None:
    """Paired Wilcoxon (over subjects, seed-averaged) of every AEMG method against the best baseline."""
    base = {m: v["accuracy_mean"] for m, v in per.items() if is_baseline(m)}
    aemg = {m: v["accuracy_mean"] for m, v in per.items() if is_aemg(m)}
    if not base or not aemg:
        return
    best_base = max(base, key=base.get)
    best_aemg = max(aemg, key=aemg.get)
    b = _per_subject(rows, best_base)
    for m in aemg:
        a = _per_subject(rows, m)
        common = a.index.intersection(b.index)
        per[m]["wilcoxon_vs_best_baseline"] = {"baseline": best_base, **_wilcoxon(a[common].to_numpy(), b[common].to_numpy())}
        per[m]["best_aemg"] = m == best_aemg


def summarize(scores: pd.DataFrame, few_shot_zero: pd.DataFrame | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """Per dataset and method: strict zero-shot LOSO (the top-level numbers), the unlabelled-target
    protocol (``unlabelled_target``), the few-shot table (``few_shot``) and cross-session scores
    (``cross_session``), each a mean ± sd over held-out subjects and over seeds, and for AEMG
    methods a paired Wilcoxon (over subjects) against the best baseline *of the same protocol*.

    Few-shot entries are keyed by fraction: mean ± std accuracy on the subjects' few-shot test
    sets and ``relative_mean`` = mean over subjects of accuracy / accuracy with the whole
    adaptation pool (the largest fraction, the "full data" reference); "0" is the LOSO model on
    the same test set.
    """
    scores = _with_defaults(scores)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for protocol in ("zero_shot", "unlabelled_target"):
        rows = scores[(scores.protocol == protocol) & (scores.fraction == 0)]
        for dataset, ds_rows in rows.groupby("dataset"):
            per = {m: _stats(g) for m, g in ds_rows.groupby("method")}
            _compare_to_best_baseline(ds_rows, per)
            for m, v in per.items():
                slot = out.setdefault(dataset, {}).setdefault(m, {})
                (slot.update(v) if protocol == "zero_shot" else slot.__setitem__(protocol, v))
    fs = scores[scores.protocol == "few_shot"]
    zero = None if few_shot_zero is None or not len(few_shot_zero) else _with_defaults(few_shot_zero)
    for (dataset, method), group in fs.groupby(["dataset", "method"]):
        full = group[group.fraction == group.fraction.max()].groupby("subject").accuracy.mean()
        table: dict[str, Any] = {}
        if zero is not None:
            z = zero[(zero.dataset == dataset) & (zero.method == method)]
            if len(z):
                table["0"] = _fs_cell(z.groupby("subject").accuracy.mean(), full)
        for frac, g in group.groupby("fraction"):
            table[f"{frac:g}"] = _fs_cell(g.groupby("subject").accuracy.mean(), full)
        out.setdefault(dataset, {}).setdefault(method, {})["few_shot"] = table
    cs = scores[scores.protocol == "cross_session"]
    for (dataset, method), group in cs.groupby(["dataset", "method"]):
        out.setdefault(dataset, {}).setdefault(method, {})["cross_session"] = {
            session: _stats(g) for session, g in group.groupby("session")}
    return out


def _with_defaults(scores: pd.DataFrame) -> pd.DataFrame:
    """Rows written before protocols and seeds existed read as strict zero-shot, seed 0."""
    defaults = {"protocol": "zero_shot", "seed": 0, "session": "", "inner_cv_accuracy": math.nan}
    return scores.assign(**{k: v for k, v in defaults.items() if k not in scores})


def _fs_cell(acc: pd.Series, full: pd.Series) -> dict[str, float]:
    common = acc.index.intersection(full.index)
    rel = (acc[common] / full[common].where(full[common] > 0)).dropna()
    return {
        "accuracy_mean": round(float(acc.mean()), 4),
        "accuracy_std": round(float(acc.std(ddof=0)), 4),
        "relative_mean": round(float(rel.mean()), 4) if len(rel) else math.nan,
        "n_subjects": len(acc),
    }


def write_metrics(rows: list[dict[str, Any]], metrics_dir: Path, *, few_shot_zero: list[dict[str, Any]] | None = None,
                  predictions: list[dict[str, Any]] | None = None,
                  folds: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """loso_scores.csv, loso.json and, when given, loso_predictions.csv.gz and folds.json."""
    metrics_dir.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(rows, columns=SCORE_COLUMNS)
    table.to_csv(metrics_dir / "loso_scores.csv", index=False)
    zero = pd.DataFrame(few_shot_zero or [], columns=SCORE_COLUMNS)
    summary = summarize(table, zero)
    (metrics_dir / "loso.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    if predictions is not None:
        pd.DataFrame(predictions, columns=PREDICTION_COLUMNS).to_csv(  # mtime 0: same results, same bytes
            metrics_dir / "loso_predictions.csv.gz", index=False, compression={"method": "gzip", "mtime": 0})
    if folds is not None:
        (metrics_dir / "folds.json").write_text(json.dumps(folds, indent=1, sort_keys=True))
    return summary


def format_table(summary: dict[str, dict[str, dict[str, Any]]], protocol: str = "zero_shot") -> str:
    """Plain-text LOSO table of one protocol: accuracy mean ± sd over seeds (deterministic methods
    run once: ± 0) per dataset (rows) and method (columns)."""
    def cell(v: dict[str, Any]) -> dict[str, Any] | None:
        v = v if protocol == "zero_shot" else v.get(protocol, {})
        return v if "accuracy_mean" in v else None

    methods = sorted({m for per in summary.values() for m, v in per.items() if cell(v)})
    width = max([16, *(len(m) + 2 for m in methods)])
    lines = ["dataset".ljust(26) + "".join(m.rjust(width) for m in methods)]
    for dataset, per in sorted(summary.items()):
        cells = []
        for m in methods:
            c = cell(per.get(m, {}))
            cells.append((f"{c['accuracy_mean']:.3f}±{c.get('accuracy_seed_sd', 0.0):.3f}" if c else "-").rjust(width))
        lines.append(dataset.ljust(26) + "".join(cells))
    return "\n".join(lines)


def _method_rows(summary: dict[str, dict[str, dict[str, Any]]], key: str, width: int,
                 cell: Callable[[dict[str, Any]], str]) -> str:
    """One row per (dataset, method) that has ``key`` in its summary; columns are its sub-keys
    (those of the first such entry): fractions in numeric order, sessions by name."""
    lines: list[str] = []
    for dataset, per in sorted(summary.items()):
        for method, v in sorted(per.items()):
            table = v.get(key)
            if not table:
                continue
            cols = sorted(table, key=float) if key == "few_shot" else sorted(table)
            if not lines:
                lines.append("dataset / method".ljust(40) + "".join(
                    (f"f={c}" if key == "few_shot" else c).rjust(width) for c in cols))
            lines.append(f"{dataset} / {method}".ljust(40) + "".join(cell(table[c]).rjust(width) for c in cols))
    return "\n".join(lines)


def format_few_shot_table(summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Plain-text few-shot table: accuracy (and fraction of full-data accuracy) per fraction."""
    return _method_rows(summary, "few_shot", 15, lambda c: f"{c['accuracy_mean']:.3f} ({c['relative_mean']:.2f})")


def format_cross_session_table(summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Plain-text cross-session table: accuracy per test session (mean ± sd over seeds)."""
    return _method_rows(summary, "cross_session", 16, lambda c: f"{c['accuracy_mean']:.3f}±{c['accuracy_seed_sd']:.3f}")


def format_tables(summary: dict[str, dict[str, dict[str, Any]]]) -> list[tuple[str, str]]:
    """(caption, table) of every protocol present, in the order a reader needs them."""
    out = [("Leave-one-subject-out accuracy, strict zero-shot (nothing from the test subject); "
            "mean ± sd over pre-training seeds (deterministic methods run once):", format_table(summary))]
    if any("unlabelled_target" in v for per in summary.values() for v in per.values()):
        out.append(("Leave-one-subject-out accuracy, unlabelled target (the test subject's own unlabelled trials "
                    "set its scaling and feature standardisation, for every method alike):",
                    format_table(summary, "unlabelled_target")))
    few_shot = format_few_shot_table(summary)
    if few_shot:
        out.append(("Few-shot accuracy with a fraction f of the target subject's trials (ratio to the whole pool):", few_shot))
    cross = format_cross_session_table(summary)
    if cross:
        out.append(("Cross-session accuracy (fit on a subject's training session, test its later sessions):", cross))
    return out

