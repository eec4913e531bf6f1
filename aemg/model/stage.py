"""The pretrain stage: one model per (evaluated dataset, seed), trained without that dataset.

Leave-one-dataset-out keeps every test subject out of every fitted stage, including the
self-supervised one; ``manifest.json`` records what each model saw so evaluation can prove it.
Each seed of ``pretrain.seeds`` draws its own subject split, patch cap, initialisation,
masks, dropout, batch order and rotations, so that a score can be judged against the spread
over seeds; models live in :func:`model_dir`.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from aemg.errors import AemgError
from aemg.model.config import preset
from aemg.model.data import TokenSet
from aemg.model.distributed import current
from aemg.model.store_io import pretraining_sets, signal_kind
from aemg.model.train import pretrain
from aemg.store import list_groups

log = logging.getLogger(__name__)

SCALAR_METRICS = (
    "codebook_usage",
    "codebook_perplexity",
    "reconstruction_error",
    "masked_token_accuracy",
    "masked_token_baseline_accuracy",
)


def model_dir(root: Path, dataset: str, seed: int) -> Path:
    """Folder of the model pre-trained without ``dataset`` with ``seed``:
    ``<root>/<dataset>/seed<seed>`` (``root`` is ``paths.models`` or ``paths.models_fixedwin``)."""
    return Path(root) / dataset / f"seed{int(seed)}"


def seeds_of(pp: dict[str, Any]) -> list[int]:
    """``pretrain.seeds`` as ints, checked: one model is trained per seed."""
    seeds = [int(s) for s in pp["seeds"]]
    if not seeds or len(set(seeds)) != len(seeds):
        raise AemgError(f"pretrain.seeds={pp['seeds']!r}: give one or more distinct integers, e.g. [0, 1, 2]")
    return seeds


def train_model(train_sets: list[TokenSet], heldout_sets: list[TokenSet], pp: dict[str, Any], seed: int,
                out_dir: Path, device: str | None = None, resume: bool = False,
                progress: bool = True) -> dict[str, Any]:
    """:func:`aemg.model.pretrain` with the ``pretrain`` params (preset, overrides, rotation,
    threads, budget) and ``seed``; shared by this stage and the fixed-window ablation."""
    overrides = {"seed": int(seed), "rotation_deg": float(pp["augment"]["rotation_deg"]), **pp["overrides"]}
    cfg = preset(pp["preset"], **overrides)
    out_dir.mkdir(parents=True, exist_ok=True)
    return pretrain(train_sets, heldout_sets, cfg, out_dir, device=device, resume=resume, progress=progress,
                    num_threads=int(pp["num_threads"]), budget_s=float(pp["budget_s"]) or None)


def datasets_to_model(tokens_store: Path, params: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(datasets in the token store, evaluated datasets among them: one model each)."""
    sources = list_groups(tokens_store)
    return sources, [d for d in params["evaluate"]["datasets"] if d in sources]


