"""Flow ``report``: the figures and ``reports/README.md`` of an evaluation."""

from __future__ import annotations

from prefect import flow


@flow(name="report")
def report_flow(params_path: str | None = None) -> list[str]:
    from aemg.evaluate.report import build_report

    return [str(p) for p in build_report(params_path)]
