"""Shared plumbing of the flows: parameters, paths and running per-dataset tasks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import get_run_logger

from aemg.errors import AemgError
from aemg.params import load_params


def resolve(params_path: str | None, overrides: dict[str, str | None]) -> tuple[dict[str, Any], dict[str, Path]]:
    """Parameters plus the stage paths, CLI options taking precedence over ``params.yaml``."""
    params = load_params(params_path)
    paths = {k: Path(overrides.get(k) or v) for k, v in params["paths"].items()}
    return params, paths


def run_per_dataset(task: Callable[..., Any], datasets: list[str], *args: Any) -> dict[str, Any]:
    """Submit one task per dataset; a failing dataset fails alone and is reported at the end."""
    futures = {ds: task.with_options(name=f"{task.name}-{ds}").submit(ds, *args) for ds in datasets}
    results, failures = {}, {}
    for ds, future in futures.items():
        try:
            results[ds] = future.result()
        except Exception as exc:
            failures[ds] = str(exc)
    logger = get_run_logger()
    for ds, summary in results.items():
        logger.info("%s: %s", ds, summary)
    if failures:
        raise AemgError("; ".join(failures.values()) + f" ({len(results)} other dataset(s) succeeded)")
    return results
