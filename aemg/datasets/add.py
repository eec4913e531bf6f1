"""``aemg datasets add``: validate a spec, install it in ``datasets.d/``, announce it.

The announcement is the Prefect event ``aemg.dataset.added`` (resource
``aemg.dataset.<id>``); the ``harmonize/scheduled`` deployment's trigger answers it, so a new
dataset is harmonized without waiting for the cron schedule. The event is only sent when a
Prefect server is configured (``PREFECT_API_URL``, from the environment or the active profile):
an ephemeral server would die with this process and nobody would hear it. If the server does
not answer, the spec stays installed and a warning says so; the next scheduled run picks it up.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from aemg.datasets.registry import all_specs, user_specs_dir
from aemg.datasets.spec import load_spec
from aemg.errors import DatasetError

EVENT_NAME = "aemg.dataset.added"
EMIT_TIMEOUT_S = 10.0
log = logging.getLogger(__name__)


def add_spec(path: Path, emit: bool = True) -> Path:
    """Copy a valid spec into ``datasets.d/<id>.yaml``; emit ``aemg.dataset.added`` when a server listens.

    Every mistake of an invalid spec is reported in one :class:`DatasetError`; nothing is
    copied then. An id that is already registered (built-in or in ``datasets.d/``) is refused.
    """
    path = Path(path)
    spec = load_spec(path)
    existing = all_specs()
    if spec.id in existing:
        raise DatasetError(
            spec.id,
            f"id already registered by {existing[spec.id].source}",
            file=str(path),
            fix="give the new dataset its own id (or edit the registered spec in place)",
        )
    target_dir = user_specs_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"{spec.id}.yaml"
    # Atomic: a harmonize run listing datasets.d/ never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=target_dir, prefix=f".{spec.id}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(path, tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if emit:
        announce(spec.id, target)
    return target


def api_url() -> str | None:
    """The configured Prefect API (environment or profile), or None for ephemeral mode."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def announce(dataset_id: str, spec_path: Path) -> bool:
    """Emit ``aemg.dataset.added`` and wait until it is delivered; False (and a warning) if not."""
    url = api_url()
    if not url:
        return False
    from prefect.client.orchestration import get_client
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    with get_client(sync_client=True) as client:
        problem = client.api_healthcheck()
    if problem is not None:
        log.warning(
            "aemg: warning: %s added, but no Prefect server answers at %s (%s); "
            "the next scheduled harmonize run will pick it up",
            dataset_id,
            url,
            problem,
        )
        return False
    event = emit_event(
        event=EVENT_NAME,
        resource={"prefect.resource.id": f"aemg.dataset.{dataset_id}", "prefect.resource.name": dataset_id},
        payload={"dataset": dataset_id, "spec": str(Path(spec_path).resolve())},
    )
    # The events worker sends in the background; a CLI process must flush before it exits.
    # (Quiet its "Still processing items: 1 items remaining..." while it does.)
    worker_log = logging.getLogger(EventsWorker.__name__)
    level = worker_log.level
    worker_log.setLevel(logging.ERROR)
    try:
        EventsWorker.drain_all(timeout=EMIT_TIMEOUT_S)
    finally:
        worker_log.setLevel(level)
    return event is not None
