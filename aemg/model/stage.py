"""The pretrain stage: one model per evaluated dataset, trained without that dataset.

Leave-one-dataset-out keeps every test subject out of every fitted stage, including the
self-supervised one; ``manifest.json`` records what each model saw so evaluation can prove it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from aemg.errors import AemgError
from aemg.model.config import preset
from aemg.model.store_io import limit_patches, load_tokenset, split_by_subject
from aemg.model.train import pretrain

SCALAR_METRICS = (
    "codebook_usage",
    "codebook_perplexity",
    "reconstruction_error",
    "masked_token_accuracy",
    "masked_token_baseline_accuracy",
)


def pretrain_without(
    tokens_store: Path,
    out_dir: Path,
    evaluated: str,
    sources: list[str],
    pp: dict[str, Any],
    device: str | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    train_sets, heldout_sets, seen = [], [], {}
    for dataset in sources:
        if dataset == evaluated or dataset in pp["exclude_datasets"]:
            continue
        ts = load_tokenset(tokens_store, dataset)
        if len(ts.tokens) == 0:
            continue
        train, heldout = split_by_subject(ts, float(pp["heldout_fraction"]), int(pp["seed"]))
        train = limit_patches(train, int(pp["max_patches_per_dataset"]), int(pp["seed"]))
        heldout = limit_patches(heldout, int(pp["max_patches_per_dataset"]) // 4, int(pp["seed"]))
        train_sets.append(train)
        if len(heldout.tokens):
            heldout_sets.append(heldout)
        seen[dataset] = sorted(set(ts.subject.tolist()))
    if not train_sets or not heldout_sets:
        raise AemgError(
            f"{evaluated}: no other dataset to pre-train on (token store has {sources}); "
            "leave-one-dataset-out needs at least two tokenized datasets"
        )
    cfg = preset(pp["preset"], **{"seed": int(pp["seed"]), **pp["overrides"]})
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = pretrain(train_sets, heldout_sets, cfg, out_dir, device=device, resume=resume)
    manifest = {"evaluated_dataset": evaluated, "preset": pp["preset"], "subjects_seen": seen}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return {k: metrics[k] for k in SCALAR_METRICS} | {"history": metrics.get("history", {})}


def aggregate(per_model: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean of each scalar metric over the per-dataset models, plus the models themselves."""
    means = {k: float(np.mean([m[k] for m in per_model.values()])) for k in SCALAR_METRICS}
    return means | {"models": {d: {k: m[k] for k in SCALAR_METRICS} for d, m in per_model.items()}}


def check_no_leak(model_dir: Path, dataset: str, test_subjects: list[str]) -> None:
    """Fail if any test subject of ``dataset`` was seen by the model in ``model_dir``."""
    manifest = json.loads((model_dir / "manifest.json").read_text())
    seen = set(manifest["subjects_seen"].get(dataset, []))
    leaked = sorted(seen & set(test_subjects))
    if leaked:
        raise AemgError(f"{dataset}: leak check failed: test subjects {leaked} were seen in pre-training ({model_dir})")
