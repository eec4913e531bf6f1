"""Faults end to end: ``aemg harmonize`` (Prefect flow, loopback mirror) exits 1 with one line.

The CLI runs in-process under the session's Prefect test harness, on ``--dask-address sync``.
Hostile datasets are user specs in a temporary ``datasets.d`` (``AEMG_DATASETS_D``).
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_faults_common import (
    GOOD_FILES,
    HOSTILE,
    assert_one_line,
    copy_valid_store,
    csv_bytes,
    fingerprint,
    good_csv_rows,
    siblings,
    spec_mapping,
    write_dataset,
    write_user_spec,
)
from typer.testing import CliRunner

from aemg.cli import app
from aemg.errors import AemgError
from aemg.store import open_tree

from conftest import serve_directory, write_params

MYO, UNIBO = "myo-armband-cote-allard", "unibo-inail"
BAD_NAN = {"data/s1_1.csv": csv_bytes([*good_csv_rows(120, 1)[:30], "300,1e-4,nan,1", *good_csv_rows(120, 1)[31:]])}


@pytest.fixture
def env(workdir: Path, shared_data: Path, prefect_harness, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """A valid store, a mirror folder (real datasets linked in) served over HTTP, no retry delays."""
    import aemg.flows.harmonize as harmonize_flows

    monkeypatch.delenv("AEMG_MIRROR", raising=False)
    # download_task retries twice with a 2 s delay; a refused file stays refused, so skip the wait
    monkeypatch.setattr(harmonize_flows, "download_task", harmonize_flows.download_task.with_options(retries=0))
    mirror = workdir / "mirror"
    mirror.mkdir()
    for dataset in (MYO, UNIBO):
        (mirror / dataset).symlink_to(shared_data / dataset)
    server, url = serve_directory(mirror)
    store = copy_valid_store(workdir)
    yield {"dir": workdir, "mirror": mirror, "url": url, "store": store, "datasets_d": workdir / "datasets.d"}
    server.shutdown()
    server.server_close()


def harmonize_cli(env: dict, datasets: list[str], *extra: str, mirror: bool = True, **sections):
    params = write_params(env["dir"], datasets, paths={"raw": str(env["dir"] / "raw")}, **sections)
    args = ["harmonize", *datasets, "--params", str(params), "--store", str(env["store"]), "--dask-address", "sync"]
    return CliRunner().invoke(app, args + (["--mirror", env["url"]] if mirror else []) + list(extra))


def error_line(result) -> str:
    assert result.exit_code == 1, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("aemg: error: "), result.stderr
    return line


def add_hostile(env: dict, files: dict[str, bytes], dataset_id: str = HOSTILE, **extra) -> None:
    write_user_spec(env["datasets_d"], spec_mapping(files, id=dataset_id, **extra))
    write_dataset(env["mirror"], files, dataset_id)


CLI_CASES = {
    "hostile-nan": (BAD_NAN, ["NaN/Inf sample(s) in channels ['c2']", "Fix: set harmonize.nan_policy"]),
    "hostile-empty": ({"data/s1_1.csv": b""}, ["empty file"]),
    "hostile-gesture": ({"data/s1_1.csv": csv_bytes(good_csv_rows(120, 9))}, ["unknown gesture code(s) [9]"]),
    "hostile-columns": ({"data/s1_1.csv": csv_bytes([r + ",0" for r in good_csv_rows(120)], "time,c1,c2,class,x")},
                        ["wrong columns"]),
}


def test_cli_bad_inputs_exit_1_with_one_line_and_store_untouched(env: dict) -> None:
    """Four hostile datasets in one run: each fails alone, the one line names each one's file and reason."""
    for dataset_id, (files, _) in CLI_CASES.items():
        add_hostile(env, {**files, "data/s1_2.csv": GOOD_FILES["data/s1_2.csv"]}, dataset_id)
    before = fingerprint(env["store"])
    line = error_line(harmonize_cli(env, list(CLI_CASES)))
    for dataset_id, (_, reason) in CLI_CASES.items():
        part = next(p for p in line.split("; ") if dataset_id + ":" in p)
        assert_one_line(part, f"{dataset_id}: data/s1_1.csv: ", *reason)
    assert line.endswith("(0 other dataset(s) succeeded)")
    assert fingerprint(env["store"]) == before and siblings(env["store"]) == []


