"""Flow ``pretrain``: one leave-one-dataset-out model per evaluated dataset (GPU when present)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from aemg.flows.common import resolve
from aemg.store import list_groups


@task(cache_policy=NO_CACHE)
def pretrain_task(tokens: Path, models: Path, evaluated: str, sources: list[str], pp: dict[str, Any], resume: bool) -> dict[str, Any]:
    from aemg.model.stage import pretrain_without

    return pretrain_without(tokens, models / evaluated, evaluated, sources, pp, resume=resume)


@flow(name="pretrain")
def pretrain_flow(params_path: str | None = None, tokens: str | None = None, resume: bool = False) -> dict[str, Any]:
    from aemg.model.stage import aggregate

    params, paths = resolve(params_path, {"tokens": tokens})
    sources = list_groups(paths["tokens"])
    evaluated = [d for d in params["evaluate"]["datasets"] if d in sources]
    per_model = {
        d: pretrain_task.with_options(name=f"pretrain-without-{d}")(paths["tokens"], paths["models"], d, sources, params["pretrain"], resume)
        for d in evaluated
    }
    paths["metrics"].mkdir(parents=True, exist_ok=True)
    history = {d: m.pop("history") for d, m in per_model.items()}
    (paths["metrics"] / "pretrain_history.json").write_text(json.dumps(history, indent=1))
    summary = aggregate(per_model)
    (paths["metrics"] / "pretrain.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    return summary["models"]
