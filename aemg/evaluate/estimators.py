"""Per-fold estimators (scikit-learn API) for the methods that sklearn does not provide.

Every ``fit`` builds its model and optimiser from scratch, seeded, so an estimator object can
never carry weights, a codebook or optimiser state from one fold into the next (AEMG's release
did not reset its head between LOSO folds). The LOSO runner additionally asks for a new object
per fold and refuses one it has seen before.

- :class:`StateTokenizer`: K-means muscle-state codebook fitted on the fold's training trials
  only (the colleague's :func:`~aemg.tokenize.states.fit_state_codebook`), then states per
  window and channel.
- :class:`TokenStatistics`: the muscle-state paper's per-channel token statistics.
- :class:`CNNClassifier`: a small 1-D CNN over the raw trial tokens (channels x samples).
- :class:`StateViTClassifier`: the paper's ViT over the (frames x channels) state matrix.
- :class:`EventTransformerClassifier`: AEMG's event-token Transformer (MaskedTokenModel's
  patch embedding, conditioning and encoder, pooled per event) plus a linear head, either
  randomly initialised (no pre-training) or loaded from a pre-trained checkpoint (fine-tune).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from torch import nn

from aemg.evaluate.features import token_statistics
from aemg.tokenize.states import assign_states, fit_state_codebook


# --------------------------------------------------------------------------- muscle states
class StateTokenizer(TransformerMixin, BaseEstimator):
    """(n, frames, chans, 10) window features -> (n, frames, chans) state ids, K-means per fit."""

    def __init__(self, k: int = 13, seed: int = 0, max_samples: int = 50_000):
        self.k = k
        self.seed = seed
        self.max_samples = max_samples

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> StateTokenizer:
        X = np.asarray(X)
        self.codebook_ = fit_state_codebook(X.reshape(-1, X.shape[-1]), k=self.k, seed=self.seed,
                                            max_samples=self.max_samples)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return assign_states(self.codebook_, np.asarray(X))


class TokenStatistics(TransformerMixin, BaseEstimator):
    """(n, frames, chans) states -> per-channel token statistics (n, chans·(k+7))."""

    def __init__(self, k: int = 13):
        self.k = k

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> TokenStatistics:
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return token_statistics(X, self.k)


class CappedPCA(TransformerMixin, BaseEstimator):
    """PCA to at most ``n_components`` (fewer when the data have fewer features or rows); the
    probe's way to keep a 64-electrode embedding (4,096 features) as cheap as an 8-electrode one."""

    def __init__(self, n_components: int = 128, seed: int = 0):
        self.n_components = n_components
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> CappedPCA:
        from sklearn.decomposition import PCA

        k = min(int(self.n_components), X.shape[1], X.shape[0])
        self.pca_ = PCA(k, svd_solver="randomized", random_state=self.seed).fit(X) if k < X.shape[1] else None
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return X if self.pca_ is None else self.pca_.transform(X)


# --------------------------------------------------------------------------- torch base
def _lr_factor(progress: float, warmup: float = 0.1) -> float:
    """Linear warm-up then cosine decay to 10 %."""
    if progress < warmup:
        return max(progress / warmup, 0.05)
    p = (progress - warmup) / max(1e-9, 1 - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))


