"""Evaluate one dataset: trials, unfitted features per method family, leak check, LOSO + few-shot."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aemg.errors import AemgError
from aemg.evaluate.adaptation import TARGET_ADAPTATION, FoldInputSource
from aemg.evaluate.features import hudgins, state_window_samples, trial_window_features
from aemg.evaluate.loso import InnerCV, LosoResult, run_cross_session, run_folds
from aemg.evaluate.methods import Method, MethodContext, get_methods
from aemg.evaluate.settings import ep_get
from aemg.evaluate.trials import Trials, load_trials


def compute_features(trials: Trials, needed: set[str], ep: dict[str, Any], model_dir: Path | None,
                     fixedwin_dir: Path | None = None) -> dict[str, np.ndarray]:
    """Every feature array the methods read from ``trials`` (already scaled for the fold); none
    is fitted on labels or on other subjects.

    The AEMG embeddings come from a model pre-trained without this dataset; the leak check runs
    here for all subjects and again in every fold.
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


ModelDirs = Callable[[int], Path | None]


def _dirs(d: Path | ModelDirs | None) -> ModelDirs:
    """A model directory per pre-training seed; a plain path serves every seed."""
    return d if callable(d) else (lambda seed: None if d is None else Path(d))


def make_leak_check(dataset: str, model_dirs: ModelDirs, fixedwin_dirs: ModelDirs | None = None
                    ) -> Callable[[Method, str, int], dict[str, Any]]:
    """Per fold, seed and pre-trained method: ``check_no_leak`` on the model it uses; returns what
    the model's manifest says it saw (recorded in the fold manifest)."""
    from aemg.model.stage import check_no_leak

    def check(method: Method, test_subject: str, seed: int) -> dict[str, Any]:
        dirs = fixedwin_dirs if method.features.endswith("fixedwin") and fixedwin_dirs else model_dirs
        directory = dirs(seed)
        if directory is None or not (Path(directory) / "manifest.json").exists():
            raise AemgError(f"{dataset}: {method.name}: no manifest.json in {directory}; cannot prove the model is leak-free")
        check_no_leak(Path(directory), dataset, [test_subject])
        manifest = json.loads((Path(directory) / "manifest.json").read_text())
        return {"model_dir": str(directory), "subjects_seen": manifest.get("subjects_seen", {}), "leak_check": "passed"}

    return check


def inner_cv_of(ep: dict[str, Any]) -> InnerCV | None:
    """``evaluate.inner_cv`` as an :class:`InnerCV` (None when it names no method)."""
    cfg = ep_get(ep, "inner_cv") or {}
    grids = {m: dict(g) for m, g in (cfg.get("grids") or {}).items() if m in set(cfg.get("methods") or [])}
    max_rows = cfg.get("max_rows")
    return InnerCV(grids=grids, n_splits=int(cfg.get("n_splits", 3)),
                   max_rows=int(max_rows) if max_rows else None) if grids else None


def protocols_of(ep: dict[str, Any]) -> list[str]:
    """The LOSO protocols ``evaluate.target_adaptation`` asks for (strict zero-shot first)."""
    wanted = ep_get(ep, "target_adaptation")
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    unknown = [w for w in wanted if w not in TARGET_ADAPTATION]
    if unknown or not wanted:
        raise AemgError(f"evaluate.target_adaptation: {unknown or wanted}; valid: {', '.join(TARGET_ADAPTATION)}")
    return [TARGET_ADAPTATION[w] for w in TARGET_ADAPTATION if w in wanted]


def evaluate_trials(trials: Trials, ep: dict[str, Any], model_dir: Path | ModelDirs | None = None,
                    fixedwin_dir: Path | ModelDirs | None = None, log: Callable[[str], None] | None = None,
                    seeds: Sequence[int] = (0,)) -> dict[str, Any]:
    """LOSO of ``ep['methods']`` on raw trials under every protocol of ``evaluate.target_adaptation``
    (few-shot rows under strict zero-shot only), and the cross-session protocol where the trials
    have its sessions; see :func:`run_folds` and :func:`run_cross_session`."""
    if len(trials.subjects) < int(ep.get("min_subjects", 3)):
        raise AemgError(f"{trials.dataset}: LOSO needs at least {ep.get('min_subjects', 3)} subjects with labelled events, found {trials.subjects}")
    methods = get_methods(list(ep["methods"]))
    model_dirs, fixedwin_dirs = _dirs(model_dir), _dirs(fixedwin_dir)
    needed = {m.features for m in methods}

    def compute(scaled: Trials, keys: set[str], seed: int) -> dict[str, np.ndarray]:
        return compute_features(scaled, keys, ep, model_dirs(seed), fixedwin_dirs(seed))

    ctx = MethodContext(seed=int(seeds[0]), ep=ep, trials=trials, model_dir=model_dirs(int(seeds[0])))
    leak_check = make_leak_check(trials.dataset, model_dirs, fixedwin_dirs)
    few_shot = [m for m in ep_get(ep, "few_shot_methods") if m in {x.name for x in methods}]
    result = LosoResult()
    for protocol in protocols_of(ep):
        source = FoldInputSource(trials, compute, needed, protocol)
        result.extend(run_folds(
            trials, methods, source, ctx,
            few_shot_methods=few_shot if protocol == "zero_shot" else (),
            fractions=[float(f) for f in ep_get(ep, "few_shot_fractions")],
            pool_fraction=float(ep_get(ep, "few_shot_pool")),
            max_repeat=int(ep_get(ep, "few_shot_max_repeat")),
            seeds=seeds, inner_cv=inner_cv_of(ep), max_folds=ep_get(ep, "max_folds"),
            few_shot_max_subjects=ep_get(ep, "few_shot_max_subjects"), model_dirs=model_dirs,
            leak_check=leak_check,
            log=log,
        ))
    cs = ep_get(ep, "cross_session") or {}
    train_session, test_sessions = cs.get("train_session"), list(cs.get("test_sessions") or [])
    if train_session and (trials.session == train_session).any() and np.isin(trials.session, test_sessions).any():
        cs_methods = get_methods([m for m in cs.get("methods") or [] if m in {x.name for x in methods}])
        source = FoldInputSource(trials, compute, {m.features for m in cs_methods}, "cross_session", train_session)
        result.extend(run_cross_session(
            trials, cs_methods, source, ctx, train_session=train_session, test_sessions=test_sessions, seeds=seeds,
            model_dirs=model_dirs, leak_check=leak_check, log=log,
        ))
    return result.to_dict()


def evaluate_dataset(tokens: Path, model_dir: Path | ModelDirs, dataset: str, ep: dict[str, Any],
                     harmonized: Path | None = None, log: Callable[[str], None] | None = None,
                     fixedwin_dir: Path | ModelDirs | None = None, seeds: Sequence[int] = (0,)) -> dict[str, Any]:
    """Trials of ``dataset`` from the token store, evaluated with the model of each seed in
    ``model_dir`` (and, for the fixed-window ablation, those in ``fixedwin_dir``)."""
    import torch

    from aemg.runtime import cpu_threads, resolve_threads

    # The thread count decides float results (reduction order), so it comes from params
    # (evaluate.num_threads, or AEMG_NUM_THREADS), never from the machine's load.
    with cpu_threads(resolve_threads(ep_get(ep, "num_threads"))):
        trials = load_trials(tokens, dataset, harmonized)
        if log:
            log(f"{dataset}: {len(trials)} trials, {len(trials.subjects)} subjects, {torch.get_num_threads()} thread(s)")
        return evaluate_trials(trials, ep, model_dir, fixedwin_dir, log, seeds)
