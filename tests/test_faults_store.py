"""Crashes and races on a store, local folder and S3 alike: ``kill -9`` mid-write, two writers at once.

Writers are real processes (``subprocess``) running ``aemg.store.group_writer`` on small xarray
datasets (the stage is not the point here). One writer process takes several jobs, one thread
each, every job a write to its own store: so a few processes (the cost on 2 cores) cover every
case. A kill point is made deterministic by a hook that, at that point, writes a marker file and
sleeps; once every job of the process is at its point, the test sends SIGKILL. Racing writers (one
in each of two processes) write their groups on their private branches, then wait for a ``go``
file, so both publish at the same moment from the same base snapshot: one moves main, the other
must find that main moved and rebase. The S3 stores live on moto's loopback service (``s3``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from test_faults_common import GOOD_FILES, HOSTILE, HP, hostile

from aemg.errors import AemgError
from aemg.harmonize.dataset import write_dataset
from aemg.store import StoreRef, list_groups, open_group, open_repository, open_tree, publish_group

from conftest import S3

WRITER = r'''
import dataclasses, json, os, sys, threading, time
from pathlib import Path

import numpy as np
import xarray as xr

from aemg.store import group_writer

folder, jobs = Path(sys.argv[1]), json.loads(sys.argv[2])


def job(name, url, group, factor, point):
    def hang(where):
        (folder / name).write_text(where)
        time.sleep(300)
        os._exit(3)

    new = xr.Dataset({{"x": ("sample", np.arange({n}, dtype="float64") * factor)}}, attrs={{"version": str(factor)}})
    # point "publish": committed on the private branch and read back, main not yet moved
    with group_writer(url, group, validate=(lambda _: hang("publish")) if point == "publish" else None) as write:
        write.to_zarr(new.isel(sample=slice(0, {n} // 2)), encoding={{"x": {{"chunks": ({chunk},)}}}})
        if point == "write":  # half of the group's chunks written
            hang("write")
        write.to_zarr(new.isel(sample=slice({n} // 2, None)), mode="a", append_dim="sample")
        if point == "race":  # wait for the other process's writer
            (folder / f"{{name}}.ready").touch()
            while not (folder / f"{{name}}.go").exists():
                time.sleep(0.01)
    (folder / f"{{name}}.json").write_text(json.dumps(dataclasses.asdict(write.published)))


threads = [threading.Thread(target=job, kwargs=j) for j in jobs]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
'''
N, CHUNK = 4000, 1000
KILL_POINTS = ["write", "publish"]
LOCATIONS = ["local", "s3"]


def version(factor: float) -> xr.Dataset:
    """The data a writer with ``factor`` publishes (the base store holds factor 1)."""
    return xr.Dataset({"x": ("sample", np.arange(N, dtype="float64") * factor)}, attrs={"version": str(factor)})


def make_store(url: str) -> str:
    """A store with two groups: ``target`` (rewritten by the writers) and ``other`` (never touched)."""
    encoding = {"x": {"chunks": (CHUNK,)}}
    publish_group(url, "other", version(7.0), encoding=encoding)
    publish_group(url, "target", version(1.0), encoding=encoding)
    return url


def store_url(location: str, folder: Path, s3: S3 | None, name: str = "store") -> str:
    return make_store(str(folder / "stores" / name) if location == "local" else s3.url(name))  # type: ignore[union-attr]


@pytest.fixture
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store (``other`` and ``target`` at factor 1) on the location the test is parametrized with."""
    s3 = request.getfixturevalue("s3") if request.param == "s3" else None
    return store_url(request.param, tmp_path, s3)


def main_tip(url: str) -> str:
    return open_repository(url).lookup_branch("main")


def contents(url: str) -> dict[str, tuple[np.ndarray, dict]]:
    """Every group's data and attributes, as a reader of main sees them."""
    tree = open_tree(url)
    return {name: (tree[name]["x"].values, dict(tree[name].attrs)) for name in tree.children}


def assert_group(url: str, group: str, factor: float) -> None:
    got = open_group(url, group, chunks=None)
    np.testing.assert_array_equal(got["x"].values, version(factor)["x"].values)
    assert got.attrs["version"] == str(factor)


