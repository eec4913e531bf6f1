"""Leave-one-subject-out and few-shot scoring: one row per (dataset, subject, method, fraction).

The runner asks every method for a *new* estimator per fold (and per few-shot fit), refuses an
object it has already used or one that arrives fitted, and records what each fit saw in a fold
manifest (``metrics/folds.json``); :func:`check_folds` fails the run if a test subject appears
in any fitted stage or an adaptation trial is also a test trial.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import NotFittedError
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from sklearn.utils.validation import check_is_fitted

from aemg.errors import AemgError
from aemg.evaluate.methods import Method, MethodContext, is_aemg, is_baseline
from aemg.evaluate.splits import few_shot_split, loso_folds
from aemg.evaluate.trials import Trials

SCORE_COLUMNS = ["dataset", "subject", "method", "fraction", "accuracy", "balanced_accuracy", "macro_f1", "n_trials"]
PREDICTION_COLUMNS = ["dataset", "subject", "method", "fraction", "event_index", "y_true", "y_pred"]

LeakCheck = Callable[[Method, str], dict[str, Any]]


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


def scores(dataset: str, subject: str, method: str, fraction: float, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # balanced accuracy warns when y_pred has classes y_true lacks
        return {
            "dataset": dataset,
            "subject": subject,
            "method": method,
            "fraction": float(fraction),
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro")),
            "n_trials": len(y_true),
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


def _fit_predict(method: Method, ctx: MethodContext, X: np.ndarray, y: np.ndarray, train: np.ndarray,
                 test: np.ndarray, guard: _FreshGuard, seconds: dict[str, float]) -> np.ndarray:
    t0 = time.perf_counter()
    model = guard(method.name, method.make_estimator(ctx))
    model.fit(X[train], y[train])
    pred = np.asarray(model.predict(X[test]))
    seconds[method.name] = seconds.get(method.name, 0.0) + time.perf_counter() - t0
    return pred


def _repeat_for_balance(n_train: int, n_train_subjects: int, n_subset: int, max_repeat: int) -> int:
    """Repeat the adaptation trials so the target subject weighs about as much as one training
    subject (at most ``max_repeat`` times; 1 = simply added)."""
    if n_subset == 0:
        return 1
    per_subject = n_train / max(n_train_subjects, 1)
    return int(min(max_repeat, max(1, round(per_subject / n_subset))))


def run_folds(
    trials: Trials,
    methods: Sequence[Method],
    features: dict[str, np.ndarray],
    ctx: MethodContext | None = None,
    *,
    few_shot_methods: Sequence[str] = (),
    fractions: Sequence[float] = (),
    pool_fraction: float = 0.8,
    max_repeat: int = 20,
    leak_check: LeakCheck | None = None,
    log: Callable[[str], None] | None = None,
    on_fold: Callable[[int], None] | None = None,
) -> LosoResult:
    """LOSO of every method (fraction 0) plus few-shot adaptation rows (fraction > 0).

    Few-shot: for each target subject, :func:`~aemg.evaluate.splits.few_shot_split` gives a fixed
    test set and nested class-stratified adaptation subsets from the earliest trials; the subset
    (repeated to weigh like one training subject, see ``max_repeat``) is added to the other
    subjects' trials and a fresh estimator is fitted. ``pool_fraction`` is always evaluated too:
    it is the "full data" reference of the few-shot table. ``on_fold(fold_no)`` runs before
    each fold (the caller re-chooses its thread count there).
    """
    ctx = ctx or MethodContext(trials=trials)
    ctx.trials = trials if ctx.trials is None else ctx.trials
    guard = _FreshGuard()
    result = LosoResult()
    y = trials.gesture
    fs_methods = [m for m in methods if m.name in set(few_shot_methods)]
    fracs = sorted({float(f) for f in fractions} | ({float(pool_fraction)} if fs_methods and fractions else set()))
    for fold_no, (subject, train, test) in enumerate(loso_folds(trials.subject)):
        if on_fold:
            on_fold(fold_no)
        train_subjects = sorted(set(trials.subject[train].tolist()))
        fold: dict[str, Any] = {
            "fold": fold_no, "test_subject": subject, "train_subjects": train_subjects,
            "n_train_trials": len(train), "n_test_trials": len(test), "methods": {},
        }
        loso_pred: dict[str, np.ndarray] = {}
        for method in methods:
            entry: dict[str, Any] = {"fitted_subjects": train_subjects}
            if method.pretrained:
                if leak_check is None:
                    raise AemgError(f"{trials.dataset}: method {method.name!r} uses a pre-trained model but no leak check was given")
                entry["pretrained"] = leak_check(method, subject)
            pred = _fit_predict(method, ctx, features[method.features], y, train, test, guard, result.seconds)
            entry["fitted_subjects"] = sorted(set(trials.subject[train].tolist()))  # what fit() really got
            loso_pred[method.name] = pred
            result.rows.append(scores(trials.dataset, subject, method.name, 0.0, y[test], pred))
            result.predictions.extend(
                {"dataset": trials.dataset, "subject": subject, "method": method.name, "fraction": 0.0,
                 "event_index": int(e), "y_true": int(t), "y_pred": int(p)}
                for e, t, p in zip(trials.event_index[test], y[test], pred, strict=True)
            )
            fold["methods"][method.name] = entry
        if fs_methods and fracs:
            split = few_shot_split(y, trials.chrono, trials.sentence, test, fracs, pool_fraction, subject)
            if len(split.test) == 0:
                raise AemgError(f"{trials.dataset}: subject {subject} has too few trials for a few-shot test set")
            pos = np.searchsorted(test, split.test)  # test is sorted (LeaveOneGroupOut)
            fs_entry: dict[str, Any] = {
                "test_trials": trials.event_index[split.test].tolist(),
                "pool_size": len(split.pool),
                "adaptation_trials": {str(f): trials.event_index[idx].tolist() for f, idx in split.subsets.items()},
                "methods": {},
            }
            for method in fs_methods:
                zero = scores(trials.dataset, subject, method.name, 0.0, y[split.test], loso_pred[method.name][pos])
                result.few_shot_zero.append(zero)
                for f, subset in split.subsets.items():
                    r = _repeat_for_balance(len(train), len(train_subjects), len(subset), max_repeat)
                    fit_idx = np.concatenate([train, np.tile(subset, r)])
                    if method.pretrained:
                        leak_check(method, subject)  # type: ignore[misc]
                    pred = _fit_predict(method, ctx, features[method.features], y, fit_idx, split.test, guard, result.seconds)
                    result.rows.append(scores(trials.dataset, subject, method.name, f, y[split.test], pred))
                    fs_entry["methods"].setdefault(method.name, {})[str(f)] = {
                        "fitted_subjects": sorted(set(trials.subject[fit_idx].tolist())),
                        "adaptation_repeat": r,
                    }
            fold["few_shot"] = fs_entry
        result.folds.append(fold)
        if log:
            accs = ", ".join(f"{r['method']}={r['accuracy']:.3f}" for r in result.rows if r["subject"] == subject and r["fraction"] == 0)
            log(f"{trials.dataset}: fold {fold_no + 1} (test {subject}): {accs}")
    return result


def run_loso(trials: Trials, methods: list[Method], features: dict[str, np.ndarray], seed: int = 0) -> list[dict[str, Any]]:
    """Zero-shot LOSO rows only (no pre-trained methods: those need :func:`run_folds`'s leak check)."""
    return run_folds(trials, methods, features, MethodContext(seed=seed, trials=trials)).rows


# --------------------------------------------------------------------------- leak check
def check_folds(folds: dict[str, list[dict[str, Any]]]) -> None:
    """Fail if any test subject was seen by any fitted stage of its fold, or if an adaptation
    trial is also a test trial. ``folds``: dataset -> fold manifests from :func:`run_folds`."""
    problems = []
    for dataset, manifests in folds.items():
        held_out = [m["test_subject"] for m in manifests]
        if len(held_out) != len(set(held_out)):
            problems.append(f"{dataset}: a subject is held out more than once")
        for m in manifests:
            s = m["test_subject"]
            if s in m["train_subjects"]:
                problems.append(f"{dataset}: fold {s}: test subject in the training subjects")
            for name, entry in m["methods"].items():
                if s in entry["fitted_subjects"]:
                    problems.append(f"{dataset}: fold {s}: {name} was fitted on the test subject")
                seen = entry.get("pretrained", {}).get("subjects_seen", {})
                if s in seen.get(dataset, []):
                    problems.append(f"{dataset}: fold {s}: {name}'s pre-trained model saw the test subject")
            fs = m.get("few_shot")
            if fs:
                test = set(fs["test_trials"])
                for frac, trials in fs["adaptation_trials"].items():
                    overlap = test & set(trials)
                    if overlap:
                        problems.append(f"{dataset}: fold {s}: few-shot {frac}: {len(overlap)} adaptation trial(s) are test trials")
                for name, per in fs["methods"].items():
                    for frac, entry in per.items():
                        extra = set(entry["fitted_subjects"]) - set(m["train_subjects"]) - {s}
                        if extra:
                            problems.append(f"{dataset}: fold {s}: {name} few-shot {frac} fitted on unexpected subjects {sorted(extra)}")
    if problems:
        raise AemgError("leak check failed: " + "; ".join(problems[:10]) + (f" (+{len(problems) - 10} more)" if len(problems) > 10 else ""))


# --------------------------------------------------------------------------- summaries
def _wilcoxon(a: np.ndarray, b: np.ndarray) -> dict[str, float | None]:
    from scipy.stats import wilcoxon

    d = a - b
    out: dict[str, float | None] = {"mean_difference": round(float(d.mean()), 4), "n_subjects": len(d)}
    if len(d) == 0 or np.allclose(d, 0):
        return out | {"statistic": None, "p_value": 1.0}
    res = wilcoxon(a, b, zero_method="zsplit")
    return out | {"statistic": float(res.statistic), "p_value": round(float(res.pvalue), 6)}


def summarize(scores: pd.DataFrame, few_shot_zero: pd.DataFrame | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """Per dataset and method: LOSO mean ± std over held-out subjects, the few-shot table, and
    for AEMG methods a paired Wilcoxon (over subjects) against the best baseline.

    Few-shot entries are keyed by fraction: mean ± std accuracy on the subjects' few-shot test
    sets and ``relative_mean`` = mean over subjects of accuracy / accuracy with the whole
    adaptation pool (the largest fraction, the "full data" reference); "0" is the LOSO model on
    the same test set.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    loso = scores[scores.fraction == 0]
    for (dataset, method), group in loso.groupby(["dataset", "method"]):
        out.setdefault(dataset, {})[method] = {
            "accuracy_mean": round(float(group.accuracy.mean()), 4),
            "accuracy_std": round(float(group.accuracy.std(ddof=0)), 4),
            "balanced_accuracy_mean": round(float(group.balanced_accuracy.mean()), 4),
            "macro_f1_mean": round(float(group.macro_f1.mean()), 4),
            "n_subjects": int(group.subject.nunique()),
        }
    fs = scores[scores.fraction > 0]
    for (dataset, method), group in fs.groupby(["dataset", "method"]):
        full_frac = group.fraction.max()
        full = group[group.fraction == full_frac].set_index("subject").accuracy
        table: dict[str, Any] = {}
        if few_shot_zero is not None and len(few_shot_zero):
            z = few_shot_zero[(few_shot_zero.dataset == dataset) & (few_shot_zero.method == method)]
            if len(z):
                table["0"] = _fs_cell(z.set_index("subject").accuracy, full)
        for frac, g in group.groupby("fraction"):
            table[f"{frac:g}"] = _fs_cell(g.set_index("subject").accuracy, full)
        out.setdefault(dataset, {}).setdefault(method, {})["few_shot"] = table
    for dataset, per in out.items():
        base = {m: v["accuracy_mean"] for m, v in per.items() if is_baseline(m) and "accuracy_mean" in v}
        aemg = {m: v["accuracy_mean"] for m, v in per.items() if is_aemg(m) and "accuracy_mean" in v}
        if not base or not aemg:
            continue
        best_base = max(base, key=base.get)
        best_aemg = max(aemg, key=aemg.get)
        b = loso[(loso.dataset == dataset) & (loso.method == best_base)].set_index("subject").accuracy
        for m in aemg:
            a = loso[(loso.dataset == dataset) & (loso.method == m)].set_index("subject").accuracy
            common = a.index.intersection(b.index)
            per[m]["wilcoxon_vs_best_baseline"] = {"baseline": best_base, **_wilcoxon(a[common].to_numpy(), b[common].to_numpy())}
            per[m]["best_aemg"] = m == best_aemg
    return out


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
        pd.DataFrame(predictions, columns=PREDICTION_COLUMNS).to_csv(metrics_dir / "loso_predictions.csv.gz", index=False)
    if folds is not None:
        (metrics_dir / "folds.json").write_text(json.dumps(folds, indent=1, sort_keys=True))
    return summary


def format_table(summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Plain-text LOSO table: accuracy mean ± std per dataset (rows) and method (columns)."""
    methods = sorted({m for per in summary.values() for m, v in per.items() if "accuracy_mean" in v})
    width = max([16, *(len(m) + 2 for m in methods)])
    lines = ["dataset".ljust(26) + "".join(m.rjust(width) for m in methods)]
    for dataset, per in sorted(summary.items()):
        cells = [
            f"{per[m]['accuracy_mean']:.3f}±{per[m]['accuracy_std']:.3f}".rjust(width) if m in per and "accuracy_mean" in per[m] else "-".rjust(width)
            for m in methods
        ]
        lines.append(dataset.ljust(26) + "".join(cells))
    return "\n".join(lines)


def format_few_shot_table(summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Plain-text few-shot table: accuracy (and fraction of full-data accuracy) per fraction."""
    lines = []
    for dataset, per in sorted(summary.items()):
        for method, v in sorted(per.items()):
            fs = v.get("few_shot")
            if not fs:
                continue
            keys = sorted(fs, key=float)
            if not lines:
                lines.append("dataset / method".ljust(40) + "".join(f"f={k}".rjust(15) for k in keys))
            cells = "".join(f"{fs[k]['accuracy_mean']:.3f} ({fs[k]['relative_mean']:.2f})".rjust(15) for k in keys)
            lines.append(f"{dataset} / {method}".ljust(40) + cells)
    return "\n".join(lines)
