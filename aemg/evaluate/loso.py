"""Leave-one-subject-out scoring: one row per (dataset, subject, method, fraction)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from aemg.evaluate.methods import Method
from aemg.evaluate.splits import loso_folds
from aemg.evaluate.trials import Trials

SCORE_COLUMNS = ["dataset", "subject", "method", "fraction", "accuracy", "balanced_accuracy", "macro_f1", "n_trials"]


def run_loso(trials: Trials, methods: list[Method], features: dict[str, np.ndarray], seed: int = 0) -> list[dict[str, Any]]:
    """Fit a fresh estimator per fold and method; the test subject is never in the fit."""
    rows = []
    for subject, train, test in loso_folds(trials.subject):
        y_train, y_test = trials.gesture[train], trials.gesture[test]
        for method in methods:
            X = features[method.features]
            model = method.make_estimator(seed)
            model.fit(X[train], y_train)
            pred = model.predict(X[test])
            rows.append(
                {
                    "dataset": trials.dataset,
                    "subject": subject,
                    "method": method.name,
                    "fraction": 0.0,
                    "accuracy": float(accuracy_score(y_test, pred)),
                    "balanced_accuracy": float(balanced_accuracy_score(y_test, pred)),
                    "macro_f1": float(f1_score(y_test, pred, average="macro")),
                    "n_trials": len(test),
                }
            )
    return rows


def summarize(scores: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """Mean ± std of accuracy over held-out subjects, per dataset and method."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (dataset, method), group in scores[scores.fraction == 0].groupby(["dataset", "method"]):
        out.setdefault(dataset, {})[method] = {
            "accuracy_mean": round(float(group.accuracy.mean()), 4),
            "accuracy_std": round(float(group.accuracy.std(ddof=0)), 4),
            "balanced_accuracy_mean": round(float(group.balanced_accuracy.mean()), 4),
            "macro_f1_mean": round(float(group.macro_f1.mean()), 4),
            "n_subjects": int(group.subject.nunique()),
        }
    return out


def write_metrics(rows: list[dict[str, Any]], metrics_dir: Path) -> dict[str, Any]:
    metrics_dir.mkdir(parents=True, exist_ok=True)
    scores = pd.DataFrame(rows, columns=SCORE_COLUMNS)
    scores.to_csv(metrics_dir / "loso_scores.csv", index=False)
    summary = summarize(scores)
    (metrics_dir / "loso.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    return summary


def format_table(summary: dict[str, dict[str, dict[str, float]]]) -> str:
    """Plain-text LOSO table: accuracy mean ± std per dataset (rows) and method (columns)."""
    methods = sorted({m for per in summary.values() for m in per})
    lines = ["dataset".ljust(26) + "".join(m.rjust(16) for m in methods)]
    for dataset, per in sorted(summary.items()):
        cells = [
            f"{per[m]['accuracy_mean']:.3f}±{per[m]['accuracy_std']:.3f}".rjust(16) if m in per else "-".rjust(16)
            for m in methods
        ]
        lines.append(dataset.ljust(26) + "".join(cells))
    return "\n".join(lines)
