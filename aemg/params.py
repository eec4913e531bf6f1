"""Pipeline parameters: embedded defaults, overridden section by section by ``params.yaml``.

DVC tracks the sections of ``params.yaml`` each stage reads, so a value lives in exactly one
place. Unknown keys fail loudly: a typo must not silently fall back to a default.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from aemg.errors import AemgError

DEFAULTS: dict[str, Any] = {
    "datasets": ["uci-emg-gestures", "myo-armband-cote-allard", "flexemg", "unibo-inail"],
    "subjects": {},
    "paths": {
        "raw": "data/raw",
        "harmonized": "data/harmonized.zarr",
        "tokens": "data/tokens.zarr",
        "models": "models",
        "models_fixedwin": "models-fixedwin",
        "models_levers": "models-levers",
        "metrics": "metrics",
        "reports": "reports",
    },
    "harmonize": {
        "sfreq": 200.0,
        "bandpass": [10.0, 95.0],
        "filter_order": 4,
        "notch_hz": 50.0,
        "notch_q": 30.0,
        "nan_policy": "raise",
        "chunk_samples": 262144,
        "files_in_flight": 8,
        "virtual_channels": None,
    },
    "schedule": {"harmonize_cron": "0 3 * * *"},
    "tokenize": {
        "detector": "aemg_energy",
        "window_s": 0.25,
        "stride_s": 0.05,
        "baseline_fraction": 0.1,
        "threshold_std": 0.5,
        "token_len": 50,
        "max_order": 15,
        "max_tokens_per_sentence": 256,
        "min_gap_s": 0.0,
        "hysteresis": {"floor_quantile": 0.2, "floor_scope": "calibration", "calibration_s": 20.0,
                       "on_ratio": 3.0, "off_ratio": 1.8},
        "states": {
            "k": 13,
            "window_s": 0.05,
            "stride_s": 0.025,
            "band": [20.0, 450.0],
            "filter_order": 4,
            "train_subjects_fraction": 0.8,
            "train_subjects": {},
            "seed": 0,
            "zc_threshold": 0.0,
            "ssc_threshold": 0.0,
            "wamp_threshold": 0.5,
            "psr_halfwidth_hz": 20.0,
            "max_train_rows": 50000,
            "block_samples": 131072,
            "filter_margin_s": 2.0,
            "select_k": [2, 25],
            "report_max_rows": 20000,
        },
        "recordings_per_task": 64,
        "token_chunk_mb": 2.0,
    },
    "pretrain": {
        "preset": "cpu-small",
        "overrides": {},
        "exclude_datasets": [],
        "match_signal": True,  # pre-train only on datasets of the evaluated one's signal kind
        "heldout_fraction": 0.2,
        "max_patches_per_dataset": 8000,  # 0 = no cap (GPU presets)
        "seeds": [0, 1, 2],
        "num_threads": 1,
        "budget_s": 0,
        "augment": {"rotation_deg": 180.0},
    },
    "evaluate": {
        "datasets": ["myo-armband-cote-allard", "uci-emg-gestures", "unibo-inail", "flexemg"],
        "methods": [
            "lda", "svm", "cnn", "state_svm", "state_vit", "transformer_scratch",
            "aemg_probe", "aemg_finetune", "aemg_probe_fixedwin",
        ],
        "min_subjects": 3,
        "grid": "demo",
        "grids": {
            "demo": {"methods": ["lda", "svm", "aemg_probe"], "max_folds": 5, "few_shot_max_subjects": 8,
                     "few_shot_methods": ["lda", "svm", "aemg_probe"], "few_shot_fractions": [0.05]},
            "full": {
                "methods": ["lda", "svm", "cnn", "state_svm", "state_vit", "transformer_scratch",
                            "aemg_probe", "aemg_finetune", "aemg_probe_fixedwin"],
                "few_shot_methods": ["lda", "svm", "state_svm", "aemg_probe"],
                "few_shot_fractions": [0.01, 0.05, 0.1, 0.2, 0.4, 0.8],
            },
        },
        "few_shot_methods": [],
        "few_shot_fractions": [0.01, 0.05, 0.1, 0.2, 0.4, 0.8],
        "few_shot_pool": 0.8,
        "few_shot_max_repeat": 20,
        "few_shot_max_subjects": None,
        "torch_epochs": 15,
        "transformer_epochs": 10,
        "transformer_patch_budget": 200000,
        "finetune_lr_scale": 0.3,
        "finetune_rotation_deg": 180.0,
        "aemg_pool": "channels",
        "probe": "lda",
        "probe_components": 128,
        "state_k": 13,
        "state_window_s": 0.05,
        "state_stride_s": 0.025,
        "state_wamp_threshold": 0.05,
        "state_kmeans_samples": 50000,
        "device": None,
        "num_threads": 1,
        "target_adaptation": ["none", "unlabelled"],
        "max_folds": None,
        "inner_cv": {
            "n_splits": 3,
            "max_rows": 3000,
            "methods": ["lda", "svm", "state_svm", "aemg_probe", "aemg_probe_fixedwin"],
            "grids": {
                "lda": {"lineardiscriminantanalysis__solver": ["lsqr"],
                        "lineardiscriminantanalysis__shrinkage": [None, "auto"]},
                "svm": {"svc__C": [0.1, 1.0, 10.0]},
                "state_svm": {"svc__C": [0.1, 1.0, 10.0]},
                "aemg_probe": {"lineardiscriminantanalysis__shrinkage": ["auto", 0.1, 0.5]},
                "aemg_probe_fixedwin": {"lineardiscriminantanalysis__shrinkage": ["auto", 0.1, 0.5]},
                "aemg_finetune": {"lr": [3e-4, 1e-3], "epochs": [5, 10]},
                "transformer_scratch": {"lr": [3e-4, 1e-3], "epochs": [5, 10]},
                "cnn": {"lr": [1e-3, 3e-3]},
            },
        },
        "cross_session": {
            "train_session": "training0",
            "test_sessions": ["Test0", "Test1"],
            "methods": ["lda", "svm", "cnn", "aemg_probe", "aemg_finetune"],
        },
    },
    "levers": {
        "methods": ["aemg_probe"],
        "run": ["no_inner_cv"],
        "variants": {
            "no_inner_cv": {"evaluate": {"inner_cv": {"methods": []}}},
            "mean_pool": {"evaluate": {"aemg_pool": "mean"}},
            "no_amplitude_embedding": {"pretrain": {"overrides": {"amplitude_embedding": False}}},
            "uncapped": {"pretrain": {"max_patches_per_dataset": 0}},
            "no_rotation": {"pretrain": {"augment": {"rotation_deg": 0.0}}, "evaluate": {"finetune_rotation_deg": 0.0}},
        },
    },
}


# Mappings whose entries users name themselves: an entry is added or replaced whole, and the
# code that reads it checks it (evaluation grids: aemg.evaluate.settings.resolve_grid; inner-CV
# parameter grids: scikit-learn checks their names when the search runs).
OPEN_MAPPING = (".evaluate.grids", ".evaluate.inner_cv.grids", ".levers.variants")


def _merge(base: dict[str, Any], override: Mapping[str, Any], where: str) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if key not in base:
            raise AemgError(f"{where}: unknown parameter {key!r}; valid: {', '.join(base)}")
        if f"{where}.{key}".endswith(OPEN_MAPPING) and isinstance(value, Mapping):
            out[key] = {**base[key], **copy.deepcopy(dict(value))}
        elif isinstance(base[key], dict) and base[key] and isinstance(value, Mapping):
            out[key] = _merge(base[key], value, f"{where}.{key}")
        else:
            out[key] = copy.deepcopy(value)
    return out


def with_overrides(overrides: Mapping[str, Any], where: str = "overrides") -> dict[str, Any]:
    """The defaults with ``overrides`` merged in, checked like a params file."""
    return _merge(DEFAULTS, overrides, where)


def load_params(path: Path | str | None = None) -> dict[str, Any]:
    """Defaults merged with ``path`` (default ``params.yaml`` when it exists)."""
    path = Path("params.yaml") if path is None else Path(path)
    if not path.exists():
        return copy.deepcopy(DEFAULTS)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise AemgError(f"{path}: invalid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(data, Mapping):
        raise AemgError(f"{path}: must be a YAML mapping of sections")
    return with_overrides(data, str(path))


def params_hash(section: Mapping[str, Any]) -> str:
    """Stable short hash of a parameter section, recorded in store attributes."""
    blob = json.dumps(section, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def stage_paths(params: Mapping[str, Any], overrides: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """``params["paths"]`` with CLI overrides: folders as Paths, an ``s3://`` store URL kept as text
    (a Path would fold its ``//``)."""
    chosen = {k: (overrides or {}).get(k) or v for k, v in params["paths"].items()}
    return {k: str(v) if str(v).startswith("s3://") else Path(v) for k, v in chosen.items()}
