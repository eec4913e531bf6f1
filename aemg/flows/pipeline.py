"""Flow ``pipeline``: harmonize -> tokenize -> pretrain -> ablation -> evaluate -> levers -> report, as subflows."""

from __future__ import annotations

from typing import Any

from prefect import flow

from aemg.flows.ablation import ablation_flow
from aemg.flows.evaluate import evaluate_flow
from aemg.flows.harmonize import harmonize_flow
from aemg.flows.levers import levers_flow
from aemg.flows.pretrain import pretrain_flow
from aemg.flows.report import report_flow
from aemg.flows.tokenize import tokenize_flow


@flow(name="pipeline")
def pipeline_flow(params_path: str | None = None, mirror: str | None = None, dask_address: str | None = None) -> dict[str, Any]:
    harmonize_flow(params_path=params_path, mirror=mirror, dask_address=dask_address)
    tokenize_flow(params_path=params_path, dask_address=dask_address)
    pretrain_flow(params_path=params_path)
    ablation_flow(params_path=params_path)
    result = evaluate_flow(params_path=params_path)
    levers_flow(params_path=params_path)
    return result | {"reports": report_flow(params_path=params_path)}
