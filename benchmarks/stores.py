"""Store benchmark: the same harmonize and tokenize on a local folder and on S3 over loopback.

Run from the repository root::

    .venv/bin/python -m benchmarks.stores                   # all parts, a 2-hour recording included
    .venv/bin/python -m benchmarks.stores --long-hours 0    # skip the 2-hour recording

One run, one machine, both stores side by side, so the ratios need no reference from elsewhere:

(a) harmonize one real dataset (``--dataset``, raw files from the shared data folder) into a
    local store and into ``s3://`` on a moto server on loopback (a real S3 API over HTTP):
    seconds each and ``harmonize_s3_over_local``.
(b) tokenize a synthetic harmonized store (``--recordings`` x ``--seconds``) on a LocalCluster of
    1 and then 2 single-threaded worker processes, reading from and writing to local stores, then
    to S3: ``tokenize_s3_over_local`` (2 workers), ``scaling_2_workers`` (local and S3), and the
    peak RSS of the driver (this process) and of the worst worker in each case.
(c) peak RSS of the driver and of each worker while tokenizing two recordings of
    ``--long-hours`` hours each (``--long-sfreq`` Hz, ``--long-chans`` channels) into a local
    store: workers write their own token rows, so neither should grow with the recording
    (target: <= 500 MB each).

Each timing is the best of ``--repeats``. The loopback S3 server runs in this process's threads,
so on a 2-core machine it competes with the workers: the S3 ratio is an upper bound on what a
real object store costs in CPU, and says nothing of network latency. The last line is one JSON
object (the summary); the full report goes to ``--out``.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and not __package__:
    sys.exit("run as a module from the repository root: python -m benchmarks.stores")

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import best_of, current_rss_mb, finish, peak_rss_mb, reset_peak_rss, s3_on_loopback

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RAW = Path(os.environ.get("AEMG_SHARED_DATA", REPO.parent / "shared" / "data"))


def bench_harmonize(args: argparse.Namespace, tmp: Path, s3: str) -> dict[str, Any]:
    from aemg.datasets.registry import get_spec
    from aemg.harmonize.stage import harmonize_one
    from aemg.params import DEFAULTS

    spec, hp = get_spec(args.dataset), DEFAULTS["harmonize"]
    out: dict[str, Any] = {"dataset": args.dataset}
    targets = {"local": lambda i: tmp / f"h{i}.zarr", "s3": lambda i: f"{s3}/harmonize-{i}"}
    for where, target in targets.items():
        runs = iter(range(args.repeats))  # a fresh store each repeat: the first commit's cost is measured
        out[f"{where}_s"], summary = best_of(args.repeats, lambda target=target, runs=runs: harmonize_one(
            spec, args.raw / spec.id, target(next(runs)), hp))
        out["recordings"] = summary["recordings"]
    out["s3_over_local"] = out["s3_s"] / out["local_s"]
    return out


def _cluster_map(n_workers: int, workdir: Path):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                           silence_logs=50, local_directory=str(workdir), preload=["aemg.tokenize.dataset"])
    client = Client(cluster)

    def map_fn(fn, items):
        return client.gather(client.map(fn, list(items), pure=False))

    return cluster, client, map_fn


def _tokenize_run(source: Any, tokens: Any, map_fn: Any, client: Any, tp: dict[str, Any], repeats: int
                  ) -> dict[str, Any]:
    from aemg.tokenize.stage import tokenize_one

    client.run(reset_peak_rss)
    reset_peak_rss()
    driver_before = current_rss_mb()
    t, summary = best_of(repeats, lambda: tokenize_one(source, tokens, "synthetic", tp, map_fn))
    return {"s": t, "events": summary["events"], "driver_peak_rss_mb": peak_rss_mb(),
            "driver_added_rss_mb": peak_rss_mb() - driver_before,
            "worker_peak_rss_mb": max(client.run(peak_rss_mb).values())}


def bench_tokenize(args: argparse.Namespace, tmp: Path, s3: str) -> dict[str, Any]:
    from aemg.params import DEFAULTS
    from aemg.tokenize.synthetic_store import write_synthetic_store

    shape = {"n_subjects": 4, "recordings_per_subject": args.recordings // 4, "duration_s": args.seconds,
             "sfreq": args.sfreq, "n_chans": args.chans}
    local = write_synthetic_store(tmp / "harmonized.zarr", **shape)
    remote = write_synthetic_store(f"{s3}/harmonized", **shape)
    tp = {**DEFAULTS["tokenize"], "recordings_per_task": 1}
    out: dict[str, Any] = {**shape}
    for n_workers in (1, 2):
        cluster, client, map_fn = _cluster_map(n_workers, tmp / f"workers-{n_workers}")
        try:
            for where, (source, tokens) in {"local": (local, tmp / f"tokens-{n_workers}.zarr"),
                                            "s3": (remote, f"{s3}/tokens-{n_workers}")}.items():
                out[f"{where}_{n_workers}_workers"] = _tokenize_run(source, tokens, map_fn, client, tp, args.repeats)
        finally:
            client.close()
            cluster.close()
    out["s3_over_local"] = out["s3_2_workers"]["s"] / out["local_2_workers"]["s"]
    for where in ("local", "s3"):
        out[f"scaling_2_workers_{where}"] = out[f"{where}_1_workers"]["s"] / out[f"{where}_2_workers"]["s"]
    return out


def long_driver(store: Path, tokens: Path, workdir: Path) -> dict[str, Any]:
    """In a fresh process (the driver): tokenize ``store`` on 2 workers; peaks of driver and workers."""
    from aemg.params import DEFAULTS

    cluster, client, map_fn = _cluster_map(2, workdir)
    try:
        idle = max(client.run(current_rss_mb).values())
        run = _tokenize_run(store, tokens, map_fn, client, {**DEFAULTS["tokenize"], "recordings_per_task": 1}, 1)
    finally:
        client.close()
        cluster.close()
    return {"worker_idle_rss_mb": idle, **run}


def bench_long_recording(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Part (c): the store is written here, the tokenize driver runs in a fresh subprocess, so its
    peak RSS is that of a driver, not of this process's earlier work."""
    from aemg.tokenize.synthetic_store import write_synthetic_store

    seconds = args.long_hours * 3600
    store = write_synthetic_store(tmp / "long.zarr", n_subjects=2, recordings_per_subject=1, duration_s=seconds,
                                  sfreq=args.long_sfreq, n_chans=args.long_chans)
    proc = subprocess.run([sys.executable, "-m", "benchmarks.stores", "--long-driver", str(store),
                           str(tmp / "long-tokens.zarr"), str(tmp / "workers-long")],
                          capture_output=True, text=True, check=True, cwd=REPO)
    return {"hours": args.long_hours, "sfreq": args.long_sfreq, "channels": args.long_chans,
            "recording_mb": seconds * args.long_sfreq * args.long_chans * 4 / 2**20,
            **json.loads(proc.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="uci-emg-gestures", help="real dataset harmonized in part (a)")
    parser.add_argument("--raw", type=Path, default=DEFAULT_RAW, help="folder holding <dataset>/ raw files")
    parser.add_argument("--recordings", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--sfreq", type=float, default=2000.0)
    parser.add_argument("--chans", type=int, default=8)
    parser.add_argument("--long-hours", type=float, default=2.0, help="0 skips part (c)")
    parser.add_argument("--long-sfreq", type=float, default=1000.0)
    parser.add_argument("--long-chans", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="metrics/benchmark_stores.json")
    parser.add_argument("--long-driver", nargs=3, type=Path, help=argparse.SUPPRESS)  # internal: part (c)'s driver
    args = parser.parse_args()
    if args.long_driver:
        print(json.dumps(long_driver(*args.long_driver)))
        return
    if args.recordings < 4:
        parser.error("--recordings must be at least 4: the synthetic store has four subjects")
    report: dict[str, Any] = {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="aemg-bench-stores-") as scratch, s3_on_loopback("aemg"):
        tmp, s3 = Path(scratch), "s3://aemg"
        report["harmonize"] = bench_harmonize(args, tmp, s3)
        print("harmonize", report["harmonize"], flush=True)
        report["tokenize"] = bench_tokenize(args, tmp, s3)
        print("tokenize", report["tokenize"], flush=True)
        if args.long_hours > 0:
            report["long_recording"] = bench_long_recording(args, tmp)
            print("long_recording", report["long_recording"], flush=True)
    report["loadavg_end"] = os.getloadavg()
    tok, long = report["tokenize"], report.get("long_recording", {})
    summary = {
        "harmonize_s3_over_local": report["harmonize"]["s3_over_local"],
        "tokenize_s3_over_local": tok["s3_over_local"],
        "scaling_2_workers_local": tok["scaling_2_workers_local"],
        "scaling_2_workers_s3": tok["scaling_2_workers_s3"],
        "tokenize_driver_peak_rss_mb": max(v["driver_peak_rss_mb"] for k, v in tok.items() if k.endswith("_workers")),
        "tokenize_worker_peak_rss_mb": max(v["worker_peak_rss_mb"] for k, v in tok.items() if k.endswith("_workers")),
        "long_recording_mb": long.get("recording_mb"),
        "long_driver_peak_rss_mb": long.get("driver_peak_rss_mb"),
        "long_worker_peak_rss_mb": long.get("worker_peak_rss_mb"),
        "loadavg": [report["loadavg_start"][0], report["loadavg_end"][0]],
    }
    finish(report, summary, args.out)


if __name__ == "__main__":
    main()
