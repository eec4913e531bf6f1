"""Levers: each setting that could make pre-training pay, flipped against the defaults and measured.

A lever is a named set of overrides of the ``pretrain`` and/or ``evaluate`` sections
(``levers.variants`` in params.yaml), applied one at a time to the defaults. A lever that changes
``pretrain`` gets its own models (``<paths.models_levers>/<lever>/<dataset>/seed<k>``, leave one
dataset out as always); one that changes only ``evaluate`` reuses the default models. Every
lever is scored with the methods of ``levers.methods`` under strict zero-shot LOSO on the same
folds and seeds as the main evaluation, then compared (:func:`ablation_table`)

- with the defaults, paired over subjects (seed-averaged), with the run-to-run sd over seeds;
- with the best baseline of the main evaluation;
- by the probe's inner-CV accuracy on the *training* subjects only, the one criterion that may
  choose a default without looking at a test subject.

The unlabelled-target protocol is a lever too; its numbers come from the main evaluation, which
reports it beside strict zero-shot.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from aemg.errors import AemgError
from aemg.evaluate.loso import _stats, _wilcoxon, _with_defaults
from aemg.evaluate.methods import is_baseline
from aemg.params import with_overrides


def lever_params(params: dict[str, Any], lever: str) -> dict[str, Any]:
    """The parameters with lever ``lever`` applied (checked like a params file)."""
    variants = params["levers"]["variants"]
    if lever not in variants:
        raise AemgError(f"levers.run: unknown lever {lever!r}; defined in levers.variants: {', '.join(variants)}")
    overrides = variants[lever] or {}
    unknown = sorted(set(overrides) - {"pretrain", "evaluate"})
    if unknown:
        raise AemgError(f"levers.variants.{lever}: may override pretrain and evaluate only, not {', '.join(unknown)}")
    base = {k: copy.deepcopy(v) for k, v in params.items()}
    return with_overrides(_deep_merge(base, overrides), f"levers.variants.{lever}")


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def lever_ep(ep: dict[str, Any], methods: list[str]) -> dict[str, Any]:
    """The evaluation section a lever runs: its methods, strict zero-shot LOSO only."""
    return ep | {"methods": list(methods), "few_shot_methods": [], "target_adaptation": ["none"],
                 "cross_session": {"train_session": None, "test_sessions": [], "methods": []}}


def _cell(rows: pd.DataFrame) -> dict[str, Any] | None:
    return _stats(rows) if len(rows) else None


def ablation_table(main: pd.DataFrame, levers: pd.DataFrame, params: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (dataset, method, lever): default vs lever flipped, and the best baseline.

    ``main``: the main evaluation's ``loso_scores.csv``; ``levers``: ``levers_scores.csv`` (a
    ``lever`` column). Differences are default minus flipped (positive: the default helps).
    """
    main = _with_defaults(main)
    strict = main[(main.protocol == "zero_shot") & (main.fraction == 0)]
    unlabelled = main[(main.protocol == "unlabelled_target") & (main.fraction == 0)]
    out = []
    for dataset, ds_rows in strict.groupby("dataset"):
        best = _best_baseline(ds_rows)
        own = unlabelled[unlabelled.dataset == dataset]
        for method in params["levers"]["methods"]:
            default = ds_rows[ds_rows.method == method]
            if not len(default):
                continue
            # the protocol lever is judged against the best baseline of its own protocol
            flips = [("target_adaptation: none -> unlabelled", own[own.method == method], _best_baseline(own))]
            if len(levers):
                lv = levers[(levers.dataset == dataset) & (levers.method == method)]
                flips += [(lever, g, best) for lever, g in lv.groupby("lever")]
            for lever, flipped, flipped_best in flips:
                if len(flipped):
                    out.append(_row(dataset, method, lever, default, flipped, best, flipped_best))
    return out


def _best_baseline(rows: pd.DataFrame) -> tuple[str, pd.DataFrame] | None:
    """(name, rows) of the baseline with the best seed-averaged mean accuracy in ``rows``."""
    base = {m: g.groupby("seed").accuracy.mean().mean() for m, g in rows.groupby("method") if is_baseline(m)}
    if not base:
        return None
    name = max(base, key=base.get)
    return name, rows[rows.method == name]