def pretrain_without(
    tokens_store: Path,
    out_dir: Path,
    evaluated: str,
    sources: list[str],
    pp: dict[str, Any],
    seed: int,
    device: str | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Pre-train the model of ``evaluated`` with ``seed`` into ``out_dir`` (see :func:`model_dir`) on
    the other ``sources`` (see :func:`pretraining_sources`); returns its scalar metrics, budget
    record and history."""
    chosen, provenance = pretraining_sources(tokens_store, evaluated, sources, pp)
    train_sets, heldout_sets, seen = [], [], {}
    for dataset in chosen:
        train, heldout = pretraining_sets(tokens_store, dataset, float(pp["heldout_fraction"]),
                                          int(pp["max_patches_per_dataset"]), int(seed))
        if train.n_events + heldout.n_events == 0:
            continue
        train_sets.append(train)
        if len(heldout.tokens):
            heldout_sets.append(heldout)
        seen[dataset] = sorted(set(train.subject.tolist()) | set(heldout.subject.tolist()))
    if not train_sets or not heldout_sets:
        raise AemgError(
            f"{evaluated}: no other dataset to pre-train on (token store has {sources}); "
            "leave-one-dataset-out needs at least two tokenized datasets"
        )
    metrics = train_model(train_sets, heldout_sets, pp, seed, out_dir, device=device, resume=resume)
    if current().is_main:
        manifest = {"evaluated_dataset": evaluated, "preset": pp["preset"], "seed": int(seed),
                    "subjects_seen": seen} | provenance
        (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return ({k: metrics[k] for k in SCALAR_METRICS}
            | {"num_threads": metrics["num_threads"], "budget": metrics["budget"], "history": metrics.get("history", {})})


def pretraining_sources(tokens_store: Path, evaluated: str, sources: list[str], pp: dict[str, Any]
                        ) -> tuple[list[str], dict[str, Any]]:
    """(datasets to pre-train on, what the manifest records about the choice).

    Leaves out ``evaluated`` and ``pretrain.exclude_datasets``; with ``pretrain.match_signal``
    also every dataset whose ``signal`` kind (events attr) differs from the evaluated one's, so
    envelopes never silently join a raw-EMG model. When that leaves nothing (no other dataset of
    the kind), it falls back to all the others, records ``signal_mismatch: true`` and warns.
    """
    others = [d for d in sources if d != evaluated]
    excluded = {d: "pretrain.exclude_datasets" for d in others if d in pp.get("exclude_datasets", [])}
    candidates = [d for d in others if d not in excluded]
    kind = signal_kind(tokens_store, evaluated) if evaluated in sources else None
    kinds = {d: signal_kind(tokens_store, d) for d in candidates}
    info: dict[str, Any] = {"signal": kind, "signal_kinds": kinds, "signal_mismatch": False}
    if not pp.get("match_signal", True) or kind is None:
        return candidates, info | {"excluded": excluded}
    same = [d for d in candidates if kinds[d] == kind]
    if not same:
        log.warning("%s: no other dataset has signal %r (sources: %s); pre-training on them anyway "
                    "(signal_mismatch in manifest.json)", evaluated, kind, kinds)
        return candidates, info | {"excluded": excluded, "signal_mismatch": True}
    mismatched = {d: f"signal {kinds[d]!r} != {kind!r} (pretrain.match_signal)" for d in candidates if d not in same}
    if mismatched:
        log.info("%s: pre-training without %s", evaluated, mismatched)
    return same, info | {"excluded": excluded | mismatched}


def history_records(history: dict[str, dict[str, list[float]]]) -> dict[str, list[dict[str, Any]]]:
    """Per-epoch records of one model's ``pretrain`` history, one list per stage (``vq``, ``mtm``).

    ``pretrain`` keeps columns (``{"vq": {"epoch": [...], "train_loss": [...], ...}}``); ``dvc
    plots`` needs rows. Each record carries ``epoch`` and ``stage``, the training ``loss``, and
    the held-out metrics under the names ``metrics/pretrain.json`` uses (``reconstruction_error``,
    ``codebook_usage``, ``codebook_perplexity`` for vq; ``masked_token_accuracy``,
    ``masked_token_baseline_accuracy``, ``masked_token_loss`` for mtm), then throughput.
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for stage, columns in history.items():
        names = {"epoch": "epoch", "train_loss": "loss"}
        names |= {k: k.removeprefix("heldout_") for k in columns if k not in names}
        n = len(columns.get("epoch", []))
        out[stage] = [
            {"epoch": int(columns["epoch"][i]), "stage": stage}
            | {new: columns[old][i] for old, new in names.items() if old != "epoch"}
            for i in range(n)
        ]
    return out


def _mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def aggregate(per_model: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """Each scalar metric as mean ± sd over seeds, per evaluated dataset and overall.

    ``per_model[dataset][seed]`` holds one model's metrics. Overall, ``<metric>`` is the mean
    over datasets and seeds, and ``<metric>_sd`` the sd over seeds of the per-seed mean over
    datasets: the noise against which a difference between two configurations is judged.
    Per dataset, ``models[dataset]`` has ``<metric>``, ``<metric>_sd`` and every seed's metrics
    (with its thread count and budget record) under ``seeds["seed<k>"]``.
    """
    seeds = sorted({seed for runs in per_model.values() for seed in runs})
    out: dict[str, Any] = {"seeds": seeds, "models": {}}
    for k in SCALAR_METRICS:
        per_seed = [np.mean([runs[s][k] for runs in per_model.values() if s in runs]) for s in seeds]
        out[k] = float(np.mean([runs[s][k] for runs in per_model.values() for s in runs]))
        out[f"{k}_sd"] = _mean_sd(per_seed)[1]
    for dataset, runs in per_model.items():
        entry: dict[str, Any] = {}
        for k in SCALAR_METRICS:
            entry[k], entry[f"{k}_sd"] = _mean_sd([m[k] for m in runs.values()])
        entry["seeds"] = {f"seed{s}": {k: v for k, v in m.items() if k != "history"} for s, m in sorted(runs.items())}
        out["models"][dataset] = entry
    return out


def write_metrics(metrics_dir: Path, per_model: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """``pretrain.json`` (see :func:`aggregate`) and the per-epoch curves for ``dvc plots``,
    ``pretrain_history/<stage>/<evaluated dataset>/seed<k>.json`` (see :func:`history_records`).

    Returns the aggregate; ``per_model[dataset][seed]`` entries may carry ``history``.
    """
    metrics_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(metrics_dir / "pretrain_history", ignore_errors=True)  # no curve of a dropped model
    for dataset, runs in per_model.items():
        for seed, m in runs.items():
            for stage, records in history_records(m.get("history", {})).items():
                plot = model_dir(metrics_dir / "pretrain_history" / stage, dataset, seed).with_suffix(".json")
                plot.parent.mkdir(parents=True, exist_ok=True)
                plot.write_text(json.dumps(records, indent=1))
    summary = aggregate(per_model)
    (metrics_dir / "pretrain.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    return summary


def pretrain_all(tokens_store: Path, models_root: Path, params: dict[str, Any], device: str | None = None,
                 resume: bool = False,
                 run: Callable[..., dict[str, Any]] | None = None) -> dict[str, dict[int, dict[str, Any]]]:
    """One model per (evaluated dataset, seed) in :func:`model_dir`; ``run`` (default
    :func:`pretrain_without`, same arguments) lets a flow wrap each model in a task."""
    sources, evaluated = datasets_to_model(tokens_store, params)
    if not evaluated:
        raise AemgError(
            f"{tokens_store}: none of evaluate.datasets {params['evaluate']['datasets']} is tokenized "
            f"(found {sources}). Fix: run `aemg tokenize` first."
        )
    run = run or pretrain_without
    pp = params["pretrain"]
    return {d: {s: run(tokens_store, model_dir(models_root, d, s), d, sources, pp, s, device=device, resume=resume)
                for s in seeds_of(pp)}
            for d in evaluated}


def check_no_leak(model_dir: Path, dataset: str, test_subjects: list[str]) -> None:
    """Fail if any test subject of ``dataset`` was seen by the model in ``model_dir``."""
    manifest = json.loads((model_dir / "manifest.json").read_text())
    seen = set(manifest["subjects_seen"].get(dataset, []))
    leaked = sorted(seen & set(test_subjects))
    if leaked:
        raise AemgError(f"{dataset}: leak check failed: test subjects {leaked} were seen in pre-training ({model_dir})")
