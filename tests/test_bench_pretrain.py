"""`python -m benchmarks.pretrain` runs every preset end to end and reports positive throughputs."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO


def test_benchmark_reports_throughput_of_every_preset(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.pretrain", "--steps", "2", "--steps-big", "1",
         "--batch-size", "128", "--device", "cpu", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary == json.loads(out.read_text())
    assert summary["device"] == "cpu" and summary["peak_tflops"] is None
    assert set(summary["configs"]) == {"cpu-small", "base", "large"}
    for name, res in summary["configs"].items():
        assert res["batch_size"] == 128
        for stage in ("vq", "mtm"):
            r = res[stage]
            assert r["steps"] >= 1, (name, stage)
            for key in ("tokens_per_s", "step_s", "flops_per_token", "achieved_tflops"):
                assert r[key] > 0, (name, stage, key)
            assert r["mfu"] is None  # no peak on CPU
    small, large = summary["configs"]["cpu-small"], summary["configs"]["large"]
    # the FLOP count follows the model size: large costs far more per token than cpu-small
    assert large["mtm"]["flops_per_token"] > 50 * small["mtm"]["flops_per_token"]
    assert large["params_mtm"] > 50 * small["params_mtm"]


def test_wall_benchmark_times_whole_runs_at_the_thread_counts_given():
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.pretrain_wall", "--threads", "1", "--events", "80",
         "--epochs-vq", "1", "--epochs-mtm", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [json.loads(x) for x in proc.stdout.strip().splitlines()]
    assert line["threads"] == 1 and line["train_patches"] == 3 * 80 * 8 and line["wall_s"] > 0
    assert line["vq_epoch_s"] > 0 and line["mtm_epoch_s"] > 0
