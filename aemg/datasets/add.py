"""``aemg datasets add``: validate a spec, install it in ``datasets.d/``, announce it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from aemg.datasets.registry import all_specs, user_specs_dir
from aemg.datasets.spec import load_spec
from aemg.errors import DatasetError

EVENT_NAME = "aemg.dataset.added"


def add_spec(path: Path, emit: bool = True) -> Path:
    """Copy a valid spec into ``datasets.d/``; emit ``aemg.dataset.added`` when a server listens.

    The event is what the ``harmonize/scheduled`` deployment's trigger answers, so a new
    dataset is harmonized without waiting for the cron schedule.
    """
    spec = load_spec(path)
    existing = all_specs()
    if spec.id in existing:
        raise DatasetError(spec.id, f"id already registered by {existing[spec.id].source}", file=str(path))
    target_dir = user_specs_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"{spec.id}.yaml"
    shutil.copyfile(path, target)
    if emit and os.environ.get("PREFECT_API_URL"):
        from prefect.events import emit_event

        emit_event(event=EVENT_NAME, resource={"prefect.resource.id": f"aemg.dataset.{spec.id}"}, payload={"spec": str(target)})
    return target
