"""Shared plumbing of the flows: parameters, paths and running per-dataset tasks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import get_run_logger

from aemg.errors import AemgError
from aemg.params import load_params, stage_paths
from aemg.store import snapshot_record


def resolve(params_path: str | None, overrides: dict[str, str | None]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Parameters plus the stage paths (see :func:`aemg.params.stage_paths`), CLI options taking precedence."""
    params = load_params(params_path)
    return params, stage_paths(params, overrides)


def record_snapshot(paths: dict[str, Any], key: str) -> Path:
    """Write ``metrics/snapshots/<key>.json``, the store's URL and snapshot id (a DVC stage output)."""
    out = Path(paths["metrics"]) / "snapshots" / f"{key}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(snapshot_record(paths[key]), indent=2) + "\n")
    return out


def run_per_dataset(
    task: Callable[..., Any], datasets: list[str], *args: Any, failures: dict[str, str] | None = None
) -> dict[str, Any]:
    """Submit one task per dataset; a failing dataset fails alone and is reported at the end.

    With ``failures`` given, failed datasets are recorded there (dataset -> message) and not raised,
    so that a caller can run a next stage on the datasets that succeeded.
    """
    futures = {ds: task.with_options(name=f"{task.name}-{ds}").submit(ds, *args) for ds in datasets}
    results, failed = {}, {}
    for ds, future in futures.items():
        try:
            results[ds] = future.result()
        except Exception as exc:
            failed[ds] = str(exc)
    logger = get_run_logger()
    for ds, summary in results.items():
        logger.info("%s: %s", ds, summary)
    if failures is not None:
        failures.update(failed)
    elif failed:
        raise_failures(failed, len(results))
    return results


def raise_failures(failures: dict[str, str], n_succeeded: int) -> None:
    if failures:
        raise AemgError("; ".join(failures.values()) + f" ({n_succeeded} other dataset(s) succeeded)")
