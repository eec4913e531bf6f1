"""Wall time of one whole pre-training (``aemg.model.pretrain``) per thread count, on demo-sized data.

Run from the repository root::

    .venv/bin/python -m benchmarks.pretrain_wall --threads 1 2 1 2 --epochs-vq 4 --epochs-mtm 3
    .venv/bin/python -m benchmarks.pretrain_wall --preset base --epochs-vq 1 --epochs-mtm 1 --threads 1 2

The data stand for one leave-one-dataset-out model of the demo: three synthetic datasets of
``--events`` events x 8 channels (``pretrain.max_patches_per_dataset`` = 8000 patches each at
the default 1000), a quarter as many held-out events. Unlike ``benchmarks.pretrain`` (steps
only) this times whole runs: k-means initialisation, held-out evaluation after every epoch and
checkpoints included. Runs alternate in the order given, so that a load change on a shared
machine hits every thread count; each line is one JSON object, with the 1-minute load average
at its start (reported only: the thread count never depends on it).
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and not __package__:
    sys.exit("run as a module from the repository root: python -m benchmarks.pretrain_wall")

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from aemg.model import PRESETS, make_synthetic_tokenset, preset, pretrain


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu-small", choices=list(PRESETS))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs-vq", type=int, default=None, help="default: the preset's")
    parser.add_argument("--epochs-mtm", type=int, default=None, help="default: the preset's")
    parser.add_argument("--events", type=int, default=1000, help="training events per dataset (8 channels each)")
    args = parser.parse_args(argv)
    train = [make_synthetic_tokenset(n_events=args.events, n_chans=8, n_subjects=8, seed=i, dataset=f"d{i}")
             for i in range(3)]
    held = [make_synthetic_tokenset(n_events=args.events // 4, n_chans=8, n_subjects=2, subject_offset=8,
                                    seed=10 + i, dataset=f"d{i}") for i in range(3)]
    base = PRESETS[args.preset]
    cfg = preset(args.preset, epochs_vq=args.epochs_vq if args.epochs_vq is not None else base.epochs_vq,
                 epochs_mtm=args.epochs_mtm if args.epochs_mtm is not None else base.epochs_mtm)
    for n in args.threads:
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as out:
            m = pretrain(train, held, cfg, Path(out), device="cpu", progress=False, num_threads=n)
        h = m["history"]
        print(json.dumps({
            "preset": args.preset, "threads": n, "epochs_vq": cfg.epochs_vq, "epochs_mtm": cfg.epochs_mtm,
            "train_patches": m["n_train_patches"], "wall_s": round(time.perf_counter() - t0, 1),
            "vq_epoch_s": round(sum(h["vq"]["seconds"]) / max(1, cfg.epochs_vq), 2),
            "mtm_epoch_s": round(sum(h["mtm"]["seconds"]) / max(1, cfg.epochs_mtm), 2),
            "loadavg_1min": round(load, 2),
        }), flush=True)


if __name__ == "__main__":
    main()
