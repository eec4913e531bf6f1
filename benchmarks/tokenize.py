"""Tokenizer benchmark: ten features vs LibEMG and an rFFT floor, events, Dask scaling, peak memory.

Run from the repository root (as a module: this file's name shadows the standard library's
``tokenize`` when run as a script)::

    .venv/bin/python -m benchmarks.tokenize                 # 16 ch x 10 min at 2 kHz
    .venv/bin/python -m benchmarks.tokenize --minutes 1     # smaller input

One run, one synthetic input (band-limited noise with contraction bursts, seeded):

(a) the ten features of :func:`aemg.tokenize.features.window_features` (50 ms windows, 25 ms
    stride; its default engine, the numba kernels, and beside it the numpy path) against LibEMG's ``FeatureExtractor`` (its nine overlapping features: RMS, ZC, SSC,
    WL, MAV, WAMP, AR(1), MNF, MDF; LibEMG has no PSR) on identical windows, and against a
    floor of one rFFT per window (same chunking as ours) in this process. LibEMG pins numpy<2,
    so it cannot live in the project's venv: it runs in its own venv
    (``--libemg-python``, default ``~/.cache/aemg/libemg-venv/bin/python``;
    ``--install-libemg`` creates it with ``pip install libemg``). The input is handed over as
    a .npy file; that process times LibEMG's ``extract_features`` on the materialised windows
    (as LibEMG's own ``get_windows`` returns them) and, as a cross-check, our features too.
(b) the contraction-event tokenizer (``detect`` + ``tokens_from_events``, AEMG defaults).
(c) ``tokenize_one`` (events + muscle states into a token store) of a synthetic store on a
    LocalCluster with 1 and then 2 single-threaded workers, warm (imports done), same input;
    beside it the same number of tasks of fixed pure-CPU work (``cpu_ceiling_2_workers``):
    on a shared 2-core machine this ceiling, not the tokenizer, bounds ``scaling_2_workers``.
(d) peak RSS of this process and of every Dask worker, and the event tokenizer's peak RSS
    as the recording grows: ``--minutes`` and 4x as long (the input repeated), each in a fresh
    subprocess reading the recording block by block from a .npy file, as a worker reads the
    store. Detection alone must stay flat; cutting tokens adds the tokens themselves (the
    result a worker returns), reported beside it as ``token_mb``.

Throughputs are input samples (time x channels) per second; each timing is the best of
``--repeats``. The last line is one JSON object with ``speedup_vs_libemg``,
``ratio_to_fft_floor`` (numba kernels; ``ratio_to_fft_floor_numpy`` for the numpy path), ``scaling_2_workers`` and ``peak_rss_mb`` (the worst per-worker peak:
Dask workers and event-tokenizer subprocesses; this process's own peak, which holds the whole
input and LibEMG's comparison, is ``peak_rss_main_mb``), plus the details. The machine's load
average is recorded next to the Dask timings: on a shared machine they measure the neighbours too.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and not __package__:
    sys.exit("run as a module from the repository root: python -m benchmarks.tokenize")

import argparse
import json
import os
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided
from scipy import fft as sp_fft
from scipy import signal

from benchmarks.common import best_of, current_rss_mb, finish, peak_rss_mb, reset_peak_rss

DEFAULT_LIBEMG_PYTHON = Path.home() / ".cache" / "aemg" / "libemg-venv" / "bin" / "python"
FEATURES_FILE = Path(__file__).resolve().parents[1] / "aemg" / "tokenize" / "features.py"
WAMP_THRESHOLD = 0.5  # x signal RMS (the input has unit RMS at rest x 1)


def synthetic_input(minutes: float, sfreq: float, n_chans: int, seed: int = 0) -> np.ndarray:
    """(n_times, n_chans) float32: 20-450 Hz noise whose amplitude steps between rest and bursts."""
    rng = np.random.default_rng(seed)
    n = int(minutes * 60 * sfreq)
    sos = signal.butter(4, [20.0, min(450.0, 0.45 * sfreq)], btype="bandpass", fs=sfreq, output="sos")
    zi = np.zeros((sos.shape[0], 2, n_chans))
    out = np.empty((n, n_chans), np.float32)
    step = 1 << 16
    for a in range(0, n, step):
        noise = rng.standard_normal((min(step, n - a), n_chans))
        y, zi = signal.sosfilt(sos, noise, axis=0, zi=zi)
        out[a:a + len(y)] = y
    seg = int(0.5 * sfreq)  # every 0.5 s: rest (0.1) or a contraction (1..4) with per-channel gains
    n_seg = (n + seg - 1) // seg
    burst = rng.random(n_seg) < 0.4
    levels = np.where(burst[:, None], rng.uniform(1, 4, (n_seg, 1)) * rng.uniform(0.3, 1, (n_seg, n_chans)), 0.1)
    for a in range(0, n, step):
        b = min(n, a + step)
        out[a:b] *= levels[np.arange(a, b) // seg].astype(np.float32)
    out /= out.std()
    return out


def fft_floor(x: np.ndarray, window: int, stride: int, chunk_frames: int = 256) -> int:
    """One rFFT per window, nothing else, in the same chunks and layout as ``window_features``."""
    n_frames = 1 + (len(x) - window) // stride
    bins = 0
    for f0 in range(0, n_frames, chunk_frames):
        count = min(chunk_frames, n_frames - f0)
        seg = x[f0 * stride:(f0 + count - 1) * stride + window]
        step, chan = seg.strides
        windows = as_strided(seg, (window, count, seg.shape[1]), (step, stride * step, chan), writeable=False)
        bins += sp_fft.rfft(windows, axis=0).shape[0]
    return bins


LIBEMG_SCRIPT = textwrap.dedent('''
    import importlib.util, json, resource, sys, time
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view
    path, features_file, fs, window, stride, wamp, repeats = sys.argv[1:8]
    fs, window, stride, wamp, repeats = float(fs), int(window), int(stride), float(wamp), int(repeats)
    x = np.load(path)
    t = time.perf_counter()
    from libemg.feature_extractor import FeatureExtractor
    import_s = time.perf_counter() - t
    windows = np.ascontiguousarray(sliding_window_view(x, window, axis=0)[::stride])  # (n_windows, chans, window)
    fe = FeatureExtractor()
    names = ["RMS", "ZC", "SSC", "WL", "MAV", "WAMP", "AR", "MNF", "MDF"]
    dic = {"MNF_fs": fs, "MDF_fs": fs, "AR_order": 1, "WAMP_threshold": wamp, "SSC_threshold": 0.0}
    t = time.perf_counter()
    fe.extract_features(names, windows[:16], dic)  # librosa's lpc is compiled by numba on first use
    warmup_s = time.perf_counter() - t
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        feats = fe.extract_features(names, windows, dic)
        best = min(best, time.perf_counter() - t)
    spec = importlib.util.spec_from_file_location("aemg_features", features_file)
    ours = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ours)
    ours_best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        mine = ours.window_features(x, fs, window, stride, wamp_threshold=wamp)
        ours_best = min(ours_best, time.perf_counter() - t)
    agree = {}
    for name, col in (("RMS", 0), ("WL", 3), ("MAV", 4), ("WAMP", 5)):
        a, b = np.asarray(feats[name], dtype=np.float64), mine[:, :, col].astype(np.float64)
        agree[name] = float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))
    print(json.dumps({
        "libemg_s": best, "ours_same_process_s": ours_best, "import_s": import_s, "jit_warmup_s": warmup_s,
        "numpy": np.__version__, "max_rel_diff": agree,
        "peak_rss_mb": [int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:")][0],
    }))
''')


def install_libemg(python: Path) -> None:
    """A separate venv with LibEMG from the package registry (same base interpreter as ours)."""
    if not python.exists():
        base = Path(sys.base_prefix) / "bin" / "python3"
        subprocess.run([str(base), "-m", "venv", str(python.parent.parent)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "libemg"], check=True)


def run_libemg(python: Path, x: np.ndarray, sfreq: float, window: int, stride: int, wamp: float,
               repeats: int) -> dict[str, Any] | str:
    """LibEMG in its own venv on the same input; a string says why it could not run."""
    if not python.exists():
        return (f"LibEMG is not installed for the benchmark ({python} missing): run with --install-libemg, "
                "or python3 -m venv ~/.cache/aemg/libemg-venv && ~/.cache/aemg/libemg-venv/bin/pip install libemg "
                "(it pins numpy<2, so it cannot share the project's .venv)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npy"
        np.save(path, x)
        proc = subprocess.run(
            [str(python), "-c", LIBEMG_SCRIPT, str(path), str(FEATURES_FILE), str(sfreq), str(window), str(stride),
             str(wamp), str(repeats)], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    if proc.returncode != 0:
        return f"LibEMG run failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_features(args: argparse.Namespace, x: np.ndarray) -> dict[str, Any]:
    from aemg.tokenize.features import window_features

    window, stride = round(0.05 * args.sfreq), round(0.025 * args.sfreq)
    samples = x.size
    # "ours" is the default engine (the numba kernels); the numpy path is timed beside it. A first
    # call on a few windows loads (or compiles) the kernels, so no timing includes that.
    t = time.perf_counter()
    window_features(x[:4 * window], args.sfreq, window, stride, wamp_threshold=WAMP_THRESHOLD)
    kernel_load_s = time.perf_counter() - t
    # interleaved, so a neighbour's load burst hits all; CPU time as well as wall time, since on
    # a shared machine the wall clock also measures the neighbours
    wall = {"ours": float("inf"), "numpy": float("inf"), "floor": float("inf")}
    cpu = dict(wall)
    runs = {"ours": lambda: window_features(x, args.sfreq, window, stride, wamp_threshold=WAMP_THRESHOLD),
            "numpy": lambda: window_features(x, args.sfreq, window, stride, wamp_threshold=WAMP_THRESHOLD,
                                             engine="numpy"),
            "floor": lambda: fft_floor(x, window, stride)}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            wall[name] = min(wall[name], time.perf_counter() - t)
            cpu[name] = min(cpu[name], time.process_time() - c)
    ours_s, floor_s = wall["ours"], wall["floor"]
    out: dict[str, Any] = {
        "window": window, "stride": stride, "frames": 1 + (len(x) - window) // stride,
        "ours_s": ours_s, "ours_msamples_per_s": samples / ours_s / 1e6,
        "fft_floor_s": floor_s, "fft_floor_msamples_per_s": samples / floor_s / 1e6,
        "ratio_to_fft_floor": ours_s / floor_s, "ours_cpu_s": cpu["ours"], "fft_floor_cpu_s": cpu["floor"],
        "ratio_to_fft_floor_cpu": cpu["ours"] / cpu["floor"], "kernel_load_s": kernel_load_s,
        "numpy_path_s": wall["numpy"], "numpy_path_cpu_s": cpu["numpy"],
        "ratio_to_fft_floor_numpy": wall["numpy"] / floor_s, "ratio_to_fft_floor_numpy_cpu": cpu["numpy"] / cpu["floor"],
    }
    if args.no_libemg:
        out["libemg"] = "skipped (--no-libemg)"
        return out
    lib = run_libemg(Path(args.libemg_python), x, args.sfreq, window, stride, WAMP_THRESHOLD, max(1, args.repeats - 1))
    out["libemg"] = lib
    if isinstance(lib, dict):
        out["libemg_msamples_per_s"] = samples / lib["libemg_s"] / 1e6
        out["speedup_vs_libemg"] = lib["libemg_s"] / ours_s
        out["speedup_vs_libemg_same_process"] = lib["libemg_s"] / lib["ours_same_process_s"]
    return out


def bench_events(args: argparse.Namespace, x: np.ndarray) -> dict[str, Any]:
    from aemg.params import DEFAULTS
    from aemg.tokenize.events import EventParams, detect, tokens_from_events

    gesture = np.zeros(len(x), np.int16)
    out = {}
    for detector in ("aemg_energy", "hysteresis"):
        p = EventParams.from_params({**DEFAULTS["tokenize"], "detector": detector}, args.sfreq)
        t, tokens = best_of(args.repeats, lambda p=p: tokens_from_events(x, gesture, detect(x, p), p, True))
        out[detector] = {"s": t, "msamples_per_s": x.size / t / 1e6, "tokens": len(tokens["start"])}
    return out


def bench_dask(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from distributed import Client, LocalCluster

    from aemg.params import DEFAULTS
    from aemg.tokenize.stage import tokenize_one
    from aemg.tokenize.synthetic_store import write_synthetic_store

    store = write_synthetic_store(tmp / "harmonized.zarr", n_subjects=4, recordings_per_subject=args.dask_recordings // 4,
                                  duration_s=args.dask_seconds, sfreq=args.dask_sfreq, n_chans=args.chans)
    n_recs = 4 * (args.dask_recordings // 4)
    tp = {**DEFAULTS["tokenize"], "recordings_per_task": 1}
    out: dict[str, Any] = {"recordings": n_recs, "seconds_each": args.dask_seconds, "sfreq": args.dask_sfreq,
                           "channels": args.chans, "recordings_per_task": 1}
    for n_workers in (1, 2):
        with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                          silence_logs=50, preload=["aemg.tokenize.dataset"]) as cluster, Client(cluster) as client:
            def map_fn(fn, items, client=client):
                return client.gather(client.map(fn, list(items), pure=False))

            tokens = tmp / f"tokens-{n_workers}.zarr"
            tokenize_one(store, tokens, "synthetic", {**tp, "recordings_per_task": n_recs}, map_fn)  # warm-up
            out[f"workers_{n_workers}_idle_rss_mb"] = max(client.run(current_rss_mb).values())
            client.run(reset_peak_rss)
            t, summary = best_of(args.repeats, lambda map_fn=map_fn, tokens=tokens: tokenize_one(
                store, tokens, "synthetic", tp, map_fn))
            out[f"workers_{n_workers}_s"] = t
            out[f"workers_{n_workers}_loadavg_1min"] = os.getloadavg()[0]  # other users' load counts too
            out[f"workers_{n_workers}_peak_rss_mb"] = max(client.run(peak_rss_mb).values())
            # the same number of tasks of fixed pure-CPU work: what this machine lets 2 workers gain
            out[f"ceiling_{n_workers}_s"], _ = best_of(
                args.repeats, lambda map_fn=map_fn: map_fn(_fixed_work, range(n_recs * 3)))
    from aemg.store import open_group, recording_table_from
    from aemg.tokenize.dataset import state_plan
    from aemg.tokenize.state_tokens import fit_codebook, gather_sample, sample_probabilities

    plan = state_plan(store, "synthetic", tp)  # the serial part of a run: the driver's K-means fit
    table = recording_table_from(open_group(store, "synthetic"))
    train = [int(r) for r in np.flatnonzero(table.subject.isin(plan.train).to_numpy())]
    probs = sample_probabilities(table, train, plan.sp, args.chans, plan.sp.max_train_rows)
    sample = gather_sample(map, store, "synthetic", tp, train, probs, plan.thr, 1)
    out["driver_fit_s"], _ = best_of(args.repeats, lambda: fit_codebook(plan, sample))
    serial = out["driver_fit_s"]
    out["amdahl_bound_2_workers"] = out["workers_1_s"] / (serial + (out["workers_1_s"] - serial) / 2)
    out["frames"] = summary["frames"]
    out["events"] = summary["events"]
    out["scaling_2_workers"] = out["workers_1_s"] / out["workers_2_s"]
    out["cpu_ceiling_2_workers"] = out["ceiling_1_s"] / out["ceiling_2_s"]
    return out


def _fixed_work(_: int) -> int:
    """About 0.1 s of pure Python arithmetic: the same work whatever the worker count."""
    return sum(i * i for i in range(1_500_000))


def bench_memory_vs_length(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Peak RSS of one fresh worker tokenizing two recordings of length L, then 4 L."""
    from distributed import Client, LocalCluster

    from aemg.params import DEFAULTS
    from aemg.tokenize.stage import tokenize_one
    from aemg.tokenize.synthetic_store import write_synthetic_store

    out: dict[str, Any] = {}
    for seconds in (args.dask_seconds, 4 * args.dask_seconds):
        store = write_synthetic_store(tmp / f"len{seconds:g}.zarr", n_subjects=2, recordings_per_subject=1,
                                      duration_s=seconds, sfreq=args.dask_sfreq, n_chans=args.chans)
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                          silence_logs=50, preload=["aemg.tokenize.dataset"]) as cluster, Client(cluster) as client:
            idle = max(client.run(current_rss_mb).values())
            client.run(reset_peak_rss)
            tokenize_one(store, tmp / f"tokens-len{seconds:g}.zarr", "synthetic", {**DEFAULTS["tokenize"], "recordings_per_task": 1},
                           lambda fn, items, client=client: client.gather(client.map(fn, list(items), pure=False)))
            out[f"{seconds:g}s"] = {"idle_rss_mb": idle, "peak_rss_mb": max(client.run(peak_rss_mb).values()),
                                    "recording_mb": seconds * args.dask_sfreq * args.chans * 4 / 2**20}
    return out


