"""Serve the deployments declared in ``prefect.yaml`` from one process (``make serve``).

``python -m aemg.flows.serve`` registers every deployment of ``prefect.yaml`` on the server
named by ``PREFECT_API_URL`` and runs their flow runs as subprocesses of itself (cwd = the
directory it was started in, environment inherited, so ``AEMG_MIRROR`` set for ``make serve``
reaches every run). ``harmonize/scheduled`` gets the cron of ``params.yaml``
(``schedule.harmonize_cron``) and the event trigger of ``prefect.yaml``.

``python -m aemg.flows.serve --check [--wait SECONDS] [--pid PID]`` exits 0 once every
deployment is registered (and the scheduled one has its schedule and trigger); with ``--pid``
it gives up as soon as that process (the serve process) has died.

Deployments use *module* entrypoints (``aemg.flows.harmonize:harmonize_flow``), never file
paths: Prefect puts a file entrypoint's folder (``aemg/flows``) first on ``sys.path``, and
there ``aemg/flows/tokenize.py`` shadows the standard library's ``tokenize``, which breaks
every process Dask spawns from the flow run.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from aemg.params import load_params

PREFECT_YAML = Path("prefect.yaml")
SCHEDULED = "scheduled"


def declared_deployments(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    return yaml.safe_load(path.read_text())["deployments"]


def load_flow(entrypoint: str) -> Any:
    """``aemg.flows.harmonize:harmonize_flow`` (or ``aemg/flows/harmonize.py:...``) -> the flow."""
    module, name = entrypoint.rsplit(":", 1)
    if module.endswith(".py"):
        module = module.removesuffix(".py").replace("/", ".")
    return getattr(importlib.import_module(module), name)


def full_name(decl: dict[str, Any]) -> str:
    """``FLOW/DEPLOYMENT``, the name ``prefect deployment run`` needs."""
    return f"{load_flow(decl['entrypoint']).name}/{decl['name']}"


def build(decl: dict[str, Any], cron: str) -> Any:
    from prefect.deployments.runner import EntrypointType
    from prefect.events import DeploymentEventTrigger

    flow = load_flow(decl["entrypoint"])
    triggers = [
        DeploymentEventTrigger(
            enabled=t.get("enabled", True),
            expect=set(t["expect"]),
            match=t.get("match", {}),
            parameters=decl.get("parameters") or None,
        )
        for t in decl.get("triggers", [])
    ]
    return flow.to_deployment(
        name=decl["name"],
        description=decl.get("description"),
        parameters=decl.get("parameters") or {},
        cron=cron if decl["name"] == SCHEDULED else None,
        triggers=triggers or None,
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def _ready(client: Any) -> str | None:
    """None when every deployment is registered, else what is still missing."""
    from prefect.exceptions import ObjectNotFound

    for decl in declared_deployments():
        name = full_name(decl)
        try:
            deployment = client.read_deployment_by_name(name)
        except ObjectNotFound:
            return f"deployment {name} not registered"
        if decl["name"] == SCHEDULED and not deployment.schedules:
            return f"deployment {name} has no schedule"
        if decl.get("triggers") and not client.read_resource_related_automations(
            f"prefect.deployment.{deployment.id}"
        ):
            return f"deployment {name} has no trigger"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check(wait: float = 0.0, pid: int | None = None) -> int:
    """0 once all deployments are ready; 1 after ``wait`` seconds or when ``pid`` has died."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + wait
    missing = "server not reachable"
    while True:
        try:
            with get_client(sync_client=True) as client:
                missing = _ready(client)
        except Exception as exc:  # server still starting: connection refused, 5xx
            missing = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if missing is None:
            return 0
        if pid is not None and not _alive(pid):
            print(f"aemg serve: serve process {pid} exited before the deployments were ready", file=sys.stderr)
            return 1
        if time.monotonic() >= deadline:
            print(f"aemg serve: not ready: {missing}", file=sys.stderr)
            return 1
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aemg.flows.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 0 once the deployments are registered")
    parser.add_argument("--wait", type=float, default=0.0, help="with --check: seconds to keep polling")
    parser.add_argument("--pid", type=int, default=None, help="with --check: stop waiting once this pid has died")
    args = parser.parse_args(argv)
    if args.check:
        return check(args.wait, args.pid)
    from prefect import serve

    cron = load_params()["schedule"]["harmonize_cron"]
    serve(*(build(d, cron) for d in declared_deployments()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
