"""Serve the deployments declared in ``prefect.yaml`` from one process (``make serve``).

``python -m aemg.flows.serve --check`` exits 0 once every deployment is registered on the
server named by ``PREFECT_API_URL``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import yaml

from aemg.params import load_params


def declared_deployments(path: Path = Path("prefect.yaml")) -> list[dict[str, Any]]:
    return yaml.safe_load(path.read_text())["deployments"]


def load_flow(entrypoint: str) -> Any:
    """``aemg/flows/harmonize.py:harmonize_flow`` -> the flow object."""
    file, name = entrypoint.split(":")
    module = importlib.import_module(file.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


def build(decl: dict[str, Any], cron: str) -> Any:
    from prefect.events import DeploymentEventTrigger

    flow = load_flow(decl["entrypoint"])
    triggers = [
        DeploymentEventTrigger(
            enabled=t.get("enabled", True), expect=set(t["expect"]), match=t.get("match", {}),
            parameters=decl.get("parameters") or None,
        )
        for t in decl.get("triggers", [])
    ]
    return flow.to_deployment(
        name=decl["name"],
        description=decl.get("description"),
        parameters=decl.get("parameters") or {},
        cron=cron if decl["name"] == "scheduled" else None,
        triggers=triggers or None,
    )


def check() -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for decl in declared_deployments():
            flow = load_flow(decl["entrypoint"])
            client.read_deployment_by_name(f"{flow.name}/{decl['name']}")
    return 0


def main() -> int:
    if "--check" in sys.argv:
        return check()
    from prefect import serve

    cron = load_params()["schedule"]["harmonize_cron"]
    serve(*(build(d, cron) for d in declared_deployments()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
