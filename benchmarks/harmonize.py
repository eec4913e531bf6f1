"""Harmonization benchmark: MB/s of raw input against plain reading, and peak memory at 1x and 10x.

Run from the repository root, as a module::

    .venv/bin/python -m benchmarks.harmonize                       # the four datasets of ../shared/data
    .venv/bin/python -m benchmarks.harmonize --raw /tmp/democlone/data/raw --scale 10

One run, warm page cache (every file is read once before anything is timed), one process:

(a) per dataset, the same files three ways: the bytes read (``Path.read_bytes``, the floor any
    harmonizer pays), the format readers alone (``aemg.harmonize.recording.read_file``: parse
    into arrays, nothing else), and ``harmonize_one`` (hash check, read, signal chain, streamed
    write into a store, atomic publish) with the in-process map. Throughput is raw input MB
    (file bytes) per second; ``ratio_to_read_bytes`` and ``ratio_to_readers`` are harmonize time
    over each floor's time (how many times slower than only reading).
(b) peak memory flat as a dataset grows: ``--memory-dataset`` is replicated ``--scale`` times
    under new subject ids (files symlinked, a ``datasets.d`` YAML spec written to a temp folder,
    so the registry treats it as any user dataset), and the 1x and the 10x dataset are each
    harmonized in a fresh subprocess; each reports its high-water RSS (``VmHWM``), and a second,
    traced run of each its peak heap (``tracemalloc``: what the code holds at once).

Each timing is the best of ``--repeats`` (so the first run's imports and caches are not timed).
The last line is one JSON object with ``mb_per_s``, ``ratio_to_read_bytes``, ``ratio_to_readers``,
``peak_rss_mb_1x`` and ``peak_rss_mb_scaled`` (the dataset ``scale`` times larger), the same for
``peak_heap_mb``, their inputs ``input_mb_1x`` and ``input_mb_scaled``, and details; the full
report goes to ``--out``.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and not __package__:
    sys.exit("run as a module from the repository root: python -m benchmarks.harmonize")

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import best_of, finish, peak_rss_mb

REPO = Path(__file__).resolve().parents[1]
DATASETS = ["uci-emg-gestures", "myo-armband-cote-allard", "flexemg", "unibo-inail"]
DEFAULT_RAW = Path(os.environ.get("AEMG_SHARED_DATA", REPO.parent / "shared" / "data"))


def chosen_files(dataset: str, n_subjects: int | None) -> tuple[Any, list[str], list[str] | None]:
    """Spec, data files and subject slice (the first ``n_subjects`` subjects, or all)."""
    from aemg.datasets.registry import get_spec
    from aemg.harmonize.dataset import select_files

    spec = get_spec(dataset)
    subjects = None
    if n_subjects:
        subjects = sorted({spec.match(f)["subject"] for f in spec.data_files()})[:n_subjects]
    return spec, select_files(spec, subjects), subjects


def bench_dataset(dataset: str, raw: Path, hp: dict[str, Any], args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from aemg.harmonize.recording import read_file
    from aemg.harmonize.stage import harmonize_one

    spec, files, subjects = chosen_files(dataset, args.subjects)
    root = raw / dataset
    paths = [root / f for f in files]
    mb = sum(p.stat().st_size for p in paths) / 1e6

    def read_bytes() -> int:
        return sum(len(p.read_bytes()) for p in paths)

    def readers() -> int:
        return sum(read_file(spec, root / f, spec.match(f), f).emg.size for f in files)

    def harmonize() -> dict[str, Any]:
        store = tmp / f"{dataset}.zarr"
        shutil.rmtree(store, ignore_errors=True)
        return harmonize_one(spec, root, store, hp, subjects)

    read_bytes()  # warm page cache: every method then reads from memory
    read_s, _ = best_of(args.repeats, read_bytes)
    readers_s, _ = best_of(args.repeats, readers)
    harmonize_s, summary = best_of(args.repeats, harmonize)
    return {
        "files": len(files), "input_mb": mb, "recordings": summary["recordings"], "hours": summary["hours"],
        "read_bytes_s": read_s, "readers_s": readers_s, "harmonize_s": harmonize_s,
        "read_bytes_mb_per_s": mb / read_s, "readers_mb_per_s": mb / readers_s, "harmonize_mb_per_s": mb / harmonize_s,
        "ratio_to_read_bytes": harmonize_s / read_s, "ratio_to_readers": harmonize_s / readers_s,
    }


def replicate(dataset: str, raw: Path, scale: int, n_subjects: int | None, folder: Path) -> tuple[str, Path, Path]:
    """``dataset`` (or its first ``n_subjects``) ``scale`` times under new subject ids, as a user spec.

    Replica ``r`` of a file is the same bytes (a symlink) at the path whose subject id is prefixed
    ``r<r>-``; the spec is the built-in YAML with a new id, that prefix in its pattern's subject
    group, and the replicated files with their pinned hashes. Returns (id, raw root, datasets.d).
    """
    from aemg.datasets.registry import BUILTIN_DIR

    spec, files, _ = chosen_files(dataset, n_subjects)
    mapping = yaml.safe_load((BUILTIN_DIR / f"{dataset}.yaml").read_text())
    new_id = f"{dataset}-x{scale}"
    if mapping["pattern"].count("(?P<subject>") != 1:
        raise SystemExit(f"{dataset}: pattern needs exactly one subject group to replicate it")
    mapping.update(id=new_id, pattern=mapping["pattern"].replace("(?P<subject>", r"(?P<subject>r\d+-"), files={})
    mapping.pop("file_grid", None)
    root = folder / "raw" / new_id
    for rel in files:
        at = re.fullmatch(spec.pattern, rel).start("subject")
        for r in range(scale):
            new_rel = f"{rel[:at]}r{r}-{rel[at:]}"
            (root / new_rel).parent.mkdir(parents=True, exist_ok=True)
            (root / new_rel).symlink_to((raw / dataset / rel).resolve())
            mapping["files"][new_rel] = spec.files.get(rel)
    specs_dir = folder / "datasets.d"
    specs_dir.mkdir(parents=True, exist_ok=True)
    (specs_dir / f"{new_id}.yaml").write_text(yaml.safe_dump(mapping, sort_keys=False))
    return new_id, root, specs_dir


CHILD = """
import json, sys, time, tracemalloc
from pathlib import Path
from aemg.datasets.registry import get_spec
from aemg.harmonize.stage import harmonize_one
from aemg.params import load_params
from benchmarks.common import peak_rss_mb
dataset, root, store, params, trace = sys.argv[1:6]
if trace == "trace":
    tracemalloc.start()
