"""Flow ``pretrain``: one leave-one-dataset-out model per evaluated dataset (GPU when present)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from aemg.flows.common import resolve


@task(cache_policy=NO_CACHE)
def pretrain_task(tokens: Path, models: Path, evaluated: str, sources: list[str], pp: dict[str, Any], resume: bool) -> dict[str, Any]:
    from aemg.model.stage import pretrain_without

    return pretrain_without(tokens, models / evaluated, evaluated, sources, pp, resume=resume)


@flow(name="pretrain")
def pretrain_flow(params_path: str | None = None, tokens: str | None = None, resume: bool = False) -> dict[str, Any]:
    from aemg.model.stage import datasets_to_model, write_metrics

    params, paths = resolve(params_path, {"tokens": tokens})
    sources, evaluated = datasets_to_model(paths["tokens"], params)
    per_model = {
        d: pretrain_task.with_options(name=f"pretrain-without-{d}")(paths["tokens"], paths["models"], d, sources, params["pretrain"], resume)
        for d in evaluated
    }
    return write_metrics(paths["metrics"], per_model)["models"]