def npy_reader(path: Path) -> tuple[Any, int, int]:
    """``read(a, b)`` of rows [a, b) of a 2-D .npy file by seek + read, never mapping the file
    (mapped pages would count in RSS), plus its shape."""
    f = open(path, "rb")  # open as long as the reader lives
    np.lib.format.read_magic(f)
    (n_times, n_chans), _, dtype = np.lib.format.read_array_header_1_0(f)
    offset, row = f.tell(), n_chans * dtype.itemsize

    def read(a: int, b: int) -> np.ndarray:
        f.seek(offset + a * row)
        return np.fromfile(f, dtype, (b - a) * n_chans).reshape(b - a, n_chans)

    return read, n_times, n_chans


def events_worker(path: Path, detector: str, sfreq: float) -> dict[str, Any]:
    """In a fresh process: peak RSS of detection, then of detection + token cutting, one recording."""
    from aemg.params import DEFAULTS
    from aemg.tokenize.events import EventParams, cut_tokens, detect_read

    read, n_times, n_chans = npy_reader(path)
    p = EventParams.from_params({**DEFAULTS["tokenize"], "detector": detector}, sfreq)
    base = current_rss_mb()
    reset_peak_rss()
    t = time.perf_counter()
    events = detect_read(read, n_times, n_chans, p)
    detect_s, detect_peak = time.perf_counter() - t, peak_rss_mb()
    tokens = cut_tokens(read, lambda a, b: np.zeros(b - a, np.int16), n_times, n_chans, events, p, True)
    return {"detector": detector, "recording_mb": n_times * n_chans * 4 / 2**20, "base_rss_mb": base,
            "detect_s": detect_s, "detect_peak_rss_mb": detect_peak, "detect_added_rss_mb": detect_peak - base,
            "peak_rss_mb": peak_rss_mb(), "added_rss_mb": peak_rss_mb() - base, "tokens": len(tokens["start"]),
            "token_mb": sum(v.nbytes for v in tokens.values()) / 2**20}


