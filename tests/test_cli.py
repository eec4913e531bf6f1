"""The ``aemg`` command's registry sub-commands: the table, unknown ids, ``datasets add``.

In-process through Typer's CliRunner (no Prefect server, no flow run), so the whole file takes
a second or two.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

import aemg.cli
from aemg.datasets.registry import BUILTIN_DIR


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, workdir: Path):
    """Invoke ``aemg`` in a fresh working folder; no Prefect server configured."""
    monkeypatch.setattr(aemg.cli, "console", Console(width=400, force_terminal=False))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)

    def invoke(*args: str):
        return CliRunner().invoke(aemg.cli.app, list(args))

    return invoke


def one_error_line(result) -> str:
    """The single line a failing command writes on stderr."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{result.stderr}"
    assert lines[0].startswith("aemg: error: "), lines[0]
    return lines[0]


def spec_copy(directory: Path, dataset_id: str, **changes) -> Path:
    """A valid user spec: a built-in one under a new id (same files, same hashes)."""
    spec = yaml.safe_load((BUILTIN_DIR / "unibo-inail.yaml").read_text())
    spec.update(id=dataset_id, title=f"{dataset_id} (test copy)", **changes)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{dataset_id}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def shared_ids(shared_data: Path) -> list[str]:
    return sorted(p.name for p in shared_data.iterdir() if p.is_dir())


def test_datasets_prints_the_registry_table(cli, shared_data: Path) -> None:
    result = cli("datasets")
    assert result.exit_code == 0, result.output
    ids = shared_ids(shared_data)
    assert len(ids) >= 4
    for dataset in ids:
        assert dataset in result.stdout
    for column in ("id", "title", "channels", "sfreq", "subjects", "licence", "access", "cached"):
        assert column in result.stdout


@pytest.mark.parametrize("command", ["download", "harmonize"])
def test_unknown_dataset_id_is_one_line_listing_the_ids(
    cli, command: str, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails fast: the id is checked against the registry before any flow (or server) starts."""
    import aemg.flows.harmonize

    def no_flow(**_):
        raise AssertionError("an unknown id must be refused before a Prefect flow starts")

    monkeypatch.setattr(aemg.flows.harmonize, f"{command}_flow", no_flow)
    result = cli(command, "no-such-dataset")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (result.exception, result.output)
    line = one_error_line(result)
    assert "no-such-dataset" in line and "Available:" in line
    for dataset in shared_ids(shared_data):
        assert dataset in line


def test_add_installs_a_valid_spec_and_lists_it(cli, workdir: Path) -> None:
    spec = spec_copy(workdir / "incoming", "unibo-copy")
    result = cli("datasets", "add", str(spec))  # no PREFECT_API_URL: nothing to announce to
    assert result.exit_code == 0, result.output
    installed = workdir / "datasets.d" / "unibo-copy.yaml"
    assert installed.read_bytes() == spec.read_bytes()
    assert not [p for p in installed.parent.iterdir() if p.name != installed.name]  # no temp file left
    assert "unibo-copy" in cli("datasets").stdout

    again = cli("datasets", "add", str(spec), "--no-emit")
    assert again.exit_code == 1
    assert "already registered" in one_error_line(again)


def test_add_refuses_a_builtin_id(cli, workdir: Path) -> None:
    spec = spec_copy(workdir / "incoming", "flexemg")
    result = cli("datasets", "add", str(spec), "--no-emit")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "flexemg" in line and "already registered" in line
    assert not (workdir / "datasets.d").exists() or not any((workdir / "datasets.d").iterdir())


def test_add_reports_every_mistake_in_one_line(cli, workdir: Path) -> None:
    spec = yaml.safe_load((BUILTIN_DIR / "unibo-inail.yaml").read_text())
    spec["id"] = "Bad_Id"
    del spec["format"]
    spec["sfreq"] = 0
    spec["gestures"] = {1: "rest", 2: "wave"}
    spec["files"] = {"data/user_1_day_1_posture_1.mat": "abc"}
    path = workdir / "incoming" / "bad.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(spec, sort_keys=False))

    result = cli("datasets", "add", str(path), "--no-emit")
    assert result.exit_code == 1
    line = one_error_line(result)
    for mistake in (
        "'id' 'Bad_Id' must be lowercase",
        "missing key 'format'",
        "'sfreq' must be positive",
        "unknown shared name 'wave'",
        "sha256 'abc' is not 64 lowercase hex digits",
    ):
        assert mistake in line, f"{mistake!r} not reported in {line!r}"
    assert str(path) in line
    assert not (workdir / "datasets.d").exists() or not any((workdir / "datasets.d").iterdir())


def test_add_reports_broken_yaml_in_one_line(cli, workdir: Path) -> None:
    path = workdir / "broken.yaml"
    path.write_text("id: broken\nchannels: [a, b\nsfreq: 200\n")
    result = cli("datasets", "add", str(path), "--no-emit")
    assert result.exit_code == 1
    assert "cannot parse YAML" in one_error_line(result)


def test_add_of_a_missing_file_is_one_line(cli, workdir: Path) -> None:
    result = cli("datasets", "add", str(workdir / "nowhere.yaml"), "--no-emit")
    assert result.exit_code != 0
    assert "nowhere.yaml" in result.stderr


def _all_ids() -> list[str]:
    from aemg.datasets.registry import all_specs

    return sorted(all_specs())


def test_datasets_piped_prints_every_id_whole(workdir: Path) -> None:
    """`aemg datasets | cat`: not a terminal, so plain CSV rows, one per dataset, ids uncut."""
    import csv
    import subprocess
    import sys

    aemg_bin = Path(sys.executable).parent / "aemg"
    proc = subprocess.run([str(aemg_bin), "datasets"], capture_output=True, text=True, timeout=120, cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(proc.stdout.splitlines()))
    assert sorted(r["id"] for r in rows) == _all_ids()
    assert "…" not in proc.stdout


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_datasets_formats_carry_the_whole_ids(cli, fmt: str) -> None:
    import csv
    import json

    result = cli("datasets", "--format", fmt)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout) if fmt == "json" else list(csv.DictReader(result.stdout.splitlines()))
    assert sorted(r["id"] for r in rows) == _all_ids()
    assert {r["id"]: r["real files"] for r in rows}["grabmyo"] == "yes"


def test_datasets_table_on_an_80_column_terminal_keeps_ids_whole(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aemg.cli, "console", Console(width=80, force_terminal=True, color_system=None))
    with aemg.cli.console.capture() as captured:
        result = cli("datasets", "--format", "table")
    assert result.exit_code == 0, result.output
    text = captured.get()
    assert max(len(line) for line in text.splitlines()) <= 80
    for dataset in _all_ids():
        assert re.search(rf"^ ?{re.escape(dataset)}  ", text, flags=re.M), dataset


def test_datasets_refuses_an_unknown_format(cli) -> None:
    result = cli("datasets", "--format", "xml")
    assert result.exit_code != 0 and "table, csv or json" in result.output
