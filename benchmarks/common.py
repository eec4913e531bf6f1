"""What every benchmark shares: best-of timing, process memory, and the report it leaves.

Each benchmark writes its whole report as JSON to ``--out`` and prints one JSON line (its
summary) last, so that CI logs and notes can quote one line.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def best_of(repeats: int, fn: Any) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def reset_peak_rss() -> None:
    """Reset this process's high-water RSS (Linux: ``5`` into /proc/self/clear_refs).

    ``ru_maxrss`` cannot be used for workers: across fork + exec Linux carries the parent's
    high-water mark into the child's, so a worker spawned by a big parent reports the parent.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """High-water RSS of this process since start or the last :func:`reset_peak_rss` (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def finish(report: dict[str, Any], summary: dict[str, Any], out: str | Path) -> None:
    """Store ``summary`` in ``report``, write the report to ``out``, print the summary line."""
    report["summary"] = summary
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps(summary))


@contextmanager
def s3_on_loopback(bucket: str) -> Iterator[str]:
    """moto's S3 server (the real S3 API over HTTP) on 127.0.0.1 with one bucket, and the AWS_*
    variables every store, child process and Dask worker started meanwhile reads (restored after);
    yields the endpoint URL. Used by the store benchmark and the tests' ``s3`` fixture."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true", "NO_PROXY": host}
    dropped = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION")
    saved = {k: os.environ.get(k) for k in (*env, *dropped)}
    os.environ.update(env)
    for name in dropped:
        os.environ.pop(name, None)
    try:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()
