"""Flow ``evaluate``: LOSO + few-shot of every method on every evaluated dataset, with the leak check.

Datasets run one after another: each already uses every core (torch, BLAS), and sequential
runs keep the timings of the 2-core budget honest. A failing dataset fails alone and is
reported at the end. The fold manifests are written before the leak check runs, so a failing
check leaves the evidence in ``metrics/folds.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from aemg.errors import AemgError
from aemg.flows.common import resolve


@task(cache_policy=NO_CACHE)
def evaluate_task(dataset: str, tokens: Path, models: Path, ep: dict[str, Any], seeds: list[int],
                  harmonized: Path | None = None, models_fixedwin: Path | None = None) -> dict[str, Any]:
    """One dataset, every seed's models (``models/<dataset>/seed<k>``)."""
    from aemg.evaluate.run import evaluate_dataset
    from aemg.model.stage import model_dir

    logger = get_run_logger()
    fixedwin = None if models_fixedwin is None else (lambda seed: model_dir(models_fixedwin, dataset, seed))
    return evaluate_dataset(tokens, lambda seed: model_dir(models, dataset, seed), dataset, ep, harmonized,
                            log=logger.info, fixedwin_dir=fixedwin, seeds=seeds)


@flow(name="evaluate")
def evaluate_flow(params_path: str | None = None, tokens: str | None = None, grid: str | None = None) -> dict[str, Any]:
    """``grid`` overrides ``evaluate.grid`` (e.g. ``full`` for the paper-sized evaluation)."""
    from aemg.evaluate.loso import check_folds, format_tables, write_metrics
    from aemg.evaluate.settings import resolve_grid
    from aemg.model.stage import seeds_of
    from aemg.store import list_groups

    params, paths = resolve(params_path, {"tokens": tokens})
    ep = resolve_grid(params["evaluate"], grid)
    available = list_groups(paths["tokens"])
    datasets = [d for d in params["evaluate"]["datasets"] if d in available]
    logger = get_run_logger()
    seeds = seeds_of(params["pretrain"])
    results, failures = {}, {}
    for ds in datasets:
        try:
            results[ds] = evaluate_task.with_options(name=f"evaluate-{ds}")(
                ds, paths["tokens"], paths["models"], ep, seeds, paths["harmonized"], paths["models_fixedwin"]
            )
        except Exception as exc:
            failures[ds] = str(exc)
    rows = [r for res in results.values() for r in res["rows"]]
    folds = {ds: res["folds"] for ds, res in results.items()}
    summary = write_metrics(
        rows, paths["metrics"],
        few_shot_zero=[r for res in results.values() for r in res["few_shot_zero"]],
        predictions=[p for res in results.values() for p in res["predictions"]],
        folds=folds,
    )
    for ds, res in results.items():
        logger.info("%s: seconds per method %s", ds, {k: round(v, 1) for k, v in res["seconds"].items()})
    check_folds(folds)
    if failures:
        raise AemgError("; ".join(failures.values()) + f" ({len(results)} other dataset(s) succeeded)")
    return {"summary": summary, "tables": format_tables(summary)}
