"""Tokenize on a Dask cluster given by address: same bytes as in-process, even when a worker dies."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from aemg.flows.dask_map import dask_map
from aemg.params import DEFAULTS
from aemg.store import open_tree
from aemg.tokenize.stage import tokenize_one
from aemg.tokenize.synthetic_store import write_synthetic_store

TP = {**DEFAULTS["tokenize"], "recordings_per_task": 2, "states": {"max_train_rows": 4000}}


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    # preload: a worker (re)started by its nanny imports the tokenizer before it takes a task
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=50, preload=["aemg.tokenize.dataset"]) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return write_synthetic_store(tmp_path_factory.mktemp("dask") / "harmonized.zarr", recordings_per_subject=3)


@pytest.fixture(scope="module")
def reference(store: Path) -> xr.DataTree:
    """The token group computed in this process with plain ``map``."""
    out = store.parent / "tokens-sync.zarr"
    tokenize_one(store, out, "synthetic", TP)
    return open_tree(out)["synthetic"].load()


def assert_same_tokens(path: Path, reference: xr.DataTree, params_differ: bool = False) -> None:
    got = open_tree(path)["synthetic"].load()
    for group in ("events", "states"):
        a, b = got[group].to_dataset(), reference[group].to_dataset()
        assert sorted(a.data_vars) == sorted(b.data_vars)
        for name in a.data_vars:
            np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=f"{group}/{name}")
        skip = {"tokenize_params"} if params_differ else set()
        assert {k: v for k, v in a.attrs.items() if k not in skip} == {k: v for k, v in b.attrs.items() if k not in skip}


def test_external_scheduler_address_gives_the_in_process_tokens(tmp_path, cluster, store, reference):
    with dask_map(cluster.scheduler_address) as map_fn:
        tokenize_one(store, tmp_path / "tokens.zarr", "synthetic", TP, map_fn)
    assert_same_tokens(tmp_path / "tokens.zarr", reference)


def test_a_worker_killed_mid_run_is_retried_and_the_tokens_are_identical(tmp_path, cluster, store, reference):
    from distributed import Client

    markers = tmp_path / "markers"
    markers.mkdir()
    client = Client(cluster.scheduler_address)
    worker_pids = set(client.run(os.getpid).values())

    def slow_map(fn, items):
        def task(item, fn=fn, markers=str(markers)):
            import os
            import pathlib
            import time

            first = not any(pathlib.Path(markers).iterdir())
            pathlib.Path(markers, f"{os.getpid()}-{time.monotonic_ns()}").write_text("")
            if first:
                time.sleep(1.0)  # long enough for the test to kill this worker mid-task
            return fn(item)

        return client.gather(client.map(task, list(items), pure=False))

    failure: list[BaseException] = []

    def run() -> None:
        try:
            tokenize_one(store, tmp_path / "tokens.zarr", "synthetic", TP, slow_map)
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    while not any(markers.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.01)
    victim = int(next(markers.iterdir()).name.split("-")[0])
    assert victim in worker_pids
    os.kill(victim, signal.SIGKILL)
    thread.join(120)
    client.close()
    assert not thread.is_alive() and not failure, failure
    started = [int(p.name.split("-")[0]) for p in markers.iterdir()]
    n_tasks = 5 + 3 + 5  # 9 recordings in blocks of 2: power, training sample (6 recordings), tokens
    assert len(started) >= n_tasks + 1, started  # the killed task ran again
    assert victim in started and any(pid != victim for pid in started)
    assert_same_tokens(tmp_path / "tokens.zarr", reference)


def test_chunks_shared_by_tasks_keep_every_task_rows(tmp_path, store, reference):
    """One recording per task and tiny token chunks: most chunks hold rows of two tasks, whose
    forks must not overwrite each other's rows when merged."""
    out = tmp_path / "tokens.zarr"
    tokenize_one(store, out, "synthetic", {**TP, "recordings_per_task": 1, "token_chunk_mb": 0.01})
    events = open_tree(out)["synthetic/events"].to_dataset()
    rows_per_chunk = events["token"].encoding["chunks"][0]
    assert rows_per_chunk * 6 < events.sizes["event"] / 6  # six tasks, each spanning several chunks and sharing two
    assert_same_tokens(out, reference, params_differ=True)


def test_harmonize_workers_write_their_own_chunks_the_in_process_group(tmp_path, cluster):
    """Files of 8000 samples, chunks of 2000: each harmonize task owns whole chunks and writes them
    from its worker; the group equals the one written in this process with chunks longer than the
    dataset (no task owns a chunk: the driver writes every row)."""
    from test_harmonize_stream import SYNTH, stream_hp, synthetic_dataset

    from aemg.harmonize.stage import harmonize_one
    from aemg.store import open_group

    spec, root = synthetic_dataset(tmp_path / "raw", 6)
    hp = stream_hp(chunk_samples=2000, files_in_flight=3)
    harmonize_one(spec, root, tmp_path / "local.zarr", {**hp, "chunk_samples": 262144})
    with dask_map(cluster.scheduler_address) as map_fn:
        harmonize_one(spec, root, tmp_path / "dask.zarr", hp, map_fn=map_fn)
    a, b = open_group(tmp_path / "local.zarr", SYNTH).load(), open_group(tmp_path / "dask.zarr", SYNTH).load()
    assert a.sizes["sample"] == 6 * 8000
    for name in a.variables:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
