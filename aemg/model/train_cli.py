"""Pre-training on several GPUs (or CPU processes): the ``torchrun`` entry point.

    torchrun --standalone --nproc_per_node=4 -m aemg.model.train_cli --params params.yaml

Does what ``aemg pretrain`` does (one leave-one-dataset-out model per evaluated dataset and
seed, the same ``models/<id>/seed<k>/`` checkpoints, ``metrics/pretrain.json`` and ``metrics/pretrain_history/``)
with one process per device and ``DistributedDataParallel`` (see :mod:`aemg.model.distributed`).
It runs without Prefect: each rank would otherwise start its own ephemeral Prefect server on
the same database. Without ``torchrun`` it is a plain single-process run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aemg.errors import AemgError
from aemg.model import distributed
from aemg.model.stage import pretrain_all, write_metrics
from aemg.params import load_params, stage_paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m aemg.model.train_cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--tokens", default=None, help="token store (default: paths.tokens of params)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: CUDA when available)")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoints in models/")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    paths = stage_paths(params)
    tokens = Path(args.tokens) if args.tokens else paths["tokens"]
    world, device = distributed.init_from_env(args.device)
    try:
        per_model = pretrain_all(tokens, paths["models"], params, device=device, resume=args.resume)
        if world.is_main:
            summary = write_metrics(paths["metrics"], per_model)
            print(json.dumps({k: v for k, v in summary.items() if k != "models"}))
    except BaseException as exc:
        distributed.shutdown(wait=False)  # torchrun stops the other ranks; do not wait for them
        if isinstance(exc, AemgError):
            raise SystemExit(f"aemg pretrain: error: {exc}") from None
        raise
    distributed.shutdown()


if __name__ == "__main__":
    main()
