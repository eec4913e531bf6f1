"""Crashes and races while publishing: ``kill -9`` mid-publish, two writers at once.

Writers are real processes (``subprocess``) running ``aemg.store.publish_group``. A kill point is
made deterministic by a hook that, at that point of the publish, writes a marker file and sleeps;
the test waits for the marker and sends SIGKILL. Every writer starts from a copy of a valid store
(myo, unibo-inail, hostile) and publishes a new version of one group, derived from its old one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from test_faults_common import HOSTILE, copy_valid_store, fingerprint, siblings

from aemg.harmonize.dataset import validate_group
from aemg.store import list_groups, open_group

WRITER = r'''
import os, sys, time
from pathlib import Path

import xarray as xr

from aemg.store import zarr_store

store, source, targets, point, marker, go = sys.argv[1:7]
store, marker, go = Path(store), Path(marker), Path(go)


def hang(where):
    marker.write_text(where)
    time.sleep(300)
    os._exit(3)


if point == "write":  # mid to_zarr of the group's private build folder: after its 4th key
    from zarr.storage import LocalStore

    original_set, calls = LocalStore.set, [0]

    async def set_(self, key, value):
        await original_set(self, key, value)
        if ".build-" in str(self.root):
            calls[0] += 1
            if calls[0] == 4:
                hang("write")

    LocalStore.set = set_
elif point == "consolidate":  # staging complete, root metadata not yet consolidated
    original_consolidate = zarr_store.zarr.consolidate_metadata
    zarr_store.zarr.consolidate_metadata = lambda *a, **k: hang("consolidate")
elif point in ("swap", "swapped"):  # just before / just after the atomic exchange
    original_swap = zarr_store._swap_in

    def swap(store_, staging):
        if point == "swapped":
            original_swap(store_, staging)
        hang(point)

    zarr_store._swap_in = swap
elif point == "fallback":  # no RENAME_EXCHANGE: between "store -> old" and "staging -> store"
    zarr_store._exchange = lambda a, b: False
    original_rename = Path.rename

    def rename(self, target):
        if Path(target) == store.resolve() and ".staging-" in self.name:
            hang("fallback")
        return original_rename(self, target)

    Path.rename = rename

base = xr.open_zarr(store, group=source, chunks=None).load()
for var in base.variables.values():
    var.encoding = {}
marker.parent.mkdir(parents=True, exist_ok=True)
(marker.parent / (marker.name + ".ready")).touch()
while go.name != "-" and not go.exists():
    time.sleep(0.01)
for i, target in enumerate(targets.split(",")):
    version = f"{marker.name}:{i}"
    new = base.assign(emg=base["emg"] * (i + 2))
    new.attrs["version"] = version
    zarr_store.publish_group(store, target, new)
print("published", targets)
'''

KILL_POINTS = ["write", "consolidate", "swap", "swapped", "fallback"]


def start_writer(script: Path, store: Path, source: str, targets: list[str], point: str, marker: Path, go: str = "-"):
    log = open(marker.with_suffix(".log"), "w")
    return subprocess.Popen(
        [sys.executable, str(script), str(store), source, ",".join(targets), point, str(marker), go],
        stdout=log, stderr=subprocess.STDOUT,
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"writer exited ({proc.returncode}) before {path.name}: {path.with_suffix('.log').read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"writer never reached {path.name}")
        time.sleep(0.02)


def assert_store_valid(store: Path) -> xr.DataTree:
    """Opens with plain xarray (consolidated metadata) and every group passes the read contract."""
    tree = xr.open_datatree(store, engine="zarr")
    assert sorted(tree.children) == sorted(list_groups(store))
    for name in tree.children:
        ds = tree[name].to_dataset()
        validate_group(ds)
        assert ds["emg"].shape == open_group(store, name)["emg"].shape
    return tree


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[Path, dict[str, str], str]]]:
    """One writer per kill point, all started at once (fast on 2 cores), each killed at its point."""
    folder = tmp_path_factory.mktemp("kill")
    script = folder / "writer.py"
    script.write_text(WRITER)
    runs = {}
    for point in KILL_POINTS:
        store = copy_valid_store(folder / point)
        before = fingerprint(store)
        marker = folder / point / "marker"
        runs[point] = (store, before, marker, start_writer(script, store, HOSTILE, [HOSTILE], point, marker))
    out = {}
    try:
        for point, (store, before, marker, proc) in runs.items():
            wait_for(marker, proc)
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
            assert marker.read_text() == point
            out[point] = (store, before, marker.name)
        yield out
    finally:  # never leave a sleeping writer behind
        for *_, proc in runs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_9_mid_publish_leaves_a_readable_store_and_a_rerun_completes(point: str, killed) -> None:
    from aemg.store import publish_group

    store, before, marker = killed[point]
    if point == "fallback":
        # The one window of the two-rename fallback: no store at its path, the previous one beside it.
        assert not store.exists() and any(n.startswith(".harmonized.zarr.old-") for n in siblings(store))
        assert HOSTILE in list_groups(store)  # any aemg reader puts the previous store back first
    if point == "swapped":  # the exchange happened: the new version, complete and consistent
        after = fingerprint(store)
        assert {k for k in after if after[k] != before.get(k)} <= {"zarr.json"} | {k for k in after if k.startswith(f"{HOSTILE}/")}
        assert xr.open_datatree(store, engine="zarr")[HOSTILE].attrs["version"] == f"{marker}:0"
    else:  # killed before the exchange: the previous store, byte for byte
        assert fingerprint(store) == before
    assert_store_valid(store)
    # a re-run finishes the job and clears the crashed writer's debris
    old = xr.open_zarr(store, group=HOSTILE, chunks=None).load()
    for var in old.variables.values():
        var.encoding = {}
    new = old.assign(emg=old["emg"] * 3)
    new.attrs["version"] = "rerun"
    publish_group(store, HOSTILE, new, validate=validate_group)
    tree = assert_store_valid(store)
    assert tree[HOSTILE].attrs["version"] == "rerun"
    np.testing.assert_array_equal(tree[HOSTILE]["emg"].values, new["emg"].values)
    after = fingerprint(store)
    assert all(after[k] == v for k, v in before.items() if k.startswith(("myo-armband-cote-allard/", "unibo-inail/")))
    assert siblings(store) == []


def test_two_writers_at_once_never_corrupt_the_store(tmp_path: Path) -> None:
    """Two processes publish 4 versions each (own group + a shared one) at the same moment."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    store = copy_valid_store(tmp_path)
    before = fingerprint(store)
    go = tmp_path / "go"
    procs = {}
    for name in ("w1", "w2"):
        marker = tmp_path / name
        targets = [name, "both", name, "both"]
        procs[name] = (start_writer(script, store, HOSTILE, targets, "none", marker, str(go)), marker)
    try:
        for proc, marker in procs.values():
            wait_for(marker.parent / (marker.name + ".ready"), proc)
        go.touch()  # both are imported and loaded: release them together
        for proc, marker in procs.values():
            assert proc.wait(timeout=120) == 0, marker.with_suffix(".log").read_text()
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    tree = assert_store_valid(store)
    assert sorted(tree.children) == sorted(["myo-armband-cote-allard", "unibo-inail", HOSTILE, "w1", "w2", "both"])
    base = tree[HOSTILE]["emg"].values
    assert tree["w1"].attrs["version"] == "w1:2" and tree["w2"].attrs["version"] == "w2:2"  # no lost update
    assert tree["both"].attrs["version"] in ("w1:3", "w2:3")
    np.testing.assert_array_equal(tree["both"]["emg"].values, base * 5)  # data agrees with its metadata
    after = fingerprint(store)
    assert all(after[k] == v for k, v in before.items() if not k.startswith("zarr.json"))
    assert siblings(store) == []


def test_failed_validation_or_bad_target_leaves_the_store_identical(tmp_path: Path) -> None:
    from aemg.errors import AemgError
    from aemg.store import publish_group

    store = copy_valid_store(tmp_path)
    before = fingerprint(store)
    ds = xr.open_zarr(store, group=HOSTILE, chunks=None).load()
    for var in ds.variables.values():
        var.encoding = {}

    def reject(_):
        raise ValueError("schema says no")

    with pytest.raises(ValueError, match="schema says no"):
        publish_group(store, HOSTILE, ds.assign(emg=ds["emg"] * 0), validate=reject)
    with pytest.raises(ValueError, match="one path component"):
        publish_group(store, "../escape", ds)
    assert fingerprint(store) == before and siblings(store) == []
    # a folder that is not a Zarr store is never swallowed
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(AemgError, match="not a Zarr v3 store"):
        publish_group(other, HOSTILE, ds)
    assert (other / "keep.txt").read_text() == "mine"
    assert not list(tmp_path.glob(".notes.build-*"))  # refused before anything was built