def _row(dataset: str, method: str, lever: str, default: pd.DataFrame, flipped: pd.DataFrame,
         best: tuple[str, pd.DataFrame] | None, flipped_best: tuple[str, pd.DataFrame] | None) -> dict[str, Any]:
    d, f = _stats(default), _stats(flipped)
    a, b = default.groupby("subject").accuracy.mean(), flipped.groupby("subject").accuracy.mean()
    common = a.index.intersection(b.index)
    paired = _wilcoxon(a[common].to_numpy(), b[common].to_numpy())
    row = {
        "dataset": dataset, "method": method, "lever": lever,
        "default_mean": d["accuracy_mean"], "default_seed_sd": d["accuracy_seed_sd"],
        "flipped_mean": f["accuracy_mean"], "flipped_seed_sd": f["accuracy_seed_sd"], "n_seeds": min(d["n_seeds"], f["n_seeds"]),
        "difference": paired["mean_difference"], "p_value": paired["p_value"], "n_subjects": paired["n_subjects"],
        "inner_cv_default": d["inner_cv_accuracy_mean"], "inner_cv_flipped": f["inner_cv_accuracy_mean"],
    }
    for name, acc, base in (("default", a, best), ("flipped", b, flipped_best)):
        if base is None:
            continue
        c = base[1].groupby("subject").accuracy.mean()
        common = acc.index.intersection(c.index)
        w = _wilcoxon(acc[common].to_numpy(), c[common].to_numpy())
        row[f"{name}_baseline"] = base[0]
        row[f"{name}_baseline_mean"] = round(float(base[1].groupby("seed").accuracy.mean().mean()), 4)
        row[f"{name}_vs_baseline"] = w["mean_difference"]
        row[f"{name}_vs_baseline_p"] = w["p_value"]
    return row


def _inner_cv_choice(row: dict[str, Any]) -> str:
    a, b = row["inner_cv_default"], row["inner_cv_flipped"]
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)):
        return "-"
    return "default" if a >= b else "flipped"


def _p(p: float) -> str:
    return "<1e-06" if p == 0 else f"{p:.2g}"  # _wilcoxon rounds p to 6 decimals


def format_ablation(rows: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`ablation_table` rows."""
    if not rows:
        return ""
    lines = ["| dataset | method | lever (default -> flipped) | default | flipped | default - flipped (p) | "
             "inner CV picks | default - best baseline (p) | flipped - best baseline (p) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        vs = [f"{r[k + '_vs_baseline']:+.3f} ({_p(r[k + '_vs_baseline_p'])}) vs {r[k + '_baseline']} "
              f"{r[k + '_baseline_mean']:.3f}" if k + "_baseline" in r else "-" for k in ("default", "flipped")]
        lines.append(
            f"| {r['dataset']} | {r['method']} | {r['lever']} | {r['default_mean']:.3f}±{r['default_seed_sd']:.3f} | "
            f"{r['flipped_mean']:.3f}±{r['flipped_seed_sd']:.3f} | {r['difference']:+.3f} ({_p(r['p_value'])}) | "
            f"{_inner_cv_choice(r)} | {vs[0]} | {vs[1]} |")
    return "\n".join(lines)



def run_lever(params: dict[str, Any], paths: dict[str, Path], lever: str, datasets: list[str],
              log: Callable[[str], None] | None = None,
              pretrain: Callable[..., Any] | None = None) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Score lever ``lever`` on ``datasets``: (result rows tagged with ``lever``, fold manifests).

    A lever that changes ``pretrain`` first trains its own models in
    ``<paths.models_levers>/<lever>`` (``pretrain``: :func:`aemg.model.stage.pretrain_all` or a
    flow's wrapper of it, same arguments).
    """
    from aemg.evaluate.run import evaluate_dataset
    from aemg.evaluate.settings import resolve_grid
    from aemg.model.stage import model_dir, pretrain_all, seeds_of

    flipped = lever_params(params, lever)
    root = paths["models"]
    if flipped["pretrain"] != params["pretrain"]:
        root = paths["models_levers"] / lever
        (pretrain or pretrain_all)(paths["tokens"], root, flipped)
    ep = lever_ep(resolve_grid(flipped["evaluate"]), params["levers"]["methods"])
    rows, folds = [], {}
    for ds in datasets:
        res = evaluate_dataset(paths["tokens"], lambda seed, ds=ds: model_dir(root, ds, seed), ds, ep,
                               paths["harmonized"], log=log, seeds=seeds_of(flipped["pretrain"]))
        rows += [r | {"lever": lever} for r in res["rows"]]
        folds[f"{ds}@{lever}"] = res["folds"]
    return rows, folds
