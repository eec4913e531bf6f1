"""Data parallelism for ``pretrain`` under ``torchrun``: one process per device, same script.

``init_from_env`` joins the process group that ``torchrun`` describes in the environment
(``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``): NCCL with one GPU
per process when CUDA is present, gloo on CPU. ``pretrain`` asks :func:`current` and, when the
world has more than one process, wraps the models in ``DistributedDataParallel``, gives each
rank an interleaved shard of every global batch (so the step count, learning-rate schedule and
effective batch size stay those of one process) and lets only rank 0 write checkpoints,
metrics and the progress bar. Without a process group, :func:`current` is rank 0 of 1 and
every helper is the identity: the single-process path runs exactly as before.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel ranks."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files; every other rank only computes."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1

    def shard(self, batch: Sequence[T] | torch.Tensor) -> tuple[Sequence[T] | torch.Tensor, float]:
        """(this rank's interleaved share of a global batch, loss weight).

        DDP averages gradients over ranks; scaling each rank's mean loss by
        ``len(share) * size / len(batch)`` makes that average the gradient of the global
        mean, also when the batch does not split evenly. A rank whose share would be empty
        (a batch smaller than the world) gets the batch's first element with weight 0: DDP
        needs every rank in every backward.
        """
        if not self.parallel:
            return batch, 1.0
        share = batch[self.rank::self.size]
        if len(share) == 0:
            return batch[:1], 0.0
        return share, len(share) * self.size / len(batch)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum of ``tensor`` over ranks (in place)."""
        if self.parallel:
            dist.all_reduce(tensor)
        return tensor

    def from_main(self, tensor: torch.Tensor) -> torch.Tensor:
        """Rank 0's ``tensor`` on every rank (in place)."""
        if self.parallel:
            dist.broadcast(tensor, src=0)
        return tensor

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order."""
        if not self.parallel:
            return [obj]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out


def current() -> World:
    """The process group this process belongs to (rank 0 of 1 when there is none)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def init_from_env(device: str | None = None) -> tuple[World, str | None]:
    """Join the process group ``torchrun`` set up; returns (world, device for this rank).

    With ``WORLD_SIZE`` unset or 1 nothing is initialised and ``device`` is returned as
    given. Otherwise CUDA ranks use ``cuda:LOCAL_RANK`` with NCCL, CPU ranks gloo.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(), device
    use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise RuntimeError(
                f"LOCAL_RANK={local} but only {torch.cuda.device_count()} CUDA device(s) are visible. "
                f"Fix: torchrun --nproc_per_node={torch.cuda.device_count()} (or fewer)."
            )
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return current(), device if use_cuda else (device or "cpu")


def shutdown(wait: bool = True) -> None:
    """Leave the process group; with ``wait``, first wait for every rank (rank 0 may still be
    writing files). After a failure, leave without waiting: the other ranks may never come."""
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()
