"""Evaluate one dataset: trials, unfitted features per method family, leak check, LOSO + few-shot."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from aemg.errors import AemgError
from aemg.evaluate.features import hudgins, state_window_samples, trial_window_features
from aemg.evaluate.loso import run_folds
from aemg.evaluate.methods import Method, MethodContext, get_methods
from aemg.evaluate.settings import ep_get
from aemg.evaluate.trials import Trials, load_trials


def compute_features(trials: Trials, needed: set[str], ep: dict[str, Any], model_dir: Path | None,
                     fixedwin_dir: Path | None = None) -> dict[str, np.ndarray]:
    """Every feature array the methods read; none is fitted on labels or on other subjects.

    The AEMG embeddings come from a model pre-trained without this dataset; the caller must run
    the leak check before using them (``evaluate_dataset`` does, once for all subjects and again
    in every fold).
    """
    features: dict[str, np.ndarray] = {}
    if "hudgins" in needed:
        features["hudgins"] = hudgins(trials.tokens)
    if "tokens" in needed:
        features["tokens"] = trials.tokens
    if "trial_index" in needed:
        features["trial_index"] = np.arange(len(trials))
    if "state_windows" in needed:
        window, stride = state_window_samples(trials.sfreq, float(ep_get(ep, "state_window_s")), float(ep_get(ep, "state_stride_s")))
        features["state_windows"] = trial_window_features(
            trials.tokens, trials.sfreq, window, stride, float(ep_get(ep, "state_wamp_threshold"))
        )
    if "aemg_embedding_rms" in needed:
        needed = needed | {"aemg_embedding"}
    for key, directory in (("aemg_embedding", model_dir), ("aemg_embedding_fixedwin", fixedwin_dir)):
        if key in needed:
            from aemg.model import embed_tokens
            from aemg.model.stage import check_no_leak

            if directory is None or not (Path(directory) / "mtm.pt").exists():
                how = "run `aemg ablation`" if key.endswith("fixedwin") else "run `aemg pretrain`"
                raise AemgError(f"{trials.dataset}: {key} needs a pre-trained model in {directory}; {how} first")
            check_no_leak(Path(directory), trials.dataset, trials.subjects)
            features[key] = embed_tokens(Path(directory), trials.tokenset(), device=ep_get(ep, "device"),
                                         pool=ep_get(ep, "aemg_pool"))
    if "aemg_embedding_rms" in needed:
        log_rms = np.log(np.sqrt((trials.tokens.astype(np.float64) ** 2).mean(axis=2)) + 1e-6).astype(np.float32)
        features["aemg_embedding_rms"] = np.concatenate([features["aemg_embedding"], log_rms], axis=1)
    return features


def _model_dir_of(method: Method, model_dir: Path | None, fixedwin_dir: Path | None) -> Path | None:
    return fixedwin_dir if method.features.endswith("fixedwin") else model_dir


def make_leak_check(dataset: str, model_dir: Path | None, fixedwin_dir: Path | None = None) -> Callable[[Method, str], dict[str, Any]]:
    """Per fold and pre-trained method: ``check_no_leak`` on the model it uses; returns what the
    model's manifest says it saw (recorded in the fold manifest)."""
    from aemg.model.stage import check_no_leak

    def check(method: Method, test_subject: str) -> dict[str, Any]:
        directory = _model_dir_of(method, model_dir, fixedwin_dir)
        if directory is None or not (Path(directory) / "manifest.json").exists():
            raise AemgError(f"{dataset}: {method.name}: no manifest.json in {directory}; cannot prove the model is leak-free")
        check_no_leak(Path(directory), dataset, [test_subject])
        manifest = json.loads((Path(directory) / "manifest.json").read_text())
        return {"model_dir": str(directory), "subjects_seen": manifest.get("subjects_seen", {}), "leak_check": "passed"}

    return check


def evaluate_trials(trials: Trials, ep: dict[str, Any], model_dir: Path | None = None,
                    fixedwin_dir: Path | None = None, log: Callable[[str], None] | None = None,
                    on_fold: Callable[[int], None] | None = None) -> dict[str, Any]:
    """LOSO (+ few-shot) of ``ep['methods']`` on ready trials; see :func:`run_folds`."""
    if len(trials.subjects) < int(ep.get("min_subjects", 3)):
        raise AemgError(f"{trials.dataset}: LOSO needs at least {ep.get('min_subjects', 3)} subjects with labelled events, found {trials.subjects}")
    methods = get_methods(list(ep["methods"]))
    few_shot = [m for m in ep_get(ep, "few_shot_methods") if m in {x.name for x in methods}]
    features = compute_features(trials, {m.features for m in methods}, ep, model_dir, fixedwin_dir)
    ctx = MethodContext(seed=int(ep.get("seed", 0)), ep=ep, trials=trials, model_dir=model_dir)
    result = run_folds(
        trials, methods, features, ctx,
        few_shot_methods=few_shot,
        fractions=[float(f) for f in ep_get(ep, "few_shot_fractions")],
        pool_fraction=float(ep_get(ep, "few_shot_pool")),
        max_repeat=int(ep_get(ep, "few_shot_max_repeat")),
        leak_check=make_leak_check(trials.dataset, model_dir, fixedwin_dir),
        log=log,
        on_fold=on_fold,
    )
    return result.to_dict()


def evaluate_dataset(tokens: Path, model_dir: Path, dataset: str, ep: dict[str, Any], harmonized: Path | None = None,
                     log: Callable[[str], None] | None = None, fixedwin_dir: Path | None = None) -> dict[str, Any]:
    """Trials of ``dataset`` from the token store, evaluated with the model in ``model_dir``
    (and, for the fixed-window ablation, the one in ``fixedwin_dir``)."""
    import torch

    from aemg.runtime import cpu_threads, resolve_threads

    # The thread count decides float results (reduction order), so it comes from params
    # (evaluate.num_threads, or AEMG_NUM_THREADS), never from the machine's load.
    with cpu_threads(resolve_threads(ep_get(ep, "num_threads"))):
        trials = load_trials(tokens, dataset, harmonized)
        if log:
            log(f"{dataset}: {len(trials)} trials, {len(trials.subjects)} subjects, {torch.get_num_threads()} thread(s)")
        return evaluate_trials(trials, ep, Path(model_dir), fixedwin_dir, log)
