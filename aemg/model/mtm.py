"""Stage 2: masked-token model (MTM) over the patch sequence of a sentence.

Input: a :class:`~aemg.model.data.SentenceBatch` of patches (events x channels, event-major).
Each patch -> its own temporal Conv1d front-end (:class:`PatchEmbed`); a random ``mask_ratio``
of the real patches is replaced by a learned mask token; then the spatial (MLP on continuous
electrode position, or 16-slot embedding) and temporal (onset seconds, order in sentence)
conditioning is added; a pre-norm Transformer encodes the sequence with padding excluded
from attention (key padding mask); a linear head predicts the frozen stage-1 code index of
each masked patch (cross-entropy on masked positions only).

``embed`` runs without masking and pools the final hidden states of each event's channel
patches (padding excluded) into one vector per event for linear probes (:func:`pool_events`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aemg.model.config import ModelConfig
from aemg.model.data import SentenceBatch
from aemg.model.layers import Conditioning, PatchEmbed, TransformerBlock


def random_mask(padding: torch.Tensor, ratio: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Bool (B, L): exactly ``max(1, round(ratio * n_real))`` real patches masked per sequence.

    Noise is drawn on ``generator``'s device (global RNG when None) and moved to padding's.
    """
    gen_device = generator.device if generator is not None else padding.device
    noise = torch.rand(padding.shape, generator=generator, device=gen_device).to(padding.device)
    noise = noise.masked_fill(padding, 2.0)
    n_real = (~padding).sum(dim=1)
    n_mask = (n_real.float() * ratio).round().long().clamp(min=1)
    n_mask = torch.minimum(n_mask, n_real)
    rank = noise.argsort(dim=1).argsort(dim=1)
    return rank < n_mask.unsqueeze(1)


def masked_token_loss(model: nn.Module, batch: SentenceBatch, mask: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(cross-entropy over masked patches, n_correct, n_masked) of ``model(batch, mask)``.

    A function rather than only a method so that training can pass the model's
    ``DistributedDataParallel`` wrapper: gradients are synchronised only through its forward.
    """
    if batch.codes is None:
        raise ValueError("batch.codes is None; collate with the stage-1 codes to train the MTM")
    mask = mask & ~batch.padding
    logits = model(batch, mask).float()
    target = batch.codes[mask]
    loss = F.cross_entropy(logits, target)
    correct = (logits.argmax(dim=-1) == target).sum()
    return loss, correct, target.new_tensor(target.numel())


class MaskedTokenModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.embed_patch = PatchEmbed(cfg.n_times, cfg.conv_channels, w, cfg.amplitude_embedding)
        self.mask_token = nn.Parameter(torch.randn(w) * 0.02)
        self.cond = Conditioning(w, cfg.spatial_conditioning, cfg.n_order)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(TransformerBlock(w, cfg.heads, cfg.dropout) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(w)
        self.head = nn.Linear(w, cfg.codebook_size)

    def encode(self, batch: SentenceBatch, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Final hidden states (B, L, width); ``mask`` (B, L) bool marks patches to hide."""
        patches, padding = batch.patches, batch.padding
        B, L = patches.shape[:2]
        real = ~padding
        e = self.embed_patch(patches[real])
        h = torch.zeros(B, L, e.shape[-1], dtype=e.dtype, device=e.device)
        h[real] = e
        if mask is not None:
            h = torch.where(mask.unsqueeze(-1), self.mask_token.to(h.dtype), h)
        h = h + self.cond(batch.positions, batch.channel, batch.onset, batch.order)
        h = self.drop(h)
        attend = real[:, None, None, :]
        for block in self.blocks:
            h = block(h, attend)
        return self.norm(h)

    def forward(self, batch: SentenceBatch, mask: torch.Tensor) -> torch.Tensor:
        """Logits (n_masked, codebook_size) for the masked patches, in ``mask`` order."""
        h = self.encode(batch, mask)
        return self.head(h[mask])

    def loss(self, batch: SentenceBatch, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(cross-entropy over masked patches, n_correct, n_masked)."""
        return masked_token_loss(self, batch, mask)

    @torch.no_grad()
    def embed(self, batch: SentenceBatch, n_chans: int | None = None) -> torch.Tensor:
        """Per-event embeddings without masking: see :func:`pool_events`."""
        return pool_events(self.encode(batch).float(), batch, n_chans)


EMBED_POOLS = ("mean", "channels")


def pool_channels(pool: str, n_chans: int) -> int | None:
    """The ``n_chans`` argument of :func:`pool_events` for a pool name (``evaluate.aemg_pool``)."""
    if pool not in EMBED_POOLS:
        raise ValueError(f"pool={pool!r}; valid: {', '.join(EMBED_POOLS)}")
    return n_chans if pool == "channels" else None


def pool_events(h: torch.Tensor, batch: SentenceBatch, n_chans: int | None = None) -> torch.Tensor:
    """Per-event vectors from hidden states h (B, L, width).

    ``n_chans`` None: mean over the event's channel patches, (B, E, width). Otherwise one
    vector per channel, concatenated channel-major, (B, E, n_chans * width), zero where a
    channel is absent. Mean pooling adds each patch's amplitude and position embeddings into
    one sum, so *which* electrode was strong survives only through attention; keeping the
    channel axis hands a classifier the spatial activation pattern directly (one fixed layout
    per dataset, as within LOSO). Rows of padded events are zero.
    """
    B, E = batch.event_index.shape
    real = ~batch.padding
    if n_chans is not None:
        out = h.new_zeros(B, E, n_chans, h.shape[-1])
        b = torch.arange(B, device=h.device).unsqueeze(1).expand_as(batch.event)
        out[b[real], batch.event[real], batch.channel[real]] = h[real]
        return out.flatten(2)
    member = ((batch.event.unsqueeze(-1) == torch.arange(E, device=h.device)) & real.unsqueeze(-1)).to(h.dtype)
    summed = torch.einsum("ble,blw->bew", member, torch.where(real.unsqueeze(-1), h, 0.0))
    return summed / member.sum(dim=1).clamp(min=1.0).unsqueeze(-1)