def start_writer(folder: Path, jobs: list[dict]) -> subprocess.Popen:
    """A writer process running ``jobs`` (name, url, group, factor, point), one thread each; files
    ``<name>`` (at a kill point), ``<name>.ready`` / ``.go`` (race barrier) and ``<name>.json``
    (its ``Published``) are in ``folder``."""
    script = folder / "writer.py"
    script.write_text(WRITER.format(n=N, chunk=CHUNK))
    log = open(folder / f"writer-{jobs[0]['name']}.log", "w")
    return subprocess.Popen([sys.executable, str(script), str(folder), json.dumps(jobs)],
                            stdout=log, stderr=subprocess.STDOUT)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log = "\n".join(p.read_text() for p in path.parent.glob("writer-*.log"))
            raise AssertionError(f"writer exited ({proc.poll()}) or timed out before {path.name}: {log}")
        time.sleep(0.02)


def stop_all(procs: list[subprocess.Popen]) -> None:
    """Never leave a sleeping writer behind."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory, s3: S3) -> dict[tuple[str, str], tuple[str, str, dict]]:
    """One writer process with a job per (location, kill point), killed once every job is at its point."""
    folder = tmp_path_factory.mktemp("kill")
    runs, jobs = {}, []
    for location in LOCATIONS:
        for point in KILL_POINTS:
            url = store_url(location, folder, s3, f"{location}-{point}")
            runs[location, point] = (url, main_tip(url), contents(url))
            jobs.append({"name": f"{location}-{point}", "url": url, "group": "target", "factor": 3.0, "point": point})
    proc = start_writer(folder, jobs)
    try:
        for job in jobs:
            wait_for(folder / job["name"], proc)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        stop_all([proc])
    for job in jobs:
        assert (folder / job["name"]).read_text() == job["point"]
    return runs


@pytest.mark.parametrize("location", LOCATIONS)
@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_9_mid_write_leaves_main_at_the_previous_snapshot_and_a_rerun_completes(
        location: str, point: str, killed) -> None:
    url, tip, before = killed[location, point]
    assert main_tip(url) == tip
    after = contents(url)
    assert sorted(after) == sorted(before) == ["other", "target"]
    for name, (values, attrs) in before.items():
        np.testing.assert_array_equal(after[name][0], values)
        assert after[name][1] == attrs
    assert_group(url, "target", 1.0)
    # a rerun publishes, over the killed writer's leftovers (private branch, orphan chunks)
    published = publish_group(url, "target", version(5.0))
    assert published.rebased_over is None and main_tip(url) == published.snapshot
    assert_group(url, "target", 5.0)
    assert_group(url, "other", 7.0)


# race -> (group of writer w1, of w2, released together: else w2 publishes only once w1 has)
RACES = {"different": ("a", "b", True), "same": ("target", "target", True), "staggered": ("a", "b", False)}
FACTORS = {"w1": 2.0, "w2": 3.0}


@pytest.fixture(scope="module")
def raced(tmp_path_factory: pytest.TempPathFactory, s3: S3) -> dict[tuple[str, str], tuple[str, dict[str, dict]]]:
    """Per (location, race): the store and each writer's ``Published``. Process ``w1`` writes factor 2,
    ``w2`` factor 3, one job per race; both jobs of a race start from the same base snapshot."""
    folder = tmp_path_factory.mktemp("race")
    urls = {(location, race): store_url(location, folder, s3, f"{location}-{race}")
            for location in LOCATIONS for race in RACES}
    procs = {w: start_writer(folder, [{"name": f"{location}-{race}-{w}", "url": url, "group": RACES[race][i],
                                       "factor": FACTORS[w], "point": "race"} for (location, race), url in urls.items()])
             for i, w in enumerate(FACTORS)}
    try:
        for (location, race) in urls:
            files = {w: folder / f"{location}-{race}-{w}" for w in procs}
            for w, proc in procs.items():
                wait_for(files[w].with_suffix(".ready"), proc)
            files["w1"].with_suffix(".go").touch()
            if not RACES[race][2]:
                wait_for(files["w1"].with_suffix(".json"), procs["w1"])
            files["w2"].with_suffix(".go").touch()
        for w, proc in procs.items():
            assert proc.wait(timeout=120) == 0, next(folder.glob(f"writer-*-{w}.log")).read_text()
    finally:
        stop_all(list(procs.values()))
    return {key: (url, {w: json.loads((folder / f"{'-'.join(key)}-{w}.json").read_text()) for w in procs})
            for key, url in urls.items()}


def later_writer(url: str, published: dict[str, dict]) -> str:
    """The writer that found main moved and was rebased onto the other's snapshot (main's tip now)."""
    rebased = [name for name, p in published.items() if p["rebased_over"]]
    assert len(rebased) == 1, published
    later = rebased[0]
    first = next(name for name in published if name != later)
    assert published[later]["rebased_over"] == published[first]["snapshot"]
    assert main_tip(url) == published[later]["snapshot"]
    return later


@pytest.mark.parametrize("race", ["different", "staggered"])
@pytest.mark.parametrize("location", LOCATIONS)
def test_two_writers_of_different_groups_both_end_up_in_main(location: str, race: str, raced) -> None:
    """Released together, either may win; released one after the other, the second is rebased
    (an unconditional move of main would drop the first's group)."""
    url, published = raced[location, race]
    later = later_writer(url, published)
    assert race == "different" or later == "w2"
    assert list_groups(url) == ["a", "b", "other", "target"]
    assert_group(url, "a", 2.0)
    assert_group(url, "b", 3.0)
    assert_group(url, "target", 1.0)


@pytest.mark.parametrize("location", LOCATIONS)
def test_two_writers_of_the_same_group_leave_the_later_ones_version(location: str, raced) -> None:
    url, published = raced[location, "same"]
    later = later_writer(url, published)
    assert_group(url, "target", FACTORS[later])  # whole: data agrees with its attributes
    assert_group(url, "other", 7.0)


@pytest.mark.parametrize("url", LOCATIONS, indirect=True)
def test_harmonize_over_a_commit_made_meanwhile_says_rebased_over(url: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Another run commits while harmonize writes (injected after its write): the summary says so."""
    import aemg.harmonize.stage as stage

    spec, root = hostile(tmp_path / "raw", GOOD_FILES)
    meanwhile = []

    def write_then_someone_commits(*args, **kwargs) -> None:
        write_dataset(*args, **kwargs)
        meanwhile.append(publish_group(url, "a", version(2.0)).snapshot)

    monkeypatch.setattr(stage, "write_dataset", write_then_someone_commits)
    summary = stage.harmonize_one(spec, root, url, HP)
    assert summary["rebased_over"] == meanwhile[0] and summary["snapshot"] == main_tip(url)
    assert list_groups(url) == ["a", HOSTILE, "other", "target"]
    assert_group(url, "a", 2.0)
    assert open_group(url, HOSTILE).sizes["recording"] == 2


@pytest.mark.parametrize("url", LOCATIONS, indirect=True)
def test_failed_validation_leaves_main_untouched(url: str) -> None:
    tip, before = main_tip(url), contents(url)

    def reject(_):
        raise ValueError("schema says no")

    with pytest.raises(ValueError, match="schema says no"):
        publish_group(url, "target", version(9.0), validate=reject)
    with pytest.raises(ValueError, match="one path component"):
        publish_group(url, "../escape", version(9.0))
    assert main_tip(url) == tip
    assert_group(url, "target", 1.0)
    assert sorted(contents(url)) == sorted(before)
    assert open_repository(url).list_branches() == {"main"}  # the failed write's private branch is gone


@pytest.mark.parametrize("url", LOCATIONS, indirect=True)
def test_a_pinned_snapshot_reads_the_old_data_after_a_new_commit(url: str) -> None:
    pinned = StoreRef(url, main_tip(url))
    publish_group(url, "target", version(4.0))
    np.testing.assert_array_equal(open_group(pinned, "target", chunks=None)["x"].values, version(1.0)["x"].values)
    assert open_group(pinned, "target").attrs["version"] == "1.0"
    assert_group(url, "target", 4.0)
    with pytest.raises(AemgError, match="read-only"):
        publish_group(pinned, "target", version(4.0))


def test_a_plain_zarr_store_or_a_foreign_folder_is_refused(tmp_path: Path) -> None:
    old = tmp_path / "harmonized.zarr"
    version(1.0).to_zarr(old, group="target", zarr_format=3)
    with pytest.raises(AemgError, match=r"plain Zarr store from an older aemg"):
        publish_group(old, "target", version(2.0))
    with pytest.raises(AemgError, match=r"plain Zarr store from an older aemg"):
        open_group(old, "target")
    np.testing.assert_array_equal(xr.open_zarr(old, group="target")["x"].values, version(1.0)["x"].values)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(AemgError, match="exists but is not an aemg store"):
        publish_group(other, "target", version(2.0))
    assert [p.name for p in other.iterdir()] == ["keep.txt"]
