"""Run-time settings that decide float results: CPU thread count and seeds.

The thread count changes the order of float reductions in torch (OpenMP) and BLAS, hence the
last bits of every trained weight and, through them, scores. It therefore comes from params
(``pretrain.num_threads``, ``evaluate.num_threads``) or the ``AEMG_NUM_THREADS`` environment
variable, never from the machine's load: the same commit and params then give the same
numbers on an idle and on a busy machine. Setting ``AEMG_NUM_THREADS`` to another count than
the params' is allowed (e.g. on a bigger machine) and changes float results accordingly.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from aemg.errors import AemgError

THREADS_ENV = "AEMG_NUM_THREADS"
# cuBLAS picks reduction splits per stream workspace; a fixed workspace makes its GEMMs
# bitwise repeatable (NVIDIA cuBLAS docs, "Results reproducibility").
CUBLAS_WORKSPACE = ":4096:8"


def resolve_threads(value: int | None) -> int:
    """CPU threads: ``AEMG_NUM_THREADS`` when set, else ``value`` (from params).

    Raises naming the setting when neither gives a positive integer: a silent fallback to the
    core count would make results depend on the machine again.
    """
    env = os.environ.get(THREADS_ENV)
    source, raw = (THREADS_ENV, env) if env else ("num_threads", value)
    try:
        n = int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise AemgError(
            f"{source}={raw!r}: the CPU thread count must be a positive integer. "
            f"Fix: set pretrain.num_threads / evaluate.num_threads in params.yaml (or {THREADS_ENV})."
        )
    return n


@contextmanager
def cpu_threads(n: int) -> Iterator[int]:
    """torch intra-op threads and every BLAS/OpenMP pool limited to ``n`` inside the block."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield n
    finally:
        torch.set_num_threads(before)


def deterministic(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) and ask torch for deterministic kernels.

    ``torch.use_deterministic_algorithms(True)``: kernels with a deterministic variant use it.
    What that pins in this package on CUDA (per torch's documented list): ``index_add_`` (the
    VQ codebook's EMA statistics and k-means sums), ``Conv1d`` (the patch front-end, with
    cuDNN's deterministic algorithms and no autotuning), ``index_select`` / ``gather``
    backward (embedding look-ups), the memory-efficient attention backward, and cuBLAS GEMMs
    through ``CUBLAS_WORKSPACE_CONFIG`` (set here unless the caller set it). On CPU the kernels
    used are deterministic for a fixed thread count and a kernel without a deterministic
    variant raises; on CUDA (not run on the development machine) such a kernel warns naming
    itself instead of stopping a long GPU run.
    """
    import torch

    cuda = torch.cuda.is_available()
    if cuda:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=cuda)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
