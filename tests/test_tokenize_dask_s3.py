"""Dask workers that share nothing but the store: tokenize from S3 into S3, same tokens as in-process.

The workers are separate processes with their own scratch folder (not the driver's working
directory); they read the harmonized store and write their rows of the token store on moto's
loopback S3 (``s3`` fixture). The reference is the same tokenization with the builtin ``map``
into a local store, so the comparison also says that S3 and a folder hold the same tokens.
"""

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

from conftest import S3

# Chunks of 26 event rows (of ~400): each token-writing task writes whole chunks of its own, not
# only rows it shares with a neighbour (those the driver writes, see aemg.store.ForkWriter).
TP = {**DEFAULTS["tokenize"], "recordings_per_task": 2, "states": {"max_train_rows": 4000}, "token_chunk_mb": 0.02}
N_RECORDINGS = 6  # 3 subjects x 2: three tasks per pass


@pytest.fixture(scope="module")
def harmonized(s3: S3) -> str:
    return write_synthetic_store(s3.url("harmonized"), recordings_per_subject=N_RECORDINGS // 3)


@pytest.fixture(scope="module")
def reference(harmonized: str, tmp_path_factory: pytest.TempPathFactory) -> xr.DataTree:
    """The token group computed in this process with plain ``map``, into a local store."""
    out = tmp_path_factory.mktemp("reference") / "tokens"
    tokenize_one(harmonized, out, "synthetic", TP)
    tree = open_tree(out)["synthetic"].load()
    events = tree["events"].to_dataset()
    assert events.sizes["event"] > 0 and bool((events["stop"] > events["start"]).all())  # every row written
    rows_per_task = events.sizes["event"] / (N_RECORDINGS // 2)
    assert rows_per_task > 2 * events["start"].encoding["chunks"][0]  # so each task's rows hold whole chunks
    return tree


@pytest.fixture(scope="module")
def cluster(s3: S3, tmp_path_factory: pytest.TempPathFactory):
    """Two worker processes (started after ``s3`` set the AWS_* variables they inherit)."""
    from distributed import LocalCluster

    # preload: a worker (re)started by its nanny imports the tokenizer before it takes a task
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=50,
                      local_directory=str(tmp_path_factory.mktemp("workers")), preload=["aemg.tokenize.dataset"]
                      ) as cluster:
        yield cluster


def assert_same_tokens(url: str, reference: xr.DataTree) -> None:
    got = open_tree(url)["synthetic"].load()
    assert sorted(got.children) == sorted(reference.children) == ["events", "states"]
    for group in ("events", "states"):
        a, b = got[group].to_dataset(), reference[group].to_dataset()
        assert sorted(a.variables) == sorted(b.variables)
        for name in a.variables:
            np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=f"{group}/{name}")
        assert a.attrs == b.attrs


def test_workers_sharing_only_the_s3_store_write_the_in_process_tokens_even_when_one_is_killed(
        s3: S3, harmonized: str, reference, cluster, tmp_path: Path) -> None:
    """The first token-writing task, once it has written its rows (to its fork of the S3 store),
    sleeps; the test kills its worker process meanwhile: Dask reruns the task elsewhere, and the
    dead attempt's chunks, never merged, must not show."""
    from distributed import Client

    markers = tmp_path / "markers"  # test plumbing only: the tokenizer's data goes through S3
    markers.mkdir()
    with Client(cluster.scheduler_address) as client:
        worker_pids = set(client.run(os.getpid).values())

    def killable(fn, markers=str(markers)):
        def task(item):
            import os
            import pathlib
            import time

            out = fn(item)
            if isinstance(item, tuple):  # (recordings, ForkWriter): a token-writing task
                first = not any(pathlib.Path(markers).iterdir())
                pathlib.Path(markers, f"{os.getpid()}-{time.monotonic_ns()}").write_text("")
                if first:
                    time.sleep(2.0)  # long enough for the test to kill this worker
            return out

        return task

    tokens, failure = s3.url("tokens"), []

    def run() -> None:
        try:
            with dask_map(cluster.scheduler_address) as map_fn:
                tokenize_one(harmonized, tokens, "synthetic", TP, lambda fn, items: map_fn(killable(fn), items))
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 90
    while not any(markers.iterdir()) and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.01)
    victim = int(next(markers.iterdir()).name.split("-")[0])
    assert victim in worker_pids
    os.kill(victim, signal.SIGKILL)
    thread.join(120)
    assert not thread.is_alive() and not failure, failure
    started = [int(p.name.split("-")[0]) for p in markers.iterdir()]
    assert len(started) == N_RECORDINGS // 2 + 1, started  # every token-writing task, the killed one twice
    assert any(pid != victim for pid in started)
    assert_same_tokens(tokens, reference)
