"""What every benchmark shares: best-of timing, process memory, and the report it leaves.

Each benchmark writes its whole report as JSON to ``--out`` and prints one JSON line (its
summary) last, so that CI logs and notes can quote one line.
"""

from __future__ import annotations

import json
import resource
import time
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
