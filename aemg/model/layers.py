"""Building blocks shared by the stage-1 tokenizer and the stage-2 masked-token model."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class PatchEmbed(nn.Module):
    """Temporal Conv1d front-end: (N, T) patches -> (N, width).

    Two convolutions (kernel 7 then kernel 5 with stride 2) over the T samples of one
    channel's patch, flattened and projected to ``width``. Their GroupNorm makes the result
    blind to the patch's scale, so with ``amplitude`` the patch's log-RMS is embedded by a
    small MLP and added: without it a model cannot tell a strong burst on one electrode from
    noise on another, which is most of what separates gestures (measured: a probe on
    scale-blind embeddings scored 0.48 LOSO on Myo, the same embeddings plus each channel's
    log-RMS 0.89).
    """

    def __init__(self, n_times: int, conv_channels: int, width: int, amplitude: bool = True):
        super().__init__()
        c = conv_channels
        self.conv1 = nn.Conv1d(1, c, kernel_size=7, padding=3)
        self.conv2 = nn.Conv1d(c, c, kernel_size=5, stride=2, padding=2)
        self.norm1 = nn.GroupNorm(1, c)
        self.norm2 = nn.GroupNorm(1, c)
        n_out = (n_times + 2 * 2 - 5) // 2 + 1
        self.proj = nn.Linear(c * n_out, width)
        self.norm = nn.LayerNorm(width)
        self.amplitude = (
            nn.Sequential(nn.Linear(1, width), nn.GELU(), nn.Linear(width, width)) if amplitude else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.norm1(self.conv1(x.unsqueeze(1))))
        h = F.gelu(self.norm2(self.conv2(h)))
        out = self.norm(self.proj(h.flatten(1)))
        if self.amplitude is not None:
            out = out + self.amplitude(log_rms(x).unsqueeze(-1))
        return out


def log_rms(x: torch.Tensor, floor: float = 1e-3) -> torch.Tensor:
    """Natural log of each row's RMS, floored so that flat patches stay finite."""
    return torch.log(x.float().pow(2).mean(dim=-1).sqrt().clamp(min=floor)).to(x.dtype)


class ResMLP(nn.Module):
    """Pre-norm residual MLP block."""

    def __init__(self, width: int, ratio: int = 2, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, ratio * width)
        self.fc2 = nn.Linear(ratio * width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.fc2(F.gelu(self.fc1(self.norm(x)))))


class Conditioning(nn.Module):
    """Spatial + temporal conditioning embedding of a patch, shape (..., width).

    spatial: "position" -> 2-layer MLP on (cos angle, sin angle, distance) so that an unseen
      electrode layout still embeds; "slot16" -> learned embedding of the channel index (<= 16).
    temporal: learned embedding of the order in the sentence (clamped to n_order - 1) plus a
      linear map of sinusoidal features of the onset in seconds (periods 0.05 s .. 20 s).
    """

    N_SLOTS = 16

    def __init__(self, width: int, spatial: str = "position", n_order: int = 16, n_freqs: int = 8):
        super().__init__()
        self.spatial_kind = spatial
        if spatial == "position":
            self.spatial = nn.Sequential(nn.Linear(3, width), nn.GELU(), nn.Linear(width, width))
        elif spatial == "slot16":
            self.slot = nn.Embedding(self.N_SLOTS, width)
        else:
            raise ValueError(f"spatial_conditioning={spatial!r}; valid: position, slot16")
        self.n_order = n_order
        self.order = nn.Embedding(n_order, width)
        periods = torch.logspace(math.log10(0.05), math.log10(20.0), n_freqs)
        self.register_buffer("omega", 2 * math.pi / periods, persistent=False)
        self.onset = nn.Linear(2 * n_freqs, width)

    def forward(self, positions: torch.Tensor, channel: torch.Tensor, onset: torch.Tensor,
                order: torch.Tensor) -> torch.Tensor:
        if self.spatial_kind == "position":
            s = self.spatial(positions)
        else:
            if channel.numel() and int(channel.max()) >= self.N_SLOTS:
                raise ValueError(
                    f"spatial_conditioning='slot16' supports at most 16 channels, got channel "
                    f"index {int(channel.max())}. Fix: use spatial_conditioning='position'."
                )
            s = self.slot(channel)
        ang = onset.unsqueeze(-1).float() * self.omega
        t = self.onset(torch.cat([ang.sin(), ang.cos()], dim=-1))
        return s + t + self.order(order.clamp(max=self.n_order - 1))


class TransformerBlock(nn.Module):
    """Pre-norm Transformer encoder block using scaled_dot_product_attention.

    ``attend``: bool (B, 1, 1, L), True where a key may be attended (padding excluded).
    """

    def __init__(self, width: int, heads: int, dropout: float = 0.0, ratio: int = 4):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, ratio * width)
        self.fc2 = nn.Linear(ratio * width, width)
        self.dropout = dropout
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attend: torch.Tensor | None) -> torch.Tensor:
        B, L, W = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, L, 3, self.heads, W // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attend, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(B, L, W)))
        return x + self.drop(self.fc2(F.gelu(self.fc1(self.norm2(x)))))
