"""``make serve`` for real: a Prefect server plus served deployments, a run, a trigger, a clean stop.

Starts ``scripts/prefect-serve.sh`` on a free port with a temporary ``PREFECT_HOME`` and a
temporary working folder (``AEMG_SERVE_DIR``) whose ``params.yaml`` selects one subject, then:
the six deployments exist, ``harmonize/scheduled`` has its cron and its event trigger;
``prefect deployment run harmonize/harmonize --watch`` ends Completed (downloads through a
loopback mirror, Dask ``LocalCluster`` inside the served run); ``aemg datasets add`` emits
``aemg.dataset.added`` and the trigger's run of ``harmonize/scheduled`` harmonizes only the new
dataset; ``stop`` leaves no pid file and no process. About 60-80 s; deselect with
``-m "not server"``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml

from aemg.store import open_tree

from conftest import REPO, serve_directory

pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]

BIN = Path(sys.executable).parent
SCRIPT = REPO / "scripts" / "prefect-serve.sh"
DATASET = "unibo-inail"  # two small .mat files for one subject
SUBJECT = "1"
NEW_ID = "unibo-mini"  # a user spec: unibo-inail's files of subject 2 under a new id
DEPLOYMENTS = {
    "harmonize/harmonize",
    "harmonize/scheduled",
    "tokenize/tokenize",
    "pretrain/pretrain",
    "evaluate/evaluate",
    "pipeline/pipeline",
}
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def alive(proc: psutil.Process) -> bool:
    """Still running (psutil compares the start time, so a reused pid is not a match)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def with_prefect_home(home: Path) -> list[psutil.Process]:
    """Every live process started with this PREFECT_HOME: server, serve, flow runs, Dask workers."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("PREFECT_HOME") == str(home) and alive(proc):
                found.append(proc)
        except psutil.Error:
            continue
    return found


class Served:
    def __init__(self, root: Path, mirror: str) -> None:
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.home = root / "prefect-home"
        self.workdir = root / "work"
        self.workdir.mkdir()
        (self.workdir / "params.yaml").write_text(
            yaml.safe_dump({"datasets": [DATASET], "subjects": {DATASET: [SUBJECT]}})
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            PREFECT_HOME=str(self.home),
            PREFECT_PORT=str(self.port),
            PREFECT_LOGGING_LEVEL="INFO",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            DO_NOT_TRACK="1",
            AEMG_SERVE_DIR=str(self.workdir),
            AEMG_VENV_BIN=str(BIN),
            AEMG_MIRROR=mirror,
            AEMG_DATASETS_D=str(self.workdir / "datasets.d"),
        )
        self.env = env
        self.procs: dict[int, psutil.Process] = {}

    def script(self, action: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(SCRIPT), action], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def remember_processes(self) -> None:
        """Every process of the server and of serve (flow runs, Dask workers) seen so far."""
        for name in ("server", "serve"):
            pid_file = self.home / f"{name}.pid"
            if pid_file.exists():
                self.procs.update((p.pid, p) for p in tree(int(pid_file.read_text())))
        self.procs.update((p.pid, p) for p in with_prefect_home(self.home))

    def leftovers(self) -> list[psutil.Process]:
        return [p for p in self.procs.values() if alive(p)] + [
            p for p in with_prefect_home(self.home) if p.pid not in self.procs
        ]

    def client(self):
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.api)

    def run_cli(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "PREFECT_API_URL": self.api}
        return subprocess.run(
            [str(BIN / args[0]), *args[1:]], env=env, cwd=self.workdir, capture_output=True, text=True, timeout=timeout
        )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("serve")
    # A mirror of ../shared/data that also serves the new dataset's id (same files).
    mirror_dir = root / "mirror"
    mirror_dir.mkdir()
    for dataset in shared_data.iterdir():
        if dataset.is_dir():
            (mirror_dir / dataset.name).symlink_to(dataset)
    (mirror_dir / NEW_ID).symlink_to(shared_data / DATASET)
    http, mirror = serve_directory(mirror_dir)
    srv = Served(root, mirror)
    try:
        result = srv.script("start", timeout=180)
        srv.remember_processes()
        assert result.returncode == 0, f"start failed:\n{result.stdout}\n{result.stderr}"
        yield srv
    finally:
        srv.remember_processes()
        srv.script("stop", timeout=120)
        for proc in srv.leftovers():  # never leak processes, even when a test failed
            with contextlib.suppress(psutil.Error):
                proc.kill()
        http.shutdown()


def test_deployments_schedule_and_trigger_are_registered(served: Served) -> None:
    with served.client() as client:
        flows = {f.id: f.name for f in client.read_flows()}
        full = {f"{flows[d.flow_id]}/{d.name}" for d in client.read_deployments()}
        assert full == DEPLOYMENTS
        scheduled = client.read_deployment_by_name("harmonize/scheduled")
        assert scheduled.parameters == {"only_changed": True, "all_registered": True}
        assert not scheduled.paused
        crons = [(s.schedule.cron, s.active) for s in scheduled.schedules]
        assert crons == [("0 3 * * *", True)]  # params.yaml's schedule.harmonize_cron (the default)
        automations = client.read_resource_related_automations(f"prefect.deployment.{scheduled.id}")
        assert len(automations) == 1
        trigger = automations[0].trigger
        assert automations[0].enabled and trigger.expect == {"aemg.dataset.added"}
        assert [a.type for a in automations[0].actions] == ["run-deployment"]
        # module entrypoints: a file entrypoint would put aemg/flows on sys.path (see aemg.flows.serve)
        assert scheduled.entrypoint == "aemg.flows.harmonize.harmonize_flow"


def test_harmonize_deployment_run_completes(served: Served) -> None:

    result = served.run_cli(
        "prefect", "deployment", "run", "harmonize/harmonize", "--watch", "--watch-timeout", "120", timeout=150
    )
    served.remember_processes()
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert "Completed" in result.stdout
    store = served.workdir / "data" / "harmonized.zarr"
    tree = open_tree(store)
    assert sorted(tree.children) == [DATASET]
    assert sorted(set(tree[DATASET]["subject"].values.tolist())) == [SUBJECT]


def _new_spec(path: Path) -> Path:
    from aemg.datasets.registry import BUILTIN_DIR

    spec = yaml.safe_load((BUILTIN_DIR / f"{DATASET}.yaml").read_text())
    spec.update(id=NEW_ID, title="UniBo-INAIL subject 2 as a user dataset", n_subjects=1)
    spec["files"] = {name: digest for name, digest in spec["files"].items() if "user_2_" in name}
    assert len(spec["files"]) == 2
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_dataset_added_event_triggers_scheduled_harmonize(served: Served) -> None:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, LogFilter, LogFilterFlowRunId

    store = served.workdir / "data" / "harmonized.zarr"
    spec = _new_spec(served.workdir.parent / f"{NEW_ID}.yaml")
    added = served.run_cli("aemg", "datasets", "add", str(spec), timeout=60)
    assert added.returncode == 0, added.stderr
    assert (served.workdir / "datasets.d" / f"{NEW_ID}.yaml").exists()

    with served.client() as client:
        deployment = client.read_deployment_by_name("harmonize/scheduled")
        only = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        deadline = time.monotonic() + 120
        run = None
        while time.monotonic() < deadline:
            runs = [
                r
                for r in client.read_flow_runs(deployment_filter=only)
                if r.created_by is not None and r.created_by.type == "AUTOMATION"
            ]
            run = runs[0] if runs else None
            if run is not None and run.state is not None and run.state.type.value in FINAL:
                break
            served.remember_processes()
            time.sleep(1)
        assert run is not None, "aemg.dataset.added created no run of harmonize/scheduled"
        assert run.state.type.value == "COMPLETED", f"{run.name}: {run.state}"
        # What the run did, from its log (one "<id>: <summary>" line per dataset).
        actions = {}
        while time.monotonic() < deadline and len(actions) < 2:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
            actions = {
                ds: summary
                for log in logs
                for ds in (DATASET, NEW_ID)
                if log.message.startswith(f"{ds}: {{")
                for summary in [log.message]
            }
            time.sleep(0.5)
    assert "'action': 'unchanged'" in actions.get(DATASET, ""), actions  # only new or changed datasets
    assert "'action': 'harmonized'" in actions.get(NEW_ID, ""), actions
    tree = open_tree(store)
    assert sorted(tree.children) == sorted([DATASET, NEW_ID])
    assert sorted(set(tree[NEW_ID]["subject"].values.tolist())) == ["2"]


def test_stop_leaves_no_process(served: Served) -> None:
    """Runs last in this module: stop now and check what the fixture's teardown would."""
    served.remember_processes()
    assert len(served.procs) >= 2, "server and serve processes were not found"
    stopped = served.script("stop", timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert not (served.home / "server.pid").exists() and not (served.home / "serve.pid").exists()
    left = served.leftovers()
    assert not left, f"left behind: {[p.cmdline() for p in left if alive(p)]}"
    port_users = [
        c
        for c in psutil.net_connections("tcp")
        if c.laddr and c.laddr.port == served.port and c.status == psutil.CONN_LISTEN
    ]
    assert not port_users, f"port {served.port} still listening"
