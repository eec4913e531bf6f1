"""Flow ``evaluate``: LOSO of every method on every evaluated dataset, with the leak check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task

from aemg.flows.common import resolve, run_per_dataset


@task
def evaluate_task(dataset: str, tokens: Path, models: Path, ep: dict[str, Any]) -> list[dict[str, Any]]:
    from aemg.evaluate.run import evaluate_dataset

    return evaluate_dataset(tokens, models / dataset, dataset, ep)


@flow(name="evaluate")
def evaluate_flow(params_path: str | None = None, tokens: str | None = None) -> dict[str, Any]:
    from aemg.evaluate.loso import format_table, write_metrics
    from aemg.store import list_groups

    params, paths = resolve(params_path, {"tokens": tokens})
    available = list_groups(paths["tokens"])
    datasets = [d for d in params["evaluate"]["datasets"] if d in available]
    per_dataset = run_per_dataset(evaluate_task, datasets, paths["tokens"], paths["models"], params["evaluate"])
    rows = [row for rows in per_dataset.values() for row in rows]
    summary = write_metrics(rows, paths["metrics"])
    return {"summary": summary, "table": format_table(summary)}
