"""Stage 2: masked-token model (MTM) over the patch sequence of a sentence.

Input: a :class:`~aemg.model.data.SentenceBatch` of patches (events x channels, event-major).
Each patch -> its own temporal Conv1d front-end (:class:`PatchEmbed`); a random ``mask_ratio``
of the real patches is replaced by a learned mask token; then the spatial (MLP on continuous
electrode position, or 16-slot embedding) and temporal (onset seconds, order in sentence)
conditioning is added; a pre-norm Transformer encodes the sequence with padding excluded
from attention (key padding mask); a linear head predicts the frozen stage-1 code index of
each masked patch (cross-entropy on masked positions only).

``embed`` runs without masking and mean-pools the final hidden states over the channel
patches of each event (padding excluded) -> one vector per event for linear probes.
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


class MaskedTokenModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.embed_patch = PatchEmbed(cfg.n_times, cfg.conv_channels, w)
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
        if batch.codes is None:
            raise ValueError("batch.codes is None; collate with the stage-1 codes to train the MTM")
        mask = mask & ~batch.padding
        logits = self(batch, mask).float()
        target = batch.codes[mask]
        loss = F.cross_entropy(logits, target)
        correct = (logits.argmax(dim=-1) == target).sum()
        return loss, correct, target.new_tensor(target.numel())

    @torch.no_grad()
    def embed(self, batch: SentenceBatch) -> torch.Tensor:
        """Per-event embeddings (B, E, width): mean of the event's channel patches, padding
        excluded (rows of padded events are zero)."""
        h = self.encode(batch).float()
        E = batch.event_index.shape[1]
        member = (batch.event.unsqueeze(-1) == torch.arange(E, device=h.device)) & ~batch.padding.unsqueeze(-1)
        member = member.float()  # (B, L, E)
        summed = torch.einsum("ble,blw->bew", member, torch.where(batch.padding.unsqueeze(-1), 0.0, h))
        return summed / member.sum(dim=1).clamp(min=1.0).unsqueeze(-1)