class TorchClassifier(ClassifierMixin, BaseEstimator):
    """Shared training loop: AdamW, warm-up + cosine, cross-entropy, fresh model per fit.

    Subclasses implement ``_build(X, n_classes) -> nn.Module``, ``_batches(X, y, rng)`` (yield
    (inputs, targets)) and ``_logits(module, inputs)``.
    """

    def __init__(self, epochs: int = 20, lr: float = 2e-3, weight_decay: float = 0.01,
                 batch_size: int = 64, seed: int = 0, device: str | None = None):
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.seed = seed
        self.device = device

    # hooks ---------------------------------------------------------------
    def _build(self, X: Any, n_classes: int) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def _param_groups(self, module: nn.Module) -> list[dict[str, Any]]:
        return [{"params": [p for p in module.parameters() if p.requires_grad], "lr": self.lr}]

    def _batch(self, n: int) -> int:
        """``batch_size``, smaller for small training sets so an epoch has >= 8 steps."""
        return int(min(self.batch_size, max(16, n // 8)))

    def _batches(self, X: Any, y: np.ndarray | None, rng: np.random.Generator | None) -> Iterator[tuple[Any, Any]]:
        idx = np.arange(len(X)) if rng is None else rng.permutation(len(X))
        bs = self._batch(len(X)) if y is not None else max(self.batch_size, 256)
        for s in range(0, len(idx), bs):
            b = idx[s:s + bs]
            yield self._inputs(X, b), (None if y is None else torch.from_numpy(y[b]).long()), b

    def _n_batches(self, X: Any) -> int:
        return math.ceil(len(X) / self._batch(len(X)))

    def _epochs_for(self, X: Any) -> int:
        return int(self.epochs)

    def _inputs(self, X: Any, b: np.ndarray) -> Any:
        return torch.from_numpy(np.ascontiguousarray(X[b]))

    def _logits(self, module: nn.Module, inputs: Any) -> torch.Tensor:
        return module(inputs.to(self._device))

    # sklearn API ---------------------------------------------------------
    def fit(self, X: Any, y: np.ndarray) -> TorchClassifier:
        from aemg.model.train import resolve_device

        self._device = resolve_device(self.device)
        self.classes_, y_enc = np.unique(np.asarray(y), return_inverse=True)
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        self.module_ = self._build(X, len(self.classes_)).to(self._device)  # fresh every fit
        groups = self._param_groups(self.module_)
        for g in groups:
            g["base_lr"] = g["lr"]
        opt = torch.optim.AdamW(groups, weight_decay=self.weight_decay)  # fresh every fit
        self.epochs_ = self._epochs_for(X)
        n_steps = max(1, self.epochs_ * self._n_batches(X))
        step = 0
        self.history_ = []
        self.module_.train()
        for _ in range(self.epochs_):
            total, count = 0.0, 0
            for inputs, target, _ in self._batches(X, y_enc, rng):
                for g in opt.param_groups:
                    g["lr"] = g["base_lr"] * _lr_factor(step / n_steps)
                logits, target = self._train_logits(inputs, target)
                loss = F.cross_entropy(logits.float(), target.to(self._device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.module_.parameters(), 1.0)
                opt.step()
                total += float(loss.detach()) * len(target)
                count += len(target)
                step += 1
            self.history_.append(total / max(count, 1))
        self.module_.eval()
        return self

    def _train_logits(self, inputs: Any, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._logits(self.module_, inputs), target

    @torch.no_grad()
    def decision_function(self, X: Any) -> np.ndarray:
        self.module_.eval()
        out = np.zeros((len(X), len(self.classes_)), np.float32)
        for inputs, _, b in self._batches(X, None, None):
            out[b] = self._logits(self.module_, inputs).float().cpu().numpy()
        return out

    def predict_proba(self, X: Any) -> np.ndarray:
        return torch.softmax(torch.from_numpy(self.decision_function(X)), dim=1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.decision_function(X).argmax(axis=1)]


# --------------------------------------------------------------------------- 1-D CNN
class _CNN(nn.Module):
    def __init__(self, n_chans: int, n_classes: int, width: int = 16, dropout: float = 0.2):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv1d(n_chans, w, 5, padding=2), nn.BatchNorm1d(w), nn.GELU(),
            nn.Conv1d(w, 2 * w, 5, stride=2, padding=2), nn.BatchNorm1d(2 * w), nn.GELU(),
            nn.Conv1d(2 * w, 2 * w, 3, padding=1), nn.BatchNorm1d(2 * w), nn.GELU(),
            nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(2 * w, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float())


class CNNClassifier(TorchClassifier):
    """1-D CNN on raw trial windows (n, n_chans, T): three conv blocks, global pooling, linear."""

    def __init__(self, width: int = 16, epochs: int = 20, lr: float = 3e-3, weight_decay: float = 0.01,
                 batch_size: int = 256, seed: int = 0, device: str | None = None):
        super().__init__(epochs, lr, weight_decay, batch_size, seed, device)
        self.width = width

    def _build(self, X: np.ndarray, n_classes: int) -> nn.Module:
        return _CNN(X.shape[1], n_classes, self.width)


# --------------------------------------------------------------------------- state ViT
class _StateViT(nn.Module):
    """ViT over a (frames x chans) token matrix: every temporal patch of ``patch`` frames is a
    linear map of its one-hot tokens (one learned vector per (channel, token), summed), a class
    token and learned positions are added, then pre-norm Transformer blocks and a linear head."""

    def __init__(self, n_chans: int, k: int, n_frames: int, n_classes: int, dim: int = 64,
                 depth: int = 1, heads: int = 4, patch: int = 1, dropout: float = 0.1):
        super().__init__()
        self.k, self.patch, self.n_chans = k, patch, n_chans
        self.n_patches = math.ceil(n_frames / patch)
        self.embed = nn.Embedding(n_chans * k * patch, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, self.n_patches + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        s = states.long().clamp(0, self.k - 1)  # (B, F, C)
        B, n_f, C = s.shape
        pad = self.n_patches * self.patch - n_f
        if pad:
            s = torch.cat([s, s[:, -1:].expand(B, pad, C)], dim=1)  # replication padding
        s = s.view(B, self.n_patches, self.patch, C)
        offset = (torch.arange(self.patch, device=s.device)[:, None] * C + torch.arange(C, device=s.device)) * self.k
        h = self.embed(s + offset).sum(dim=(2, 3))  # (B, P, dim)
        h = torch.cat([self.cls.expand(B, -1, -1), h], dim=1) + self.pos
        return self.head(self.norm(self.encoder(h))[:, 0])


class StateViTClassifier(TorchClassifier):
    """The muscle-state paper's ViT (d=64, one block) over state ids (n, frames, chans)."""

    def __init__(self, k: int = 13, dim: int = 64, depth: int = 1, heads: int = 4, patch: int = 1,
                 epochs: int = 20, lr: float = 3e-3, weight_decay: float = 0.01, batch_size: int = 256,
                 seed: int = 0, device: str | None = None):
        super().__init__(epochs, lr, weight_decay, batch_size, seed, device)
        self.k, self.dim, self.depth, self.heads, self.patch = k, dim, depth, heads, patch

    def _build(self, X: np.ndarray, n_classes: int) -> nn.Module:
        return _StateViT(X.shape[2], self.k, X.shape[1], n_classes, self.dim, self.depth, self.heads, self.patch)

    def _inputs(self, X: np.ndarray, b: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(X[b], dtype=np.int64))


# --------------------------------------------------------------------------- event Transformer
class _EventClassifier(nn.Module):
    """MaskedTokenModel encoder, pooled per event (:func:`aemg.model.mtm.pool_events`), + linear head."""

    def __init__(self, backbone: nn.Module, n_classes: int, n_chans: int | None = None):
        super().__init__()
        self.backbone = backbone
        self.n_chans = n_chans
        self.head = nn.Linear(backbone.cfg.width * (n_chans or 1), n_classes)

    def forward(self, batch: Any) -> torch.Tensor:
        """Logits (B, E, n_classes) per event of each sequence (padding events: garbage)."""
        from aemg.model.mtm import pool_events

        return self.head(pool_events(self.backbone.encode(batch).float(), batch, self.n_chans))


class EventTransformerClassifier(TorchClassifier):
    """Event-token Transformer over sentences of trials; ``X`` = trial indices into ``trials``.

    ``init``: "scratch" (random initialisation, AEMG's architecture without pre-training) or
    "pretrained" (weights loaded from ``model_dir``; the whole network is fine-tuned, the
    backbone at ``lr·backbone_lr_scale``). ``config`` gives the architecture for "scratch"
    (default: the pre-trained model's, when ``model_dir`` has one, else ``cpu-small``).
    ``rotation_deg``: electrode-shift augmentation of training batches only (each sentence's
    electrode angles turned by one δ ~ U(-rotation_deg, rotation_deg), drawn from the fit's
    seeded generator; see ``aemg.model.data.rotate_batch``); 0 = off.
    """

    def __init__(self, trials: Any = None, init: str = "scratch", model_dir: str | Path | None = None,
                 config: dict[str, Any] | None = None, backbone_lr_scale: float = 0.3,
                 epochs: int = 10, lr: float = 1e-3, weight_decay: float = 0.01, batch_size: int = 512,
                 seed: int = 0, device: str | None = None, patch_budget: int | None = None, min_epochs: int = 2,
                 pool: str = "channels", rotation_deg: float = 0.0):
        super().__init__(epochs, lr, weight_decay, batch_size, seed, device)
        self.pool = pool
        self.rotation_deg = rotation_deg
        self.patch_budget = patch_budget
        self.min_epochs = min_epochs
        self.trials = trials
        self.init = init
        self.model_dir = model_dir
        self.config = config
        self.backbone_lr_scale = backbone_lr_scale

    def _cfg(self):
        from aemg.model.config import ModelConfig, preset
        from aemg.model.train import load_checkpoint

        if self.config is not None:
            return ModelConfig.from_dict(self.config)
        if self.model_dir is not None and (Path(self.model_dir) / "mtm.pt").exists():
            return ModelConfig.from_dict(load_checkpoint(Path(self.model_dir) / "mtm.pt")["config"])
        return preset("cpu-small")

    def _build(self, X: np.ndarray, n_classes: int) -> nn.Module:
        from aemg.model.mtm import MaskedTokenModel, pool_channels
        from aemg.model.train import load_model

        if self.init == "pretrained":
            if self.model_dir is None:
                raise ValueError("init='pretrained' needs model_dir")
            _, backbone, _ = load_model(self.model_dir, "cpu")  # fresh copy from disk every fit
        elif self.init == "scratch":
            backbone = MaskedTokenModel(self._cfg())
        else:
            raise ValueError(f"init={self.init!r}; valid: scratch, pretrained")
        self.cfg_ = backbone.cfg
        if self.trials.tokens.shape[2] != self.cfg_.n_times:
            raise ValueError(f"{self.trials.dataset}: trials have n_times={self.trials.tokens.shape[2]}, "
                             f"model expects {self.cfg_.n_times}")
        return _EventClassifier(backbone, n_classes, pool_channels(self.pool, self.trials.n_chans))

    def _param_groups(self, module: nn.Module) -> list[dict[str, Any]]:
        scale = self.backbone_lr_scale if self.init == "pretrained" else 1.0
        return [
            {"params": [p for p in module.backbone.parameters() if p.requires_grad], "lr": self.lr * scale},
            {"params": list(module.head.parameters()), "lr": self.lr},
        ]

    def _epochs_for(self, X: np.ndarray) -> int:
        """``epochs``, or fewer so that epochs x training patches stays within ``patch_budget``
        (at least ``min_epochs``): large folds train fewer passes, small ones the full count."""
        if not self.patch_budget:
            return int(self.epochs)
        n_patches = max(1, len(X) * self.trials.n_chans)
        return int(min(self.epochs, max(self.min_epochs, round(self.patch_budget / n_patches))))

    def _n_batches(self, X: np.ndarray) -> int:
        from aemg.model.data import plan_sentence_batches

        return len(plan_sentence_batches([self.trials.tokenset(np.asarray(X))], self.cfg_.max_patches, self.batch_size))

    def _batches(self, X: np.ndarray, y: np.ndarray | None, rng: np.random.Generator | None) -> Iterator[tuple[Any, Any, Any]]:
        from aemg.model.data import collate_sentences, plan_sentence_batches, rotate_batch, rotation_angles

        X = np.asarray(X)
        ts = self.trials.tokenset(X)
        for items in plan_sentence_batches([ts], self.cfg_.max_patches, self.batch_size, rng):
            batch = collate_sentences([ts], items)
            if rng is not None and self.rotation_deg:  # rng only while training
                batch = rotate_batch(batch, rotation_angles(len(items), float(self.rotation_deg), rng))
            ev = batch.event_index
            local = ev[ev >= 0]
            target = None if y is None else torch.from_numpy(y[local]).long()
            yield batch, target, local

    def _logits(self, module: nn.Module, inputs: Any) -> torch.Tensor:
        batch = inputs.to(self._device)
        logits = module(batch)
        return logits[batch.event_index >= 0]


ESTIMATORS: dict[str, Callable[..., Any]] = {
    "cnn": CNNClassifier,
    "state_vit": StateViTClassifier,
    "event_transformer": EventTransformerClassifier,
}
