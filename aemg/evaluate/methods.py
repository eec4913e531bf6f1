"""Methods compared under LOSO: a feature map over trials plus a fresh estimator per fold."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sklearn.base import ClassifierMixin
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC


@dataclass(frozen=True)
class Method:
    name: str
    features: str  # "hudgins" or "aemg_embedding": computed once per dataset by the caller
    make_estimator: Callable[[int], Pipeline | ClassifierMixin]


METHODS: dict[str, Method] = {
    "lda": Method("lda", "hudgins", lambda seed: make_pipeline(StandardScaler(), LinearDiscriminantAnalysis())),
    "svm": Method("svm", "hudgins", lambda seed: make_pipeline(StandardScaler(), SVC(C=1.0, random_state=seed))),
    "aemg_probe": Method(
        "aemg_probe",
        "aemg_embedding",
        lambda seed: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed)),
    ),
}


def get_methods(names: list[str]) -> list[Method]:
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; available: {', '.join(METHODS)}")
    return [METHODS[n] for n in names]
