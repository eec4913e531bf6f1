"""The pretrain stage: one model per evaluated dataset, trained without that dataset.

Leave-one-dataset-out keeps every test subject out of every fitted stage, including the
self-supervised one; ``manifest.json`` records what each model saw so evaluation can prove it.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from aemg.errors import AemgError
from aemg.model.config import preset
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
    device: str | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Pre-train the model for ``evaluated`` on the other ``sources`` (see :func:`pretraining_sources`)."""
    chosen, provenance = pretraining_sources(tokens_store, evaluated, sources, pp)
    train_sets, heldout_sets, seen = [], [], {}
    for dataset in chosen:
        train, heldout = pretraining_sets(tokens_store, dataset, float(pp["heldout_fraction"]),
                                          int(pp["max_patches_per_dataset"]), int(pp["seed"]))
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
    cfg = preset(pp["preset"], **{"seed": int(pp["seed"]), **pp["overrides"]})
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = pretrain(train_sets, heldout_sets, cfg, out_dir, device=device, resume=resume)
    if current().is_main:
        manifest = {"evaluated_dataset": evaluated, "preset": pp["preset"], "subjects_seen": seen} | provenance
        (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return {k: metrics[k] for k in SCALAR_METRICS} | {"history": metrics.get("history", {})}


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


def aggregate(per_model: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean of each scalar metric over the per-dataset models, plus the models themselves."""
    means = {k: float(np.mean([m[k] for m in per_model.values()])) for k in SCALAR_METRICS}
    return means | {"models": {d: {k: m[k] for k in SCALAR_METRICS} for d, m in per_model.items()}}


def write_metrics(metrics_dir: Path, per_model: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``pretrain.json`` (see :func:`aggregate`) and the per-epoch curves for ``dvc plots``,
    ``pretrain_history/<stage>/<evaluated dataset>.json`` (see :func:`history_records`).

    Returns the aggregate; ``per_model`` entries may carry ``history`` beside the metrics.
    """
    metrics_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(metrics_dir / "pretrain_history", ignore_errors=True)  # no curve of a dropped dataset
    for dataset, m in per_model.items():
        for stage, records in history_records(m.get("history", {})).items():
            plot = metrics_dir / "pretrain_history" / stage / f"{dataset}.json"
            plot.parent.mkdir(parents=True, exist_ok=True)
            plot.write_text(json.dumps(records, indent=1))
    summary = aggregate(per_model)
    (metrics_dir / "pretrain.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    return summary


def check_no_leak(model_dir: Path, dataset: str, test_subjects: list[str]) -> None:
    """Fail if any test subject of ``dataset`` was seen by the model in ``model_dir``."""
    manifest = json.loads((model_dir / "manifest.json").read_text())
    seen = set(manifest["subjects_seen"].get(dataset, []))
    leaked = sorted(seen & set(test_subjects))
    if leaked:
        raise AemgError(f"{dataset}: leak check failed: test subjects {leaked} were seen in pre-training ({model_dir})")
