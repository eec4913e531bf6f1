"""`dvc repro` in a real git repo: builds everything, then only what a parameter change touches."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import REPO, write_params

BIN = Path(sys.executable).parent
DATASETS = ["myo-armband-cote-allard", "unibo-inail"]


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def _stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def test_dvc_repro_is_incremental(tmp_path, mirror):
    for name in ("dvc.yaml", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "aemg", tmp_path / "aemg", ignore=shutil.ignore_patterns("__pycache__"))
    write_params(tmp_path, DATASETS)
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "AEMG_MIRROR": mirror,
        "PREFECT_HOME": str(tmp_path / ".prefect"),
        "DVC_NO_ANALYTICS": "1",
        "DO_NOT_TRACK": "1",
        "AEMG_DASK_ADDRESS": "sync",
    }
    _run(["git", "init", "-q"], tmp_path, env)
    _run(["dvc", "init", "-q"], tmp_path, env)

    first = _run(["dvc", "repro"], tmp_path, env)
    assert _stages_run(first) == {"download", "harmonize", "tokenize", "pretrain", "ablation", "evaluate", "levers",
                                  "report"}
    assert (tmp_path / "metrics" / "loso.json").exists()
    assert (tmp_path / "reports" / "README.md").exists() and list((tmp_path / "reports").glob("*.png"))
    # per-epoch pre-training curves, one file per stage and model, that `dvc plots` renders
    shown = subprocess.run(["dvc", "plots", "show", "--json", "metrics/pretrain_history"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    plots = json.loads(shown.stdout)
    for stage, y in (("vq", "reconstruction_error"), ("mtm", "masked_token_accuracy")):
        for dataset in DATASETS:
            rows = plots["data"][f"metrics/pretrain_history/{stage}/{dataset}/seed0.json"][0]["content"]["data"]["values"]
            assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1)) and rows, (stage, dataset)
            assert all(r["stage"] == stage and isinstance(r[y], float) for r in rows), (stage, dataset)

    second = _run(["dvc", "repro"], tmp_path, env)
    assert _stages_run(second) == set(), second

    # an evaluation parameter re-runs the evaluation and what reads it, never the stores or the models
    # (a tokenize parameter re-running tokenize and all after it is the same mechanism, at 3 more stages' cost)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["evaluate"]["target_adaptation"] = ["none"]  # one protocol fewer: loso.json changes
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    third = _run(["dvc", "repro"], tmp_path, env)
    assert _stages_run(third) == {"evaluate", "levers", "report"}, third


TELEMETRY_ENV = ("DO_NOT_TRACK", "DVC_NO_ANALYTICS", "PREFECT_SERVER_ANALYTICS_ENABLED", "DVC_TEST", "CI")
NO_TELEMETRY_STAGE = """stages:
  check:
    cmd: python -c "import aemg, prefect; from prefect.settings import get_current_settings;
      from prefect._internal.analytics.enabled import is_telemetry_enabled;
      assert not get_current_settings().server.analytics_enabled and not is_telemetry_enabled(), 'telemetry on';
      open('checked', 'w').write('ok')"
    outs: [checked]
"""


def test_plain_dvc_repro_in_a_fresh_clone_attempts_no_telemetry(tmp_path):
    """No env switch set: the committed .dvc/config turns DVC's analytics off, the aemg package Prefect's."""
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(REPO), str(tmp_path / "clone")], check=True, timeout=120)
    clone = tmp_path / "clone"
    subprocess.run(["git", "checkout", "-q", "HEAD", "--", ".dvc/config", ".dvc/.gitignore"], cwd=clone, check=True)
    (clone / "dvc.yaml").write_text(NO_TELEMETRY_STAGE)
    env = {k: v for k, v in os.environ.items() if k not in TELEMETRY_ENV and not k.startswith("PREFECT_")}
    env |= {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PREFECT_HOME": str(tmp_path / ".prefect"),
            "PYTHONPATH": str(REPO)}
    out = _run(["dvc", "repro", "-v"], clone, env)
    assert "Analytics is disabled." in out and "Analytics is enabled." not in out, out[-2000:]
    assert (clone / "checked").read_text() == "ok"
    assert not re.search(r"(?i)failed to send|analytics report", out), out[-2000:]
