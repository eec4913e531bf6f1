"""Flow ``pretrain``: one leave-one-dataset-out model per (evaluated dataset, seed) (GPU when present)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from aemg.flows.common import resolve


@task(cache_policy=NO_CACHE)
def pretrain_task(tokens: Path, out_dir: Path, evaluated: str, sources: list[str], pp: dict[str, Any], seed: int,
                  resume: bool) -> dict[str, Any]:
    from aemg.model.stage import pretrain_without

    return pretrain_without(tokens, out_dir, evaluated, sources, pp, seed, resume=resume)


@flow(name="pretrain")
def pretrain_flow(params_path: str | None = None, tokens: str | None = None, resume: bool = False) -> dict[str, Any]:
    from aemg.model.stage import pretrain_all, write_metrics

    params, paths = resolve(params_path, {"tokens": tokens})

    def run(tokens: Path, out_dir: Path, d: str, sources: list[str], pp: dict[str, Any], seed: int,
            device: str | None = None, resume: bool = False) -> dict[str, Any]:
        return pretrain_task.with_options(name=f"pretrain-without-{d}-seed{seed}")(
            tokens, out_dir, d, sources, pp, seed, resume)

    per_model = pretrain_all(paths["tokens"], paths["models"], params, resume=resume, run=run)
    return write_metrics(paths["metrics"], per_model)["models"]
