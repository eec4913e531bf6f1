"""Where dataset specs come from: the built-in YAML files and a user's ``datasets.d/``."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from aemg.datasets.spec import DatasetSpec, load_spec
from aemg.errors import DatasetError
from aemg.vocabulary import GESTURES, register_user_gestures, user_gestures

BUILTIN_DIR = Path(__file__).parent / "builtin"


def user_specs_dir() -> Path:
    """``datasets.d/`` beside the working directory unless ``AEMG_DATASETS_D`` says otherwise."""
    return Path(os.environ.get("AEMG_DATASETS_D", "datasets.d"))


def user_vocabulary_path() -> Path:
    """The user vocabulary file, kept beside ``datasets.d/`` (the specs that declare its names)."""
    directory = user_specs_dir()
    return directory.parent / f"{directory.name}.gestures.yaml"


def gesture_codes() -> dict[str, int]:
    """Every gesture name a spec may map to: the shared vocabulary plus the user's own names."""
    return {**GESTURES, **user_gestures(user_vocabulary_path())}


@lru_cache(maxsize=1)
def _builtin_specs() -> dict[str, DatasetSpec]:
    return {spec.id: spec for spec in map(load_spec, sorted(BUILTIN_DIR.glob("*.yaml")))}


def user_spec_files(directory: Path | None = None) -> list[Path]:
    directory = user_specs_dir() if directory is None else directory
    return sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))


def all_specs(directory: Path | None = None) -> dict[str, DatasetSpec]:
    """Built-in specs plus user specs; a user spec may not silently replace a built-in one."""
    specs = dict(_builtin_specs())
    for path in user_spec_files(directory):
        spec = load_spec(path)
        if spec.id in specs:
            raise DatasetError(
                spec.id,
                f"id already defined by {specs[spec.id].source}",
                file=str(path),
                fix="give the new dataset its own id",
            )
        if spec.user_gestures:
            register_user_gestures(spec.user_gestures, user_vocabulary_path())
        specs[spec.id] = spec
    return specs


def get_spec(dataset_id: str, directory: Path | None = None) -> DatasetSpec:
    specs = all_specs(directory)
    try:
        return specs[dataset_id]
    except KeyError:
        raise DatasetError(
            dataset_id, f"unknown dataset. Available: {', '.join(sorted(specs))}"
        ) from None