def bench_event_memory(args: argparse.Namespace, x: np.ndarray, tmp: Path) -> dict[str, Any]:
    """The event tokenizer on ``x`` and on ``x`` repeated 4 times, each in a fresh subprocess."""
    short, long = tmp / "short.npy", tmp / "long.npy"
    np.save(short, x)
    out = np.lib.format.open_memmap(long, mode="w+", dtype=x.dtype, shape=(4 * len(x), x.shape[1]))
    for i in range(4):
        out[i * len(x):(i + 1) * len(x)] = x
    out.flush()
    del out
    result: dict[str, Any] = {}
    for path, minutes in ((short, args.minutes), (long, 4 * args.minutes)):
        for detector in ("aemg_energy", "hysteresis"):
            proc = subprocess.run([sys.executable, "-m", "benchmarks.tokenize", "--events-worker", str(path),
                                   "--detector", detector, "--sfreq", str(args.sfreq)],
                                  capture_output=True, text=True, check=True)
            result[f"{minutes:g}min_{detector}"] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the feature/event input")
    parser.add_argument("--sfreq", type=float, default=2000.0)
    parser.add_argument("--chans", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--libemg-python", default=str(DEFAULT_LIBEMG_PYTHON))
    parser.add_argument("--install-libemg", action="store_true", help="create the LibEMG venv first")
    parser.add_argument("--no-libemg", action="store_true")
    parser.add_argument("--dask-recordings", type=int, default=16)
    parser.add_argument("--dask-seconds", type=float, default=60.0)
    parser.add_argument("--dask-sfreq", type=float, default=2000.0)
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--skip-memory-scan", action="store_true", help="skip the worker RSS at L and 4 L")
    parser.add_argument("--skip-event-memory", action="store_true", help="skip the event tokenizer's RSS at L and 4 L")
    parser.add_argument("--out", default="metrics/benchmark_tokenize.json")
    parser.add_argument("--events-worker", type=Path, help=argparse.SUPPRESS)  # internal: one subprocess
    parser.add_argument("--detector", default="aemg_energy", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dask_recordings < 4:
        parser.error("--dask-recordings must be at least 4: the synthetic store has four subjects")
    if args.events_worker:
        print(json.dumps(events_worker(args.events_worker, args.detector, args.sfreq)))
        return
    if args.install_libemg:
        install_libemg(Path(args.libemg_python))

    load = os.getloadavg()
    report: dict[str, Any] = {"input": {"minutes": args.minutes, "sfreq": args.sfreq, "channels": args.chans},
                              "cpus": os.cpu_count(), "loadavg_start": load}
    x = synthetic_input(args.minutes, args.sfreq, args.chans)
    input_mb = x.nbytes / 2**20
    base = current_rss_mb()
    reset_peak_rss()
    report["features"] = bench_features(args, x)
    report["features"]["peak_rss_mb"] = peak_rss_mb()
    report["features"]["added_rss_mb"] = report["features"]["peak_rss_mb"] - base
    print("features", json.dumps(report["features"], default=str), flush=True)
    reset_peak_rss()
    report["events"] = bench_events(args, x)
    report["events"]["peak_rss_mb"] = peak_rss_mb()
    report["events"]["added_rss_mb"] = report["events"]["peak_rss_mb"] - base
    print("events", json.dumps(report["events"]), flush=True)
    main_rss = max(report["features"]["peak_rss_mb"], report["events"]["peak_rss_mb"])
    report["input_mb"] = input_mb
    if not args.skip_event_memory:
        with tempfile.TemporaryDirectory() as tmp:
            report["event_memory_vs_length"] = bench_event_memory(args, x, Path(tmp))
        print("event_memory_vs_length", json.dumps(report["event_memory_vs_length"]), flush=True)
    del x
    if not args.skip_dask:
        with tempfile.TemporaryDirectory() as tmp:
            report["dask"] = bench_dask(args, Path(tmp))
            print("dask", json.dumps(report["dask"]), flush=True)
            if not args.skip_memory_scan:
                report["memory_vs_length"] = bench_memory_vs_length(args, Path(tmp))
                print("memory_vs_length", json.dumps(report["memory_vs_length"]), flush=True)
    report["loadavg_end"] = os.getloadavg()
    worker_rss = max([v for k, v in report.get("dask", {}).items() if k.endswith("peak_rss_mb")]
                     + [v["peak_rss_mb"] for v in report.get("memory_vs_length", {}).values()]
                     + [v["peak_rss_mb"] for v in report.get("event_memory_vs_length", {}).values()], default=0.0)
    event_mem = report.get("event_memory_vs_length", {})
    lib = report["features"].get("libemg")
    summary = {
        "speedup_vs_libemg": report["features"].get("speedup_vs_libemg"),
        "ratio_to_fft_floor": report["features"]["ratio_to_fft_floor"],
        "ratio_to_fft_floor_cpu": report["features"]["ratio_to_fft_floor_cpu"],
        "ratio_to_fft_floor_numpy": report["features"]["ratio_to_fft_floor_numpy"],
        "ratio_to_fft_floor_numpy_cpu": report["features"]["ratio_to_fft_floor_numpy_cpu"],
        "scaling_2_workers": report.get("dask", {}).get("scaling_2_workers"),
        "scaling_loadavg_1min": [report.get("dask", {}).get(f"workers_{n}_loadavg_1min") for n in (1, 2)],
        "cpu_ceiling_2_workers": report.get("dask", {}).get("cpu_ceiling_2_workers"),
        "peak_rss_mb": worker_rss,
        "peak_rss_main_mb": main_rss,
        "event_detect_added_rss_mb": {k: round(v["detect_added_rss_mb"], 1) for k, v in event_mem.items()},
        "event_tokenizer_added_rss_mb": {k: round(v["added_rss_mb"], 1) for k, v in event_mem.items()},
        "event_token_mb": {k: round(v["token_mb"], 1) for k, v in event_mem.items()},
        "features_added_rss_mb": report["features"]["added_rss_mb"],
        "events_added_rss_mb": report["events"]["added_rss_mb"],
        "peak_rss_worker_mb": worker_rss,
        "libemg_peak_rss_mb": lib.get("peak_rss_mb") if isinstance(lib, dict) else None,
        "features_msamples_per_s": report["features"]["ours_msamples_per_s"],
        "events_msamples_per_s": report["events"]["aemg_energy"]["msamples_per_s"],
        "loadavg": [report["loadavg_start"][0], report["loadavg_end"][0]],
    }
    if isinstance(lib, str):
        print(f"note: speedup_vs_libemg is null: {lib}", file=sys.stderr)
    finish(report, summary, args.out)


if __name__ == "__main__":
    main()
