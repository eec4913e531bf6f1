"""``python -m benchmarks.harmonize`` at a tiny scale: it runs end to end and its last line keeps its keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO

KEYS = {
    "mb_per_s", "ratio_to_read_bytes", "ratio_to_readers", "read_bytes_mb_per_s", "readers_mb_per_s", "input_mb",
    "scale", "memory_dataset", "input_mb_1x", "input_mb_scaled", "peak_rss_mb_1x", "peak_rss_mb_scaled",
    "peak_rss_ratio", "peak_heap_mb_1x", "peak_heap_mb_scaled", "loadavg",
}


def test_benchmark_runs_tiny_and_reports_its_keys(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.harmonize", "--raw", str(shared_data), "--datasets", "myo-armband-cote-allard",
         "unibo-inail", "--subjects", "1", "--repeats", "1", "--memory-dataset", "myo-armband-cote-allard",
         "--scale", "2", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(summary) == KEYS
    assert summary["scale"] == 2 and summary["input_mb_scaled"] == 2 * summary["input_mb_1x"] > 0
    assert summary["mb_per_s"] > 0 and summary["ratio_to_read_bytes"] > 1  # harmonizing costs more than reading
    report = json.loads(out.read_text())
    assert report["memory"]["x2"]["subjects"] == 2 * report["memory"]["x1"]["subjects"] == 2  # replicas are new subjects
    assert report["memory"]["x2"]["recordings"] == 2 * report["memory"]["x1"]["recordings"]
    assert report["datasets"]["unibo-inail"]["recordings"] > 0 and report["summary"] == summary