t = time.perf_counter()
summary = harmonize_one(get_spec(dataset), Path(root), Path(store), load_params(params)["harmonize"])
s = time.perf_counter() - t
if trace == "trace":
    print(json.dumps({"peak_heap_mb": tracemalloc.get_traced_memory()[1] / 2**20}))
else:
    print(json.dumps({**summary, "s": s, "peak_rss_mb": peak_rss_mb()}))
"""


def harmonize_in_subprocess(
    dataset: str, root: Path, store: Path, specs_dir: Path, params: Path, trace: bool = False
) -> dict[str, Any]:
    """One harmonize run in a fresh process: its peak RSS, or (``trace``) its peak traced heap.

    RSS is what the machine sees (it includes allocator slack that grows slowly with run time);
    the traced heap (Python and NumPy allocations, tracemalloc) is what the code holds at once.
    They are separate runs because tracing slows the run and adds its own memory.
    """
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, dataset, str(root), str(store), str(params), "trace" if trace else "-"],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "AEMG_DATASETS_D": str(specs_dir)},
    )
    if proc.returncode != 0:
        raise SystemExit(f"harmonizing {dataset} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_memory(args: argparse.Namespace, raw: Path, tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"dataset": args.memory_dataset, "scale": args.scale}
    params = Path(args.params).resolve()
    for scale in (1, args.scale):
        new_id, root, specs_dir = replicate(args.memory_dataset, raw, scale, args.subjects, tmp / f"x{scale}")
        input_mb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6
        result = harmonize_in_subprocess(new_id, root, tmp / f"x{scale}" / "harmonized.zarr", specs_dir, params)
        traced = harmonize_in_subprocess(new_id, root, tmp / f"x{scale}" / "traced.zarr", specs_dir, params, trace=True)
        out[f"x{scale}"] = {"input_mb": input_mb, **result, **traced}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw", default=str(DEFAULT_RAW), help="folder holding <dataset-id>/ as downloaded")
    parser.add_argument("--datasets", nargs="+", default=DATASETS)
    parser.add_argument("--subjects", type=int, default=None, help="only the first N subjects of each dataset")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--memory-dataset", default="uci-emg-gestures", help="dataset replicated for the memory run")
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--params", default=str(REPO / "params.yaml"))
    parser.add_argument("--out", default="metrics/benchmark_harmonize.json")
    args = parser.parse_args()

    from aemg.params import load_params

    raw = Path(args.raw)
    hp = load_params(args.params)["harmonize"]
    report: dict[str, Any] = {"raw": str(raw), "cpus": os.cpu_count(), "loadavg_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="aemg-bench-harmonize-") as tmp:
        report["datasets"] = {}
        for dataset in args.datasets:
            report["datasets"][dataset] = bench_dataset(dataset, raw, hp, args, Path(tmp))
            print(dataset, json.dumps(report["datasets"][dataset]), flush=True)
        report["main_peak_rss_mb"] = peak_rss_mb()
        report["memory"] = bench_memory(args, raw, Path(tmp))
        print("memory", json.dumps(report["memory"]), flush=True)
    report["loadavg_end"] = os.getloadavg()
    runs = report["datasets"].values()
    total = {k: sum(r[k] for r in runs) for k in ("input_mb", "read_bytes_s", "readers_s", "harmonize_s")}
    one, big = report["memory"]["x1"], report["memory"][f"x{args.scale}"]
    summary = {
        "mb_per_s": total["input_mb"] / total["harmonize_s"],
        "ratio_to_read_bytes": total["harmonize_s"] / total["read_bytes_s"],
        "ratio_to_readers": total["harmonize_s"] / total["readers_s"],
        "read_bytes_mb_per_s": total["input_mb"] / total["read_bytes_s"],
        "readers_mb_per_s": total["input_mb"] / total["readers_s"],
        "input_mb": total["input_mb"],
        "scale": args.scale,
        "memory_dataset": args.memory_dataset,
        "input_mb_1x": one["input_mb"],
        "input_mb_scaled": big["input_mb"],
        "peak_rss_mb_1x": one["peak_rss_mb"],
        "peak_rss_mb_scaled": big["peak_rss_mb"],
        "peak_rss_ratio": big["peak_rss_mb"] / one["peak_rss_mb"],
        "peak_heap_mb_1x": one["peak_heap_mb"],
        "peak_heap_mb_scaled": big["peak_heap_mb"],
        "loadavg": [report["loadavg_start"][0], report["loadavg_end"][0]],
    }
    finish(report, summary, args.out)


if __name__ == "__main__":
    main()
