"""Pre-training benchmark: training throughput of each preset on this machine's device.

Run from the repository root::

    .venv/bin/python -m benchmarks.pretrain                        # cpu-small, base, large
    .venv/bin/python -m benchmarks.pretrain --configs cpu-small --steps 20

For each preset, on synthetic token batches of the real shapes (8 channels x ``n_times``
samples per event, sentences of 2..15 events), it times the training steps of both stages
with the very functions ``aemg.model.pretrain`` runs (``_train_vq_epoch``,
``_train_mtm_epoch``: forward, backward, clipping, AdamW, EMA codebook update, and for the
MTM the host-side sentence packing too), after one untimed warm-up step. Tokens are patches
(one event x one channel). The warm-up step runs under ``torch.utils.flop_counter`` to
count the model FLOPs of a step (forward + backward of every matmul, convolution and
attention), so that on CUDA ``mfu`` = (FLOPs per token x tokens per second) / peak, where the
peak is a large bf16 matmul timed in the same run. On CPU, ``base`` and ``large`` use a
smaller batch (``--cpu-batch-size``) and fewer steps (``--steps-big``) so that the whole run
takes about a minute on 2 cores; their throughput is then a lower bound for a full batch.
MTM FLOPs per token count the padding that sentence packing leaves, as the GPU computes it.

The last line is one JSON object: ``device``, ``peak_tflops`` (null on CPU) and per config
``batch_size``, and per stage ``tokens_per_s``, ``step_s``, ``steps``, ``flops_per_token``,
``achieved_tflops`` and ``mfu`` (null on CPU).
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and not __package__:
    sys.exit("run as a module from the repository root: python -m benchmarks.pretrain")

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from aemg.model import PRESETS, MaskedTokenModel, Tokenizer, make_synthetic_tokenset, preset
from aemg.model.data import TokenSet
from aemg.model.train import (
    _flat_patches,
    _optimizer,
    _train_mtm_epoch,
    _train_vq_epoch,
    resolve_device,
)
from aemg.runtime import resolve_threads

N_CHANS = 8  # the Myo armband's layout, the most common in the demo datasets


def peak_matmul_tflops(device: torch.device, n: int = 8192, iters: int = 50) -> float:
    """Measured bf16 matmul throughput (TFLOP/s): the ceiling ``mfu`` is relative to.

    Measured rather than looked up, so that the ratio holds for whatever GPU, clock and
    power cap this run gets.
    """
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    torch.cuda.synchronize(device)
    return 2 * n**3 * iters / (time.perf_counter() - t0) / 1e12


def _flops(fn: Any, *args: Any) -> int:
    """FLOPs that fn(*args) runs: forward and backward, as ``FlopCounterMode`` counts them."""
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return int(counter.get_total_flops())


def _stage_report(warm_flops: int, warm_tokens: int, timed: dict[str, float], peak: float | None) -> dict[str, Any]:
    flops_per_token = warm_flops / warm_tokens
    achieved = flops_per_token * timed["tokens_per_s"] / 1e12
    return {
        "tokens_per_s": timed["tokens_per_s"],
        "step_s": timed["seconds"] / timed["steps"],
        "steps": timed["steps"],
        "flops_per_token": flops_per_token,
        "achieved_tflops": achieved,
        "mfu": achieved / peak if peak else None,
    }


def bench_config(name: str, steps: int, batch_size: int, device: torch.device,
                 peak: float | None) -> dict[str, Any]:
    """Throughput of both stages of preset ``name`` with ``batch_size`` patches per step."""
    cfg = preset(name, batch_size=batch_size)
    n_events = -(-steps * batch_size // N_CHANS)
    data = make_synthetic_tokenset(n_events=n_events, n_chans=N_CHANS, n_times=cfg.n_times, seed=0)
    warm_events = np.arange(min(n_events, batch_size // N_CHANS or 1))
    torch.manual_seed(cfg.seed)

    # stage 1: one warm-up step on the first batch, then `steps` timed steps
    vq = Tokenizer(cfg).to(device)
    vq_opt = _optimizer(vq, cfg)
    flat = _flat_patches([data], device)
    with torch.no_grad():
        vq.vq.init_codebook(vq.encode(flat["patches"][: max(batch_size, cfg.codebook_size)]))
    warm_flat = {k: v[:batch_size] for k, v in flat.items()}
    flops = _flops(_train_vq_epoch, vq, vq_opt, warm_flat, cfg, 0, device, None)
    timed = _train_vq_epoch(vq, vq_opt, flat, cfg, 1, device, None)
    vq_report = _stage_report(flops, len(warm_flat["patches"]), timed, peak)
    del flat, warm_flat

    # stage 2: codes only need the right range; packing decides the step count
    mtm = MaskedTokenModel(cfg).to(device)
    mtm_opt = _optimizer(mtm, cfg)
    rng = np.random.default_rng(0)
    codes = [rng.integers(0, cfg.codebook_size, (data.n_events, data.n_chans))]
    warm_set: TokenSet = data.select(warm_events)
    warm_codes = [codes[0][warm_events]]
    flops = _flops(_train_mtm_epoch, mtm, mtm_opt, [warm_set], warm_codes, cfg, 0, device, None)
    timed = _train_mtm_epoch(mtm, mtm_opt, [data], codes, cfg, 1, device, None)
    mtm_report = _stage_report(flops, warm_set.n_events * warm_set.n_chans, timed, peak)
    return {"batch_size": batch_size, "vq": vq_report, "mtm": mtm_report,
            "params_vq": sum(p.numel() for p in vq.parameters()),
            "params_mtm": sum(p.numel() for p in mtm.parameters())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--steps", type=int, default=10, help="timed steps per stage for cpu-small")
    parser.add_argument("--steps-big", type=int, default=None,
                        help="timed steps per stage for base and large (default: 3 on CPU, 10 on CUDA)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="patches per step for every config (default: the preset's, but see --cpu-batch-size)")
    parser.add_argument("--cpu-batch-size", type=int, default=512,
                        help="on CPU, cap on base/large batch size (their presets use 8192)")
    parser.add_argument("--device", default=None, help="cuda, cpu, ... (default: CUDA when available)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (AEMG_NUM_THREADS overrides it); the load average is only reported")
    parser.add_argument("--out", default="metrics/benchmark_pretrain.json")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    on_cpu = device.type == "cpu"
    if on_cpu:
        torch.set_num_threads(resolve_threads(args.threads))
    steps_big = args.steps_big or (3 if on_cpu else args.steps)
    peak = None if on_cpu else peak_matmul_tflops(device)
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads() if on_cpu else None,
        "loadavg_start": os.getloadavg()[0], "peak_tflops": peak, "configs": {},
    }
    for name in args.configs:
        big = name != "cpu-small"
        bs = args.batch_size or PRESETS[name].batch_size
        if on_cpu and big and args.batch_size is None:
            bs = min(bs, args.cpu_batch_size)
        t0 = time.perf_counter()
        result = bench_config(name, steps_big if big else args.steps, bs, device, peak)
        result["wall_s"] = time.perf_counter() - t0
        report["configs"][name] = result
        print(name, json.dumps(result), flush=True)
    report["loadavg_end"] = os.getloadavg()[0]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
