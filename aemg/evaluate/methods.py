"""Methods compared under LOSO: a feature map over trials plus a fresh estimator per fold.

A method names the per-dataset feature array it reads (computed once, unfitted) and a factory
that returns a *new* estimator for every fold; everything fitted (scaling, K-means states,
classifier, fine-tuned network) lives inside that estimator.

Feature arrays (see :func:`aemg.evaluate.run.compute_features`):
  hudgins         (n, 4·C) MAV, WL, ZC, SSC per channel
  tokens          (n, C, T) the trial tokens themselves
  state_windows   (n, frames, C, 10) the muscle-state paper's ten features per 50 ms window
  trial_index     (n,) row numbers, for estimators that read the trials (sentences, positions)
  aemg_embedding  (n, width) frozen embeddings of the pre-trained event-token Transformer
  aemg_embedding_fixedwin  the same from a model pre-trained on fixed-window tokens (ablation)
  aemg_embedding_rms  aemg_embedding with each channel's log-RMS appended (diagnostic)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from aemg.evaluate.estimators import (
    CappedPCA,
    CNNClassifier,
    EventTransformerClassifier,
    StateTokenizer,
    StateViTClassifier,
    TokenStatistics,
)
from aemg.evaluate.settings import ep_get


@dataclass
class MethodContext:
    """What a factory may use to build a fold's estimator; nothing in it is fitted."""

    seed: int = 0
    ep: dict[str, Any] = field(default_factory=dict)
    trials: Any = None
    model_dir: Path | None = None


@dataclass(frozen=True)
class Method:
    name: str
    features: str
    make_estimator: Callable[[MethodContext], Any]
    pretrained: bool = False  # uses the pre-trained model: the leak check must run
    description: str = ""
    seeded: bool = True  # its result depends on a seed (initialisation, K-means, pre-trained model): run per seed


def _ctx(ctx: MethodContext | int) -> MethodContext:
    return ctx if isinstance(ctx, MethodContext) else MethodContext(seed=int(ctx))


def _lda(ctx: MethodContext) -> Any:
    return make_pipeline(StandardScaler(), LinearDiscriminantAnalysis())


def _svm(ctx: MethodContext) -> Any:
    return make_pipeline(StandardScaler(), SVC(C=1.0, random_state=_ctx(ctx).seed))


def _cnn(ctx: MethodContext) -> Any:
    c = _ctx(ctx)
    return CNNClassifier(epochs=int(ep_get(c.ep, "torch_epochs")), seed=c.seed, device=ep_get(c.ep, "device"))


def _state_tokenizer(c: MethodContext) -> StateTokenizer:
    return StateTokenizer(k=int(ep_get(c.ep, "state_k")), seed=c.seed, max_samples=int(ep_get(c.ep, "state_kmeans_samples")))


def _state_svm(ctx: MethodContext) -> Any:
    c = _ctx(ctx)
    k = int(ep_get(c.ep, "state_k"))
    return make_pipeline(_state_tokenizer(c), TokenStatistics(k), StandardScaler(), SVC(C=1.0, random_state=c.seed))


def _state_vit(ctx: MethodContext) -> Any:
    c = _ctx(ctx)
    k = int(ep_get(c.ep, "state_k"))
    vit = StateViTClassifier(k=k, epochs=int(ep_get(c.ep, "torch_epochs")), seed=c.seed, device=ep_get(c.ep, "device"))
    return make_pipeline(_state_tokenizer(c), vit)


def _transformer(init: str) -> Callable[[MethodContext], Any]:
    def make(ctx: MethodContext) -> Any:
        c = _ctx(ctx)
        return EventTransformerClassifier(
            trials=c.trials, init=init, model_dir=c.model_dir,
            backbone_lr_scale=float(ep_get(c.ep, "finetune_lr_scale")),
            epochs=int(ep_get(c.ep, "transformer_epochs")), seed=c.seed, device=ep_get(c.ep, "device"),
            patch_budget=int(ep_get(c.ep, "transformer_patch_budget")) or None, pool=ep_get(c.ep, "aemg_pool"),
            rotation_deg=float(ep_get(c.ep, "finetune_rotation_deg")),
        )

    return make


def _probe(ctx: MethodContext) -> Any:
    """Linear probe on frozen embeddings (``evaluate.probe``): ``lda``, shrinkage LDA (Ledoit-Wolf
    by default) after PCA to ``evaluate.probe_components``, or ``logistic`` regression. Measured on
    Myo (40 people, 5 subject folds, one seed): logistic C=0.01 0.801 at 14 s per fit, shrinkage
    LDA 0.791 at 1.0 s, logistic C=1 0.776 at 41 s; PCA to 128 on flexemg (4,096 features) 0.531
    vs 0.490 at 0.5 s vs 37 s per fit, on uci 0.744 vs 0.738."""
    c = _ctx(ctx)
    kind = ep_get(c.ep, "probe")
    if kind == "lda":
        return make_pipeline(StandardScaler(), CappedPCA(int(ep_get(c.ep, "probe_components")), c.seed),
                             LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"))
    if kind == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=2000, random_state=c.seed))
    raise ValueError(f"evaluate.probe={kind!r}; valid: lda, logistic")


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("lda", "hudgins", _lda, description="LDA on Hudgins time-domain features", seeded=False),
        Method("svm", "hudgins", _svm, description="RBF SVM on Hudgins time-domain features", seeded=False),
        Method("cnn", "tokens", _cnn, description="1-D CNN on the raw trial windows"),
        Method("state_svm", "state_windows", _state_svm,
               description="muscle-state tokens (K-means per fold) + SVM on token statistics"),
        Method("state_vit", "state_windows", _state_vit,
               description="muscle-state tokens (K-means per fold) + ViT-style Transformer"),
        Method("transformer_scratch", "trial_index", _transformer("scratch"),
               description="event-token Transformer (AEMG architecture), random init, no pre-training"),
        Method("aemg_probe", "aemg_embedding", _probe, pretrained=True,
               description="AEMG: logistic-regression probe on frozen pre-trained embeddings"),
        Method("aemg_finetune", "trial_index", _transformer("pretrained"), pretrained=True,
               description="AEMG: pre-trained Transformer + linear head, fully fine-tuned"),
        Method("aemg_probe_fixedwin", "aemg_embedding_fixedwin", _probe, pretrained=True,
               description="ablation: probe on a model pre-trained on fixed-window tokens instead of events"),
        Method("diag_aemg_probe_rms", "aemg_embedding_rms", _probe, pretrained=True,
               description="diagnostic: AEMG probe with each channel's log-RMS appended (the patch "
                           "embedding normalises amplitude away); neither AEMG nor a baseline"),
    ]
}


def get_methods(names: list[str]) -> list[Method]:
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; available: {', '.join(METHODS)}")
    return [METHODS[n] for n in names]


def is_aemg(name: str) -> bool:
    return name.startswith("aemg")


def is_baseline(name: str) -> bool:
    """Baselines are the other methods, except diagnostics (``diag_*``)."""
    return not is_aemg(name) and not name.startswith("diag_")
