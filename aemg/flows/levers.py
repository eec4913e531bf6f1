"""Flow ``levers``: each lever of ``levers.run`` flipped against the defaults (see aemg.evaluate.levers).

Writes ``metrics/levers_scores.csv`` and ``metrics/levers_folds.json`` (fold manifests, leak-checked
like the main evaluation's); ``aemg report`` turns them into the ablation table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from aemg.flows.common import resolve


@task(cache_policy=NO_CACHE)
def lever_task(params: dict[str, Any], paths: dict[str, Path], lever: str, datasets: list[str]) -> tuple[list, dict]:
    from aemg.evaluate.levers import run_lever

    return run_lever(params, paths, lever, datasets, log=get_run_logger().info)


@flow(name="levers")
def levers_flow(params_path: str | None = None, tokens: str | None = None) -> dict[str, Any]:
    from aemg.evaluate.loso import SCORE_COLUMNS, check_folds
    from aemg.store import list_groups

    params, paths = resolve(params_path, {"tokens": tokens})
    available = list_groups(paths["tokens"])
    datasets = [d for d in params["evaluate"]["datasets"] if d in available]
    paths["models_levers"].mkdir(parents=True, exist_ok=True)  # DVC expects the output even when no lever trains
    rows, folds = [], {}
    for lever in params["levers"]["run"]:
        r, f = lever_task.with_options(name=f"lever-{lever}")(params, paths, lever, datasets)
        rows += r
        folds |= f
    paths["metrics"].mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=[*SCORE_COLUMNS, "lever"]).to_csv(paths["metrics"] / "levers_scores.csv", index=False)
    (paths["metrics"] / "levers_folds.json").write_text(json.dumps(folds, indent=1, sort_keys=True))
    check_folds(folds)
    return {"levers": list(params["levers"]["run"]), "rows": len(rows)}
