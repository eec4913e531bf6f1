"""Both stores on S3 (moto's real S3 API over loopback HTTP), through the ``aemg`` command.

A real dataset slice (unibo-inail) is downloaded from the loopback mirror, harmonized into
``s3://<bucket>/harmonized`` and tokenized into ``s3://<bucket>/tokens`` by ``aemg harmonize``
and ``aemg tokenize`` (in-process through Typer's CliRunner, under the session's Prefect test
harness, no Dask); ``aemg history`` and ``aemg.store.open_tree`` then show what each commit made.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_faults_common import builtin_spec
from typer.testing import CliRunner

from aemg.cli import app
from aemg.harmonize.dataset import spec_hash
from aemg.params import DEFAULTS, params_hash
from aemg.store import open_tree

from conftest import S3, write_params

UNIBO = "unibo-inail"


def aemg(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def cli_env(workdir: Path, mirror: str, prefect_harness, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.delenv("AEMG_MIRROR", raising=False)
    return {"mirror": mirror, "raw": str(workdir / "raw")}


def harmonize(cli_env: dict[str, str], store: str, subjects: list[str]) -> None:
    params = write_params(Path.cwd(), [UNIBO], subjects={UNIBO: subjects}, paths={"raw": cli_env["raw"]})
    aemg("harmonize", UNIBO, "--params", str(params), "--store", store, "--mirror", cli_env["mirror"],
         "--dask-address", "sync")


def test_harmonize_tokenize_and_history_on_s3(cli_env: dict[str, str], s3: S3) -> None:
    harmonized, tokens = s3.url("harmonized"), s3.url("tokens")
    harmonize(cli_env, harmonized, ["1"])
    harmonize(cli_env, harmonized, ["1", "2"])  # a second commit: one more subject
    aemg("tokenize", UNIBO, "--params", "params.yaml", "--store", harmonized, "--tokens", tokens,
         "--dask-address", "sync")

    rows = json.loads(aemg("history", "--store", harmonized, "--format", "json"))
    assert [r["datasets"] for r in rows] == [UNIBO, UNIBO, ""]  # newest first, then the empty repository
    hashes = f"params {params_hash(DEFAULTS['harmonize'])}, spec {spec_hash(builtin_spec(UNIBO))}"
    assert rows[0]["message"] == rows[1]["message"] == f"harmonize {UNIBO}: {hashes}"
    second, first = rows[0]["snapshot"], rows[1]["snapshot"]

    now, before = open_tree(harmonized)[UNIBO], open_tree(harmonized, snapshot=first)[UNIBO]
    assert sorted(set(now["subject"].values.tolist())) == ["1", "2"]
    assert sorted(set(before["subject"].values.tolist())) == ["1"]
    n = before.sizes["sample"]
    assert now.sizes["sample"] > n
    np.testing.assert_array_equal(now["emg"][:n].values, before["emg"].values)  # subject 1's files come first

    token_rows = json.loads(aemg("history", "--store", tokens, "--format", "json"))
    assert [r["datasets"] for r in token_rows] == [UNIBO, ""]
    tp_hash = params_hash(DEFAULTS["tokenize"])
    assert token_rows[0]["message"] == f"tokenize {UNIBO}: params {tp_hash}, harmonized snapshot {second}"

    events = open_tree(tokens)[f"{UNIBO}/events"]
    assert events.sizes["event"] > 0 and set(events["subject"].values.tolist()) == {"1", "2"}
