"""Shared fixtures: a loopback mirror of ../shared/data, a loopback S3 service, Prefect's test harness, slice params."""

from __future__ import annotations

import functools
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from aemg.params import with_overrides

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AEMG_SHARED_DATA", REPO.parent / "shared" / "data"))

# A small real slice: three subjects of each dataset (LOSO needs three).
SLICE_SUBJECTS = {
    "uci-emg-gestures": ["01", "03", "04"],
    "myo-armband-cote-allard": ["pre-Female0", "pre-Female1", "pre-Male0"],
    "flexemg": ["001", "002", "003"],
    "unibo-inail": ["1", "2", "3"],
}
TINY_MODEL = {
    "width": 32, "depth": 1, "heads": 2, "conv_channels": 8, "codebook_size": 32, "code_dim": 16,
    "epochs_vq": 1, "epochs_mtm": 1, "batch_size": 1024,
}


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep test output readable
        pass


def serve_directory(directory: Path) -> tuple[ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real datasets not found at {SHARED_DATA}; set AEMG_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def mirror(shared_data: Path) -> Iterator[str]:
    """URL of a loopback HTTP mirror with exactly the layout of ../shared/data."""
    server, url = serve_directory(shared_data)
    yield url
    server.shutdown()


@dataclass(frozen=True)
class S3:
    """A loopback S3 service (moto, the real S3 API over HTTP) and one bucket on it."""

    endpoint: str
    bucket: str

    def url(self, name: str) -> str:
        """A fresh ``s3://`` store URL (a unique prefix), so tests sharing the bucket never meet."""
        return f"s3://{self.bucket}/{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    """moto's S3 on 127.0.0.1 with a bucket, and the AWS_* variables every store (and every child
    process or Dask worker started meanwhile) reads; one server per test module (~1 s to start)."""
    from benchmarks.common import s3_on_loopback

    with s3_on_loopback("aemg-test") as endpoint:
        yield S3(endpoint, "aemg-test")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def one_thread() -> Iterator[None]:
    """torch and BLAS on one thread: tiny fits run faster so, and timings stay stable on a shared machine."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory (relative default paths land here)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AEMG_DATASETS_D", str(tmp_path / "datasets.d"))
    return tmp_path


def write_params(directory: Path, datasets: list[str], **sections: object) -> Path:
    params = {
        "datasets": datasets,
        "subjects": {d: SLICE_SUBJECTS[d] for d in datasets if d in SLICE_SUBJECTS},
        "pretrain": {"overrides": TINY_MODEL, "seeds": [0]},  # one model per dataset keeps tests short
        # a baseline, AEMG and its ablation, zero-shot only: the grids are for `make demo`
        "evaluate": {"datasets": datasets, "methods": ["lda", "aemg_probe", "aemg_probe_fixedwin"], "grid": None},
        "levers": {"run": ["mean_pool"]},  # one lever that needs no new model
    }
    params.update(sections)
    path = directory / "params.yaml"
    path.write_text(yaml.safe_dump(with_overrides(params)))  # complete: DVC needs every section
    return path


def write_token_store(path: Path, datasets: list[str], n_events: int = 300) -> None:
    """Synthetic events in the token store's contract layout (``/<id>/events``)."""
    import numpy as np
    import xarray as xr

    from aemg.model import make_synthetic_tokenset
    from aemg.store import publish_group

    for i, dataset in enumerate(datasets):
        ts = make_synthetic_tokenset(n_events=n_events, n_chans=4, n_subjects=5, seed=i, dataset=dataset)
        angle = np.degrees(np.arctan2(ts.positions[:, 1], ts.positions[:, 0]))
        events = xr.Dataset({
            "token": (("event", "channel", "time"), ts.tokens), "sentence": ("event", ts.sentence),
            "order": ("event", ts.order), "time_in_sentence_s": ("event", ts.onset),
            "subject": ("event", ts.subject.astype(object)),
            "angle_deg": ("channel", angle), "distance": ("channel", ts.positions[:, 2]),
        })
        publish_group(path, dataset, xr.DataTree.from_dict({"events": events}))