def test_cli_mirror_with_a_modified_file(env: dict, shared_data: Path) -> None:
    bad = env["mirror"] / "bad"
    shutil.copytree(shared_data / UNIBO / "data", bad / UNIBO / "data", ignore=shutil.ignore_patterns("user_[02-9]*"))
    target = bad / UNIBO / "data" / "user_1_day_1_posture_2.mat"
    data = bytearray(target.read_bytes())
    data[len(data) // 3] ^= 0xFF
    target.chmod(0o644)
    target.write_bytes(bytes(data))
    before = fingerprint(env["store"])
    result = harmonize_cli(env, [UNIBO], "--mirror", f"{env['url']}/bad", mirror=False, subjects={UNIBO: ["1"]})
    line = error_line(result)
    assert_one_line(line, "unibo-inail: data/user_1_day_1_posture_2.mat: sha256 mismatch", "Fix: check the mirror")
    assert fingerprint(env["store"]) == before
    assert not (env["dir"] / "raw" / UNIBO / "data" / "user_1_day_1_posture_2.mat").exists()


def test_cli_zip_slip_archive(env: dict) -> None:
    served = env["mirror"] / "archives"
    served.mkdir()
    with zipfile.ZipFile(served / "hostile.zip", "w") as zf:
        for rel, content in GOOD_FILES.items():
            zf.writestr(f"h/{rel}", content)
        zf.writestr("h/../../../evil.csv", b"pwned")
    archive = {"url": f"{env['url']}/archives/hostile.zip", "sha256": None, "member_prefix": "h/"}
    write_user_spec(env["datasets_d"], spec_mapping(GOOD_FILES, archive=archive, base_url=None))
    before = fingerprint(env["store"])
    line = error_line(harmonize_cli(env, [HOSTILE], mirror=False))
    assert_one_line(line, "hostile: hostile.zip: archive member 'h/../../../evil.csv' escapes the target folder")
    assert fingerprint(env["store"]) == before
    assert list(env["dir"].rglob("evil.csv")) == []


def test_cli_invalid_spec_in_datasets_d(env: dict) -> None:
    mapping = spec_mapping(GOOD_FILES, sfreq="fast", gestures={1: "wave"})
    del mapping["pattern"]
    path = write_user_spec(env["datasets_d"], mapping)
    before = fingerprint(env["store"])
    line = error_line(harmonize_cli(env, [MYO]))
    assert_one_line(
        line, f"hostile: {path}: invalid dataset spec (3 problem(s))", "missing key 'pattern'", "'sfreq' must be",
        "unknown shared name 'wave'",
    )
    assert fingerprint(env["store"]) == before


def _task_states(flow_state) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flow_filter = FlowRunFilter(id=FlowRunFilterId(any_=[flow_state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=flow_filter)
    return {run.name.rsplit("-", 1)[0]: run.state.type.value for run in runs}


def test_one_bad_dataset_fails_alone(env: dict) -> None:
    from aemg.flows.harmonize import harmonize_flow

    add_hostile(env, {**BAD_NAN, "data/s1_2.csv": GOOD_FILES["data/s1_2.csv"]})
    before = fingerprint(env["store"])
    params = write_params(env["dir"], [MYO, HOSTILE], paths={"raw": str(env["dir"] / "raw")})
    state = harmonize_flow(
        params_path=str(params), store=str(env["store"]), mirror=env["url"], dask_address="sync", return_state=True
    )
    assert state.is_failed()
    with pytest.raises(AemgError) as err:
        state.result()
    assert_one_line(str(err.value), "hostile: data/s1_1.csv: 1 NaN/Inf sample(s)", "(1 other dataset(s) succeeded)")
    assert MYO not in str(err.value)
    states = _task_states(state)
    assert states[f"harmonize_task-{HOSTILE}"] == "FAILED"
    assert states[f"harmonize_task-{MYO}"] == "COMPLETED"
    after = fingerprint(env["store"])
    for group in (HOSTILE, UNIBO):  # the bad dataset's previous version and the bystander: untouched
        assert {k: v for k, v in after.items() if k.startswith(f"{group}/")} == {
            k: v for k, v in before.items() if k.startswith(f"{group}/")
        }
    myo = open_tree(env["store"])[MYO].to_dataset()
    assert sorted(set(myo["subject"].values.tolist())) == ["pre-Female0", "pre-Female1", "pre-Male0"]  # re-harmonized: 3 subjects


def test_one_dataset_refused_at_download_fails_alone(env: dict, shared_data: Path) -> None:
    bad = env["mirror"] / UNIBO
    bad.unlink()
    shutil.copytree(shared_data / UNIBO / "data", bad / "data", ignore=shutil.ignore_patterns("user_[02-9]*"))
    target = bad / "data" / "user_1_day_1_posture_1.mat"
    target.chmod(0o644)
    target.write_bytes(target.read_bytes()[:-10])
    before = fingerprint(env["store"])
    result = harmonize_cli(env, [MYO, UNIBO], subjects={MYO: ["pre-Female1"], UNIBO: ["1"]})
    assert_one_line(error_line(result), "unibo-inail: data/user_1_day_1_posture_1.mat: sha256 mismatch")
    after = fingerprint(env["store"])
    assert {k for k in after if after[k] != before.get(k)} and all(
        after[k] == v for k, v in before.items() if k.startswith(f"{UNIBO}/")
    )
    myo = open_tree(env["store"])[MYO].to_dataset()
    assert sorted(set(myo["subject"].values.tolist())) == ["pre-Female1"]
