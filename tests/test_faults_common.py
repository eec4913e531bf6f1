"""Shared helpers of the fault tests (imported by the other ``test_faults_*`` modules).

A *valid store* is built once from a small real slice (myo pre-Female0, unibo-inail subject 1) plus
a small good synthetic dataset ``hostile``; every fault test gets a private copy, fingerprints
every file under it, provokes the fault and checks the fingerprint again. Hostile datasets are
built with ``spec_from_mapping`` (no built-in spec is touched) from files written on the fly.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import io
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io
import yaml
import zarr

from aemg.datasets.spec import DatasetSpec, load_spec, spec_from_mapping
from aemg.params import DEFAULTS
from aemg.store import open_tree

from conftest import SHARED_DATA

HP: dict[str, Any] = dict(DEFAULTS["harmonize"])
HOSTILE = "hostile"
VALID_SLICE = {"myo-armband-cote-allard": ["pre-Female0"], "unibo-inail": ["1"]}
CSV_HEADER = "time,c1,c2,class"


def csv_bytes(rows: list[str], header: str = CSV_HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def good_csv_rows(n: int = 120, label: int = 1) -> list[str]:
    """``n`` rows at 100 Hz: time in ms, two channels of small values, one gesture code."""
    rng = np.random.default_rng(n)
    values = rng.normal(0, 1e-4, size=(n, 2))
    return [f"{10 * i},{a:.6g},{b:.6g},{label}" for i, (a, b) in enumerate(values)]


def mat_bytes(**variables: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables)
    return buffer.getvalue()


def spec_mapping(files: dict[str, bytes | None], fmt: str = "delimited-text", **extra: Any) -> dict[str, Any]:
    """A complete YAML-like spec for dataset ``hostile``; ``None`` content means 'no hash pinned'."""
    options = (
        {"delimiter": ",", "time_column": "time", "time_unit_s": 0.001, "label_column": "class",
         "channel_columns": ["c1", "c2"]}
        if fmt == "delimited-text"
        else {"emg_var": "emg", "label_var": "label"}
    )
    mapping: dict[str, Any] = {
        "id": HOSTILE,
        "title": "A dataset built to fail",
        "licence": "CC0-1.0",
        "access": "open",
        "format": fmt,
        "sfreq": 100,
        "units": "V",
        "scale_to_volts": 1.0,
        "signal": "emg",
        "n_subjects": 1,
        "pattern": r"data/s(?P<subject>\d+)_(?P<session>\d+)\.(?:csv|mat)",
        "reader_options": options,
        "channels": [
            {"name": "c1", "angle_deg": 0.0, "distance": 0.3},
            {"name": "c2", "angle_deg": 180.0, "distance": 0.3},
        ],
        "gestures": {0: "rest", 1: "hand_close", 2: "hand_open"},
        "base_url": "http://127.0.0.1:9/unused/",
        "files": {rel: None if content is None else hashlib.sha256(content).hexdigest() for rel, content in files.items()},
    }
    mapping.update(extra)
    return mapping


def write_dataset(folder: Path, files: dict[str, bytes], dataset_id: str = HOSTILE) -> Path:
    """Write ``files`` under ``folder/<dataset_id>/``; returns the dataset root."""
    root = folder / dataset_id
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
    return root


def hostile(folder: Path, files: dict[str, bytes], fmt: str = "delimited-text", **extra: Any) -> tuple[DatasetSpec, Path]:
    """Spec and raw root of dataset ``hostile`` holding ``files``."""
    spec = spec_from_mapping(spec_mapping(files, fmt, **extra), "test")
    return spec, write_dataset(folder, files)


def write_user_spec(directory: Path, mapping: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{mapping.get('id', 'spec')}.yaml"
    path.write_text(yaml.safe_dump(mapping, sort_keys=False))
    return path


GOOD_FILES = {"data/s1_1.csv": csv_bytes(good_csv_rows(120, 1)), "data/s1_2.csv": csv_bytes(good_csv_rows(150, 2))}


def fingerprint(store: Path) -> dict[str, str]:
    """What any reader of the store can see: main's snapshot id, the branches and tags, and, read
    through main, a sha256 of every node's attributes and every array's bytes (``<root>`` and
    ``<group>/<array>`` keys). A failed write may leave unreachable objects in the folder (a dead
    writer's chunks); those are invisible to readers and not part of the promise."""
    from aemg.store import open_repository
    from aemg.store.repository import read_session

    repo = open_repository(store)
    out = {"<main>": repo.lookup_branch("main"), "<branches>": ",".join(sorted(repo.list_branches())),
           "<tags>": ",".join(sorted(repo.list_tags()))}
    root = zarr.open_group(read_session(store).store, mode="r")
    for path, node in [("<root>", root), *root.members(max_depth=None)]:
        digest = hashlib.sha256(json.dumps(dict(node.attrs), sort_keys=True, default=str).encode())
        if isinstance(node, zarr.Array):
            digest.update(np.ascontiguousarray(node[...]).tobytes())
        out[path] = digest.hexdigest()
    return out


def siblings(store: Path) -> list[str]:
    """Names beside the store other than the store and its lock (debris of a crashed writer)."""
    return sorted(p.name for p in store.parent.iterdir() if p.name not in (store.name, f".{store.name}.lock"))


@functools.cache
def builtin_spec(dataset: str) -> DatasetSpec:
    """One built-in spec, read alone (the whole registry is slower and may hold others' drafts)."""
    from aemg.datasets.registry import BUILTIN_DIR

    return load_spec(BUILTIN_DIR / f"{dataset}.yaml")


@functools.cache
def _template_store() -> Path:
    from aemg.harmonize.stage import harmonize_one

    folder = Path(tempfile.mkdtemp(prefix="aemg-faults-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    store = folder / "harmonized.zarr"
    for dataset, subjects in VALID_SLICE.items():
        harmonize_one(builtin_spec(dataset), SHARED_DATA / dataset, store, HP, subjects)
    spec, root = hostile(folder / "raw", GOOD_FILES)
    harmonize_one(spec, root, store, HP)
    return store


def copy_valid_store(folder: Path) -> Path:
    """A private copy of a valid harmonized store: myo, unibo-inail and a good ``hostile``."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real datasets not found at {SHARED_DATA}; set AEMG_SHARED_DATA")
    store = folder / "store" / "harmonized.zarr"
    shutil.copytree(_template_store(), store)
    return store


@pytest.fixture
def valid_store(tmp_path: Path) -> Path:
    return copy_valid_store(tmp_path)


def assert_one_line(message: str, *parts: str) -> None:
    assert "\n" not in message, message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


# The helpers themselves must be able to see a change, or every "identical store" check is empty.
def test_fingerprint_sees_every_change(valid_store: Path) -> None:
    from aemg.store import open_repository

    before = fingerprint(valid_store)
    assert {"<main>", "<root>", "hostile", "unibo-inail/emg"} <= set(before)
    repo = open_repository(valid_store)
    repo.create_branch("side", before["<main>"])
    assert fingerprint(valid_store)["<branches>"] != before["<branches>"]
    repo.delete_branch("side")
    session = repo.writable_session("main")
    zarr.open_array(session.store, path="hostile/emg", mode="r+")[0, 0] += 1  # one sample of one chunk
    session.commit("tamper")
    after = fingerprint(valid_store)
    assert {k for k in after if after[k] != before.get(k)} == {"<main>", "hostile/emg"}


def test_template_store_is_valid(valid_store: Path) -> None:

    from aemg.harmonize.dataset import validate_group

    tree = open_tree(valid_store)
    assert sorted(tree.children) == sorted([*VALID_SLICE, HOSTILE])
    for name in tree.children:
        validate_group(tree[name].to_dataset())
    assert tree[HOSTILE].to_dataset().sizes["recording"] == 2
