"""Bad file content and bad specs: one loud line naming dataset, file and reason; store untouched.

Each case replaces the good ``hostile`` group already in a valid store, so "untouched" covers
the failing dataset's own previous version as well as the other datasets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from test_faults_common import (
    GOOD_FILES,
    HOSTILE,
    HP,
    assert_one_line,
    copy_valid_store,
    csv_bytes,
    fingerprint,
    good_csv_rows,
    hostile,
    mat_bytes,
    siblings,
    spec_mapping,
    write_user_spec,
)

from aemg.datasets.spec import load_spec, spec_from_mapping
from aemg.errors import DatasetError
from aemg.harmonize.stage import harmonize_one
from aemg.store import open_tree

ROWS = good_csv_rows(120, 1)


@pytest.fixture
def valid_store(tmp_path: Path) -> Path:
    return copy_valid_store(tmp_path)

EMG = np.random.default_rng(0).normal(0, 1e-4, size=(200, 2))
LABEL = np.ones(200)


def _with(rows: list[str], index: int, row: str) -> list[str]:
    out = list(rows)
    out[index] = row
    return out


@dataclass
class Case:
    name: str
    content: bytes
    expected: list[str]
    fmt: str = "delimited-text"
    fix: bool = False
    marks: list = field(default_factory=list)

    @property
    def relpath(self) -> str:
        return "data/s1_1.csv" if self.fmt == "delimited-text" else "data/s1_1.mat"

    def files(self) -> dict[str, bytes]:
        good = GOOD_FILES["data/s1_2.csv"] if self.fmt == "delimited-text" else mat_bytes(emg=EMG, label=LABEL)
        return {self.relpath: self.content, self.relpath.replace("s1_1", "s1_2"): good}


CASES = [
    Case("empty-file", b"", ["empty file"], fix=True),
    Case("nan-samples", csv_bytes(_with(ROWS, 30, "300,1e-4,nan,1")), ["NaN/Inf sample(s) in channels ['c2']", "first at sample"], fix=True),
    Case("inf-samples", csv_bytes(_with(ROWS, 5, "50,-inf,1e-4,1")), ["NaN/Inf sample(s) in channels ['c1']"], fix=True),
    Case("missing-column", csv_bytes([r.rsplit(",", 2)[0] + "," + r.rsplit(",", 1)[1] for r in ROWS], "time,c1,class"),
         ["wrong columns: expected 4", "found 3"]),
    Case("extra-column", csv_bytes([r + ",0" for r in ROWS], "time,c1,c2,class,c3"), ["wrong columns", "found 5"]),
    Case("row-with-extra-field", csv_bytes(_with(ROWS, 40, "400,1e-4,1e-4,1,7")), ["cannot parse", "Expected 4 fields in line 42, saw 5"]),
    Case("row-with-missing-field", csv_bytes(_with(ROWS, 40, "400,1e-4,1e-4")), ["line 42"], ),
    Case("label-length", mat_bytes(emg=EMG, label=np.ones(150)), ["label length 150 does not match signal length 200"], fmt="mat-v5"),
    Case("unknown-gesture", csv_bytes(ROWS[:60] + [r[: r.rindex(",")] + ",9" for r in ROWS[60:]]),
         ["unknown gesture code(s) [9]"], fix=True),
    Case("corrupt-mat", b"MATLAB 5.0 MAT-file" + bytes(range(256)) * 4, ["not a readable MATLAB file"], fmt="mat-v5"),
    Case("wrong-channel-count", mat_bytes(emg=np.zeros((200, 3)), label=LABEL), ["signal has shape (200, 3)"], fmt="mat-v5"),
    # a failure the reader does not foresee still names the file, on one line
    Case("text-signal-mat", mat_bytes(emg=np.array(["ab", "cd"]), label=np.ones(2)),
         ["cannot read as mat-v5 (ValueError: could not convert string to float"], fmt="mat-v5"),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name, marks=c.marks) for c in CASES])
def test_bad_file_fails_alone_and_leaves_store_identical(case: Case, valid_store: Path, tmp_path: Path) -> None:
    spec, root = hostile(tmp_path / "raw", case.files(), case.fmt)
    before = fingerprint(valid_store)
    with pytest.raises(DatasetError) as err:
        harmonize_one(spec, root, valid_store, HP)
    message = str(err.value)
    assert_one_line(message, f"{HOSTILE}: {case.relpath}: ", *case.expected)
    assert (err.value.dataset, err.value.file) == (HOSTILE, case.relpath)
    assert ("Fix: " in message) == case.fix
    assert fingerprint(valid_store) == before
    assert siblings(valid_store) == []


def test_good_data_does_replace_the_group(valid_store: Path, tmp_path: Path) -> None:
    """Control: the same path with good files publishes, so the identical-store checks mean something."""
    files = {"data/s1_1.csv": csv_bytes(good_csv_rows(300, 2))}
    spec, root = hostile(tmp_path / "raw", files)
    before = fingerprint(valid_store)
    harmonize_one(spec, root, valid_store, HP)
    after = fingerprint(valid_store)
    changed = {k for k in after if after[k] != before.get(k)}
    assert "<main>" in changed and all(k in ("<main>", HOSTILE) or k.startswith(f"{HOSTILE}/") for k in changed)
    ds = open_tree(valid_store)[HOSTILE].to_dataset()
    assert ds.sizes["recording"] == 1 and set(np.unique(ds["gesture"].values)) == {2}  # code 2 = hand_open


def test_the_fixes_the_messages_give_work(valid_store: Path, tmp_path: Path) -> None:
    nan = next(c for c in CASES if c.name == "nan-samples")
    spec, root = hostile(tmp_path / "nan", nan.files())
    summary = harmonize_one(spec, root, valid_store, {**HP, "nan_policy": "flag"})
    assert summary["flagged_channel_recordings"] >= 1
    unknown = next(c for c in CASES if c.name == "unknown-gesture")
    mapping = spec_mapping(unknown.files())
    mapping["gestures"] = {**mapping["gestures"], 9: "point_index"}
    spec, root = hostile(tmp_path / "unknown", unknown.files())
    harmonize_one(spec_from_mapping(mapping, "test"), root, valid_store, HP)


def test_raw_file_changed_after_download_is_refused(valid_store: Path, tmp_path: Path) -> None:
    spec, root = hostile(tmp_path / "raw", GOOD_FILES)
    (root / "data/s1_2.csv").write_bytes(csv_bytes(good_csv_rows(150, 0)))  # same shape, other bytes
    before = fingerprint(valid_store)
    with pytest.raises(DatasetError) as err:
        harmonize_one(spec, root, valid_store, HP)
    assert_one_line(str(err.value), "hostile: data/s1_2.csv: sha256 mismatch", "changed after download", "aemg download hostile")
    assert fingerprint(valid_store) == before


# ---- invalid YAML specs: every mistake in one message -------------------------------------

MISTAKES = {
    "format": ("format", None),  # missing key
    "sfreq": ("sfreq", -5),
    "access": ("access", "private"),
    "pattern": ("pattern", r"data/(?P<who>\w+)\.csv"),
    "gestures": ("gestures", {0: "rest", 1: "wave"}),
    "files": ("files", {"data/s1_1.csv": "not-a-hash", "../escape.csv": None}),
}
EXPECTED_PROBLEMS = [
    "missing key 'format'",
    "'sfreq' must be positive, got -5",
    "'access' must be one of ('open', 'manual'), got 'private'",
    "pattern must have a (?P<subject>...) group",
    "unknown shared name 'wave'",
    "sha256 'not-a-hash' is not 64 lowercase hex digits",
    "'../escape.csv' must be relative and stay inside the dataset folder",
]


def bad_mapping() -> dict:
    mapping = spec_mapping(GOOD_FILES)
    for key, value in MISTAKES.values():
        if value is None:
            del mapping[key]
        else:
            mapping[key] = value
    return mapping


def test_invalid_spec_reports_every_mistake_in_one_line() -> None:
    with pytest.raises(DatasetError) as err:
        spec_from_mapping(bad_mapping(), "datasets.d/hostile.yaml")
    message = str(err.value)
    assert_one_line(message, "hostile: datasets.d/hostile.yaml: invalid dataset spec", *EXPECTED_PROBLEMS)
    count = int(message.split("invalid dataset spec (", 1)[1].split(" ", 1)[0])
    assert count >= len(EXPECTED_PROBLEMS)


def test_yaml_syntax_error_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("id: broken\nchannels: [a, b\nsfreq: 200\n")
    with pytest.raises(DatasetError) as err:
        load_spec(path)
    assert_one_line(str(err.value), "broken: ", str(path), "cannot parse YAML")


def test_cli_add_refuses_invalid_spec(workdir: Path) -> None:
    from typer.testing import CliRunner

    from aemg.cli import app

    spec_file = write_user_spec(workdir / "incoming", bad_mapping())
    result = CliRunner().invoke(app, ["datasets", "add", str(spec_file), "--no-emit"])
    assert result.exit_code == 1
    line = result.stderr.strip().splitlines()[-1]
    assert_one_line(line, "aemg: error: hostile:", *EXPECTED_PROBLEMS)
    assert not (workdir / "datasets.d").exists() or not any((workdir / "datasets.d").iterdir())
