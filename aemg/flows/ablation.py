"""Flow ``ablation``: the fixed-window models of AEMG's own ablation, one per evaluated dataset and
pre-training seed (``<paths.models_fixedwin>/<dataset>/seed<k>``, see ``aemg.model.stage.model_dir``).

Runs only when the evaluation grid's methods list ``aemg_probe_fixedwin``; the output folder is created
either way so that DVC always finds the stage's output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from aemg.flows.common import resolve

ABLATION_METHOD = "aemg_probe_fixedwin"


@task(cache_policy=NO_CACHE)
def fixed_window_task(harmonized: Path, tokens: Path, out_dir: Path, evaluated: str, sources: list[str],
                      tp: dict[str, Any], pp: dict[str, Any], seed: int) -> dict[str, Any]:
    from aemg.evaluate.ablation import pretrain_fixed_window

    return pretrain_fixed_window(harmonized, tokens, out_dir, evaluated, sources, tp, pp, seed)


@flow(name="ablation")
def ablation_flow(params_path: str | None = None, tokens: str | None = None) -> dict[str, Any]:
    from aemg.evaluate.settings import resolve_grid
    from aemg.model.stage import datasets_to_model, model_dir, seeds_of

    params, paths = resolve(params_path, {"tokens": tokens})
    paths["models_fixedwin"].mkdir(parents=True, exist_ok=True)
    if ABLATION_METHOD not in resolve_grid(params["evaluate"])["methods"]:
        return {}
    sources, evaluated = datasets_to_model(paths["tokens"], params)
    return {
        ds: {seed: fixed_window_task.with_options(name=f"fixed-window-without-{ds}-seed{seed}")(
            paths["harmonized"], paths["tokens"], model_dir(paths["models_fixedwin"], ds, seed), ds, sources,
            params["tokenize"], params["pretrain"], seed,
        ) for seed in seeds_of(params["pretrain"])}
        for ds in evaluated
    }
