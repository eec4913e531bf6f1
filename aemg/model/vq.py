"""Vector quantizer with L2-normalised codes and EMA updates (LaBraM / vector-quantize-pytorch style).

* Codes and encoder outputs are both L2-normalised; nearest code = highest cosine similarity.
* Codebook learned by exponential moving averages of assigned encoder outputs (no codebook
  gradient); the encoder gets a commitment loss.
* k-means (spherical) initialisation on the first training batch, or explicitly via
  :meth:`VectorQuantizer.init_codebook` on a larger sample.
* Straight-through estimator in training: ``quantized = z + (q - z).detach()``, so the
  reconstruction gradient reaches the encoder.
* Dead-code restart: a code unused for ``dead_code_threshold`` training steps is replaced by a
  random encoder output of the current batch.
* Usage and perplexity tracked in ``usage_counts`` (reset with :meth:`reset_usage`).
* Under ``torch.distributed`` (DDP), EMA statistics are summed over ranks and restarted codes
  come from rank 0's batch, so every rank holds the same codebook.

In eval mode ``quantized`` is exactly ``codebook[indices]``.
All arithmetic runs in float32 even under autocast.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from aemg.model.distributed import current


def codebook_stats(indices: torch.Tensor, codebook_size: int) -> tuple[float, float]:
    """(fraction of codes used, perplexity = exp(entropy of code frequencies))."""
    counts = torch.bincount(indices.reshape(-1).long(), minlength=codebook_size).double()
    return _stats_from_counts(counts)


def _stats_from_counts(counts: torch.Tensor) -> tuple[float, float]:
    total = counts.sum()
    if total == 0:
        return 0.0, 0.0
    p = counts / total
    nz = p[p > 0]
    entropy = float(-(nz * nz.log()).sum())
    return float((counts > 0).double().mean()), math.exp(entropy)


class VectorQuantizer(nn.Module):
    """``forward(z) -> (quantized, indices, loss)`` for z of shape (..., code_dim)."""

    def __init__(
        self,
        codebook_size: int,
        code_dim: int,
        decay: float = 0.99,
        commitment_weight: float = 0.25,
        dead_code_threshold: int = 50,
        kmeans_iters: int = 10,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.codebook_size = codebook_size
        self.code_dim = code_dim
        self.decay = decay
        self.commitment_weight = commitment_weight
        self.dead_code_threshold = dead_code_threshold
        self.kmeans_iters = kmeans_iters
        self.eps = eps
        self.register_buffer("codebook", F.normalize(torch.randn(codebook_size, code_dim), dim=-1))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed_sum", self.codebook.clone())
        self.register_buffer("initted", torch.tensor(False))
        self.register_buffer("unused_steps", torch.zeros(codebook_size, dtype=torch.long))
        self.register_buffer("usage_counts", torch.zeros(codebook_size, dtype=torch.long), persistent=False)

    # ------------------------------------------------------------------ public helpers
    def reset_usage(self) -> None:
        self.usage_counts.zero_()

    def usage_fraction(self) -> float:
        return _stats_from_counts(self.usage_counts.double())[0]

    def perplexity(self) -> float:
        return _stats_from_counts(self.usage_counts.double())[1]

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Normalised code vectors of ``indices``."""
        return F.embedding(indices, self.codebook)

    @torch.no_grad()
    def init_codebook(self, z: torch.Tensor) -> None:
        """Spherical k-means on (a sample of) encoder outputs z (N, code_dim)."""
        zn = F.normalize(z.detach().float().reshape(-1, self.code_dim), dim=-1)
        n, k = zn.shape[0], self.codebook_size
        if n >= k:
            init = torch.randperm(n, device=zn.device)[:k]
        else:
            init = torch.randint(0, n, (k,), device=zn.device)
        centroids = zn[init].clone()
        counts = torch.zeros(k, device=zn.device)
        for _ in range(self.kmeans_iters):
            assign = (zn @ centroids.T).argmax(dim=-1)
            counts = torch.bincount(assign, minlength=k).float()
            sums = torch.zeros_like(centroids).index_add_(0, assign, zn)
            new = F.normalize(sums, dim=-1)
            centroids = torch.where((counts > 0).unsqueeze(1), new, centroids)
        self.codebook.copy_(centroids)
        self.cluster_size.copy_(counts)
        self.embed_sum.copy_(centroids * counts.clamp(min=1.0).unsqueeze(1))
        self.unused_steps.zero_()
        self.initted.fill_(True)

    # ------------------------------------------------------------------ forward
    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        shape = z.shape
        if shape[-1] != self.code_dim:
            raise ValueError(f"last dim of z is {shape[-1]}, expected code_dim={self.code_dim}")
        with torch.autocast(device_type=z.device.type, enabled=False):
            zn = F.normalize(z.float().reshape(-1, self.code_dim), dim=-1)
            if self.training and not bool(self.initted):
                self.init_codebook(zn)
            with torch.no_grad():
                indices = (zn @ self.codebook.T).argmax(dim=-1)
            q = F.embedding(indices, self.codebook)  # pre-update codes
            loss = self.commitment_weight * F.mse_loss(zn, q.detach())
            counts = torch.bincount(indices, minlength=self.codebook_size)
            self.usage_counts += counts
            if self.training:
                self._ema_update(zn.detach(), indices, counts)
                quantized = zn + (q - zn).detach()  # straight-through estimator
            else:
                quantized = q
        return quantized.view(*shape[:-1], self.code_dim), indices.view(shape[:-1]), loss

    @torch.no_grad()
    def _ema_update(self, zn: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor) -> None:
        d = self.decay
        batch_sum = torch.zeros_like(self.embed_sum).index_add_(0, indices, zn)
        # Under DDP the codebook is a buffer, not a parameter: pool every rank's statistics so
        # that all ranks keep the same codebook and it learns from the whole global batch.
        world = current()
        world.sum(counts)
        world.sum(batch_sum)
        self.cluster_size.mul_(d).add_(counts.float(), alpha=1 - d)
        self.embed_sum.mul_(d).add_(batch_sum, alpha=1 - d)
        norm = self.embed_sum.norm(dim=-1, keepdim=True)
        self.codebook.copy_(torch.where(norm > 1e-12, self.embed_sum / norm.clamp(min=1e-12), self.codebook))
        # dead-code restart
        self.unused_steps.add_(1)
        self.unused_steps.masked_fill_(counts > 0, 0)
        dead = (self.unused_steps >= self.dead_code_threshold).nonzero().squeeze(1)
        if dead.numel():
            pick = torch.randint(0, zn.shape[0], (dead.numel(),), device=zn.device)
            new = world.from_main(zn[pick].contiguous())
            self.codebook[dead] = new
            self.embed_sum[dead] = new
            self.cluster_size[dead] = 1.0
            self.unused_steps[dead] = 0
