"""Evaluate one dataset: trials, features per method family, leak check, LOSO rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aemg.errors import AemgError
from aemg.evaluate.features import hudgins
from aemg.evaluate.loso import run_loso
from aemg.evaluate.methods import get_methods
from aemg.evaluate.trials import load_trials


def evaluate_dataset(tokens: Path, model_dir: Path, dataset: str, ep: dict[str, Any]) -> list[dict[str, Any]]:
    trials = load_trials(tokens, dataset)
    if len(trials.subjects) < int(ep["min_subjects"]):
        raise AemgError(f"{dataset}: LOSO needs at least {ep['min_subjects']} subjects with labelled events, found {trials.subjects}")
    methods = get_methods(list(ep["methods"]))
    needed = {m.features for m in methods}
    features = {}
    if "hudgins" in needed:
        features["hudgins"] = hudgins(trials.tokens)
    if "aemg_embedding" in needed:
        from aemg.model import embed_tokens
        from aemg.model.stage import check_no_leak
        from aemg.model.store_io import load_tokenset

        check_no_leak(model_dir, dataset, trials.subjects)
        features["aemg_embedding"] = embed_tokens(model_dir, load_tokenset(tokens, dataset, trials.event_index))
    return run_loso(trials, methods, features, int(ep["seed"]))
