"""Flow ``tokenize``: contraction-event tokens for every harmonized dataset, on Dask."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from aemg.flows.common import record_snapshot, resolve, run_per_dataset
from aemg.flows.dask_map import MapFn, dask_map
from aemg.store import list_groups
from aemg.tokenize.stage import tokenize_one


@task(cache_policy=NO_CACHE)
def tokenize_task(dataset_id: str, harmonized: Path, tokens: Path, tp: dict[str, Any], map_fn: MapFn) -> dict[str, Any]:
    return tokenize_one(harmonized, tokens, dataset_id, tp, map_fn)


@flow(name="tokenize")
def tokenize_flow(
    datasets: list[str] | None = None,
    params_path: str | None = None,
    store: str | None = None,
    tokens: str | None = None,
    dask_address: str | None = None,
) -> dict[str, Any]:
    params, paths = resolve(params_path, {"harmonized": store, "tokens": tokens})
    datasets = datasets or list_groups(paths["harmonized"])
    with dask_map(dask_address) as map_fn:
        results = run_per_dataset(tokenize_task, datasets, paths["harmonized"], paths["tokens"], params["tokenize"], map_fn)
    record_snapshot(paths, "tokens")
    return results
