"""Stage 1: the contraction tokenizer (VQ auto-encoder over single-channel patches).

encoder: patch (T samples) -> temporal Conv1d front-end (:class:`PatchEmbed`) -> residual MLP
  blocks -> code_dim vector -> :class:`VectorQuantizer` (index into the prototype codebook).
decoder: quantized code -> linear to width, **plus the spatial + temporal conditioning
  embedding** (electrode position or 16-slot, onset, order) -> residual MLP blocks -> T samples
  (and, with ``spectral_target``, rFFT amplitude and phase as (cos, sin)).

Conditioning is added on the decoder side, to the code, never before the encoder: the code of
a patch depends on its waveform only, so the codebook is a layout-independent library of
contraction prototypes (the same burst on any electrode of any dataset gets the same code),
while the decoder may still use where and when the patch was recorded to reconstruct it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aemg.model.config import ModelConfig
from aemg.model.layers import Conditioning, PatchEmbed, ResMLP
from aemg.model.vq import VectorQuantizer


@dataclass
class TokenizerOutput:
    reconstruction: torch.Tensor  # (N, T)
    indices: torch.Tensor  # (N,)
    quantized: torch.Tensor  # (N, code_dim)
    loss: torch.Tensor  # total: reconstruction + spectral + commitment
    recon_loss: torch.Tensor  # time-domain MSE
    spectral_loss: torch.Tensor  # 0 unless spectral_target
    vq_loss: torch.Tensor  # commitment


def spectral_targets(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(amplitude, cos phase, sin phase) of the orthonormal rFFT of x (N, T)."""
    spec = torch.fft.rfft(x.float(), norm="ortho")
    amp = spec.abs()
    phase = torch.angle(spec)
    return amp, phase.cos(), phase.sin()


class Tokenizer(nn.Module):
    """VQ auto-encoder over patches. ``forward(patches, positions, channel, onset, order)``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        n_blocks = max(1, cfg.depth // 2)
        self.embed = PatchEmbed(cfg.n_times, cfg.conv_channels, w, cfg.amplitude_embedding)
        self.encoder = nn.Sequential(
            *[ResMLP(w, 2, cfg.dropout) for _ in range(n_blocks)], nn.LayerNorm(w), nn.Linear(w, cfg.code_dim)
        )
        self.vq = VectorQuantizer(
            cfg.codebook_size, cfg.code_dim, decay=cfg.ema_decay,
            commitment_weight=cfg.commitment_weight, dead_code_threshold=cfg.dead_code_threshold,
        )
        self.cond = Conditioning(w, cfg.spatial_conditioning, cfg.n_order)
        self.dec_in = nn.Linear(cfg.code_dim, w)
        self.decoder = nn.Sequential(*[ResMLP(w, 2, cfg.dropout) for _ in range(n_blocks)], nn.LayerNorm(w))
        self.head_time = nn.Linear(w, cfg.n_times)
        self.n_freqs = cfg.n_times // 2 + 1
        self.head_spec = nn.Linear(w, 3 * self.n_freqs) if cfg.spectral_target else None

    def encode(self, patches: torch.Tensor) -> torch.Tensor:
        """Pre-quantisation encoder output (N, code_dim) of patches (N, T)."""
        return self.encoder(self.embed(patches))

    @torch.no_grad()
    def tokenize(self, patches: torch.Tensor) -> torch.Tensor:
        """Code indices (N,) of patches (N, T); call in eval mode for frozen codes."""
        return self.vq(self.encode(patches))[1]

    def decode(self, quantized: torch.Tensor, positions: torch.Tensor, channel: torch.Tensor,
               onset: torch.Tensor, order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.dec_in(quantized.to(self.dec_in.weight.dtype)) + self.cond(positions, channel, onset, order)
        h = self.decoder(h)
        spec = self.head_spec(h) if self.head_spec is not None else None
        return self.head_time(h), spec

    def forward(self, patches: torch.Tensor, positions: torch.Tensor, channel: torch.Tensor,
                onset: torch.Tensor, order: torch.Tensor) -> TokenizerOutput:
        z = self.encode(patches)
        quantized, indices, vq_loss = self.vq(z)
        recon, spec = self.decode(quantized, positions, channel, onset, order)
        x = patches.float()
        recon_loss = F.mse_loss(recon.float(), x)
        spectral_loss = recon_loss.new_zeros(())
        if spec is not None:
            amp, cos, sin = spectral_targets(x)
            p_amp, p_cos, p_sin = spec.float().split(self.n_freqs, dim=-1)
            weight = amp / amp.mean(dim=-1, keepdim=True).clamp(min=1e-6)  # phase of silent bins is noise
            spectral_loss = F.mse_loss(p_amp, amp) + (weight * ((p_cos - cos) ** 2 + (p_sin - sin) ** 2)).mean()
        loss = recon_loss + spectral_loss + vq_loss
        return TokenizerOutput(recon, indices, quantized, loss, recon_loss, spectral_loss, vq_loss)
