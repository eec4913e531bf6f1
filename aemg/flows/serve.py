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
POLL_SECONDS = 2


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


def _ready(client: Any, prefect_yaml: Path) -> str | None:
    """None when every deployment is registered, else what is still missing."""
    from prefect.exceptions import ObjectNotFound

    for decl in declared_deployments(prefect_yaml):
        name = full_name(decl)
        try:
            deployment = client.read_deployment_by_name(name)
        except ObjectNotFound:
            return f"deployment {name} not registered"
        if decl["name"] == SCHEDULED and not deployment.schedules:
            return f"deployment {name} has no schedule"
        if decl.get("triggers") and not client.read_resource_related_automations(f"prefect.deployment.{deployment.id}"):
            return f"deployment {name} has no trigger"
    return None


def _alive(pid: int) -> bool:
    """Running, and not a zombie (a dead serve stays one until the script reaps it)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def check(wait: float = 0.0, pid: int | None = None, prefect_yaml: Path = PREFECT_YAML) -> int:
    """0 once all deployments are ready; 1 after ``wait`` seconds or when ``pid`` has died."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + wait
    missing = "server not reachable"
    while True:
        try:
            with get_client(sync_client=True) as client:
                missing = _ready(client, prefect_yaml)
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
    parser.add_argument("--prefect-yaml", type=Path, default=PREFECT_YAML, help="deployments file (./prefect.yaml)")
    parser.add_argument("--check", action="store_true", help="exit 0 once the deployments are registered")
    parser.add_argument("--wait", type=float, default=0.0, help="with --check: seconds to keep polling")
    parser.add_argument("--pid", type=int, default=None, help="with --check: stop waiting once this pid has died")
    args = parser.parse_args(argv)
    if args.check:
        return check(args.wait, args.pid, args.prefect_yaml)
    cron = load_params()["schedule"]["harmonize_cron"]  # ./params.yaml: the folder the runs execute in
    serve(*(build(d, cron) for d in declared_deployments(args.prefect_yaml)))
    return 0


def serve(*deployments: Any) -> None:
    """``prefect.serve`` with a SIGTERM that actually stops it.

    Prefect 3.8's ``Runner.handle_sigterm`` calls the sync ``stop()`` from inside the event
    loop, which only creates the ``astop()`` coroutine without awaiting it: the process logs
    "initiating graceful shutdown" and keeps running. Here SIGTERM schedules ``astop()`` on the
    loop, so ``make stop`` ends serve within seconds (in-flight runs cancelled, schedules paused
    until the next ``make serve`` re-applies the deployments).
    """
    import asyncio

    from prefect.runner import Runner

    class _Runner(Runner):
        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
            self._logger.info("SIGTERM received, stopping the runner")
            loop = self._loop
            if loop is None or not self.started or self.stopping:
                raise SystemExit(0)
            loop.call_soon_threadsafe(lambda: loop.create_task(self.astop()))

    # Poll for new runs every 2 s rather than Prefect's 10 s: `deployment run --watch` and
    # triggered runs start promptly (PREFECT_RUNNER_POLL_FREQUENCY still wins when set).
    poll = None if os.environ.get("PREFECT_RUNNER_POLL_FREQUENCY") else POLL_SECONDS
    runner = _Runner(pause_on_shutdown=True, query_seconds=poll)
    for deployment in deployments:
        runner.add_deployment(deployment)
    print("Serving deployments:", ", ".join(f"{d.flow_name}/{d.name}" for d in deployments), flush=True)
    try:
        asyncio.run(runner.start())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    raise SystemExit(main())
