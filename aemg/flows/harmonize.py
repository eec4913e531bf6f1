"""Flows ``download`` and ``harmonize``: verified files in, one harmonized store out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from aemg.datasets.download import download
from aemg.datasets.registry import get_spec, user_spec_files
from aemg.datasets.spec import load_spec
from aemg.errors import DatasetError
from aemg.flows.common import raise_failures, record_snapshot, resolve, run_per_dataset
from aemg.flows.dask_map import MapFn, dask_map
from aemg.harmonize.dataset import select_files
from aemg.harmonize.stage import harmonize_one


def _transient(task, task_run, state) -> bool:
    """Retry network trouble only: a DatasetError (bad hash, unknown id, manual access) is final."""
    try:
        state.result()
    except DatasetError as exc:
        return "download from" in exc.reason
    except Exception:
        return True
    return False


@task(retries=2, retry_delay_seconds=2, retry_condition_fn=_transient)
def download_task(dataset_id: str, raw: Path, mirror: str | None, subjects: dict[str, list[str]]) -> str:
    """Fetch a dataset, or only the files of the subjects ``params.yaml`` selects."""
    spec = get_spec(dataset_id)
    wanted = None
    if subjects.get(dataset_id):  # a slice still needs the dataset's side files (maps, metadata)
        wanted = select_files(spec, subjects[dataset_id]) + [f for f in spec.files if spec.match(f) is None]
    return str(download(spec, raw, mirror=mirror, files=wanted))


@task(cache_policy=NO_CACHE)
def harmonize_task(
    dataset_id: str, raw: Path, store: Path, params: dict[str, Any], map_fn: MapFn, only_changed: bool
) -> dict[str, Any]:
    spec = get_spec(dataset_id)
    subjects = params["subjects"].get(dataset_id)
    return harmonize_one(spec, raw / spec.id, store, params["harmonize"], subjects, map_fn, only_changed)


@flow(name="download")
def download_flow(
    datasets: list[str] | None = None, params_path: str | None = None, raw: str | None = None, mirror: str | None = None
) -> dict[str, str]:
    params, paths = resolve(params_path, {"raw": raw})
    return run_per_dataset(download_task, datasets or params["datasets"], paths["raw"], mirror, params["subjects"])


@flow(name="harmonize")
def harmonize_flow(
    datasets: list[str] | None = None,
    params_path: str | None = None,
    store: str | None = None,
    raw: str | None = None,
    mirror: str | None = None,
    dask_address: str | None = None,
    only_changed: bool = False,
    all_registered: bool = False,
) -> dict[str, Any]:
    """Download (verified) and harmonize each dataset; one bad dataset fails alone.

    The scheduled deployment sets ``only_changed`` and ``all_registered``: the datasets of
    ``params.yaml`` plus every spec in ``datasets.d/`` are checked, and only new or changed
    ones are rebuilt. (Built-in datasets not chosen in params.yaml are left alone: some are
    tens of thousands of files, some need a manual download.)
    """
    params, paths = resolve(params_path, {"harmonized": store, "raw": raw})
    datasets = datasets or params["datasets"]
    if all_registered:
        datasets = sorted(set(datasets) | {load_spec(path).id for path in user_spec_files()})
    failures: dict[str, str] = {}
    run_per_dataset(download_task, datasets, paths["raw"], mirror, params["subjects"], failures=failures)
    downloaded = [d for d in datasets if d not in failures]
    with dask_map(dask_address) as map_fn:
        results = run_per_dataset(
            harmonize_task, downloaded, paths["raw"], paths["harmonized"], params, map_fn, only_changed, failures=failures
        )
    if results:
        record_snapshot(paths, "harmonized")
    raise_failures(failures, len(results))
    return results
