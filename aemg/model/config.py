"""Model configuration: one frozen dataclass, named presets, strict construction from dicts.

A checkpoint stores ``dataclasses.asdict(cfg)``; ``ModelConfig.from_dict`` rebuilds it and rejects
any key it does not know (listing the valid ones), so a typo in ``params.yaml`` fails loudly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from aemg.errors import AemgError

SPATIAL_CONDITIONING = ("position", "slot16")


class ModelConfigError(AemgError, ValueError):
    """A model configuration (or checkpoint) cannot be used as given."""


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of both pre-training stages.

    Sizes
      n_times: patch length T in samples (AEMG: 50 samples = 250 ms at 200 Hz).
      width, depth, heads: Transformer width / layers / attention heads (stage 2); the stage-1
        encoder and decoder use the same width and ``max(1, depth // 2)`` residual MLP blocks.
      conv_channels: channels of the temporal Conv1d front-end applied to each patch.
      codebook_size, code_dim: number and dimension of the (L2-normalised) codebook vectors.
      n_order: order-in-sentence embedding slots (AEMG orders are 0..14; larger ones share the
        last slot).
      max_patches: longest sequence the stage-2 Transformer sees, in patches
        (events x channels); longer sentences are cut into consecutive chunks.
    Objectives
      mask_ratio: fraction of (non-padding) patches masked per sequence in stage 2.
      spectral_target: stage 1 also predicts the rFFT amplitude and phase of each patch.
      amplitude_embedding: add an embedding of each patch's log-RMS to its (scale-blind)
        front-end output, in both stages; False is AEMG's scale-free token.
      spatial_conditioning: "position" (small MLP on the continuous electrode position, so
        unseen layouts embed) or "slot16" (one learned embedding per channel index, <= 16
        channels, AEMG's 16 virtual channels).
      commitment_weight, ema_decay, dead_code_threshold: VQ commitment loss weight, EMA decay
        of codebook statistics, and steps without use after which a code is restarted.
    Optimisation
      batch_size: patches per optimiser step in both stages (stage 2 packs whole sequences up
        to this budget, padding included).
      lr, weight_decay, warmup_frac: AdamW with linear warm-up then cosine decay to lr/10.
      epochs_vq, epochs_mtm: epochs of stage 1 and stage 2.
      seed: seeds torch and numpy; resume reproduces an uninterrupted run exactly (CPU).
    Augmentation
      rotation_deg: training only, every sentence (stage 2) or patch (stage 1) has all its
        electrode angles turned by one δ ~ U(-rotation_deg, rotation_deg): circumferential
        arrays are worn rotated from person to person. 0 = off.
    """

    n_times: int = 50
    width: int = 64
    depth: int = 2
    heads: int = 4
    conv_channels: int = 16
    codebook_size: int = 128
    code_dim: int = 32
    n_order: int = 16
    max_patches: int = 256
    mask_ratio: float = 0.5
    dropout: float = 0.0
    spectral_target: bool = False
    amplitude_embedding: bool = True
    spatial_conditioning: str = "position"
    commitment_weight: float = 0.25
    ema_decay: float = 0.95
    dead_code_threshold: int = 50
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_frac: float = 0.05
    batch_size: int = 2048
    epochs_vq: int = 8
    epochs_mtm: int = 12
    seed: int = 0
    rotation_deg: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        if self.spatial_conditioning not in SPATIAL_CONDITIONING:
            problems.append(
                f"spatial_conditioning={self.spatial_conditioning!r} (valid: {', '.join(SPATIAL_CONDITIONING)})"
            )
        if self.width % self.heads:
            problems.append(f"width={self.width} is not divisible by heads={self.heads}")
        if not 0.0 < self.mask_ratio < 1.0:
            problems.append(f"mask_ratio={self.mask_ratio} must lie in (0, 1)")
        if not 0.0 <= self.ema_decay < 1.0:
            problems.append(f"ema_decay={self.ema_decay} must lie in [0, 1)")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout={self.dropout} must lie in [0, 1)")
        if not 0.0 <= self.rotation_deg <= 180.0:
            problems.append(f"rotation_deg={self.rotation_deg} must lie in [0, 180]")
        for name in ("n_times", "width", "depth", "heads", "conv_channels", "codebook_size",
                     "code_dim", "n_order", "max_patches", "batch_size", "dead_code_threshold"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} must be >= 1")
        for name in ("epochs_vq", "epochs_mtm"):
            if getattr(self, name) < 0:
                problems.append(f"{name}={getattr(self, name)} must be >= 0")
        if problems:
            raise ModelConfigError("Invalid ModelConfig: " + "; ".join(problems))

    @classmethod
    def valid_keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Build a config from a mapping; an optional ``preset`` key names the base preset.

        Unknown keys raise ``ModelConfigError`` listing the valid keys.
        """
        d = dict(d)
        base = cls()
        if "preset" in d:
            base = preset(d.pop("preset"))
        valid = cls.valid_keys()
        unknown = sorted(k for k in d if k not in valid)
        if unknown:
            raise ModelConfigError(
                f"Unknown ModelConfig key(s): {', '.join(map(repr, unknown))}. "
                f"Valid keys: preset, {', '.join(valid)}"
            )
        return replace(base, **d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, ModelConfig] = {
    # ~20k events x 8 channels pre-train in well under 3 minutes on 2 CPU cores. Stage 1 gets
    # 24 epochs (8 left it at ~100 optimizer steps: held-out reconstruction error 0.93-0.94)
    # and the spectral target, which steers the codes towards the spectrum that context can
    # predict rather than the noise-like waveform detail (24 epochs alone: error 0.85 but
    # masked-token accuracy only 0.005 above always guessing the most frequent code; both:
    # error 0.90, accuracy 0.06 above it). Time-domain error has a floor here: a 128-centroid
    # k-means on the raw patches reaches only 0.76-0.80.
    "cpu-small": ModelConfig(spectral_target=True, epochs_vq=24),
    # AEMG-sized: 8192-code prototype library, 6-layer width-256 Transformer.
    "base": ModelConfig(
        width=256, depth=6, heads=8, conv_channels=32, codebook_size=8192, code_dim=64,
        dropout=0.1, ema_decay=0.99, dead_code_threshold=200, lr=5e-4, batch_size=8192,
        epochs_vq=30, epochs_mtm=50,
    ),
    "large": ModelConfig(
        width=512, depth=12, heads=8, conv_channels=64, codebook_size=8192, code_dim=64,
        dropout=0.1, ema_decay=0.99, dead_code_threshold=200, lr=3e-4, batch_size=8192,
        epochs_vq=30, epochs_mtm=50,
    ),
}


def preset(name: str, **overrides: Any) -> ModelConfig:
    """Return the named preset, optionally with fields replaced (unknown fields rejected)."""
    if name not in PRESETS:
        raise ModelConfigError(f"Unknown preset {name!r}. Available: {', '.join(PRESETS)}")
    if overrides:
        return ModelConfig.from_dict({"preset": name, **overrides})
    return PRESETS[name]
