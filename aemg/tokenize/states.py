"""Muscle-state tokens: K-means over per-window features, ids ordered from rest to strongest.

Following the muscle-state tokens paper (Sec. 3.2-3.3, 4.2): a codebook of K centroids is
fitted on feature vectors pooled over frames and channels of the *training* subjects only, and
every window of every channel is mapped to its nearest centroid. The paper orders its tokens
from rest to strong contraction by inspecting centroids; here the order is fixed by the
centroid's RMS (ties by MAV), so token 0 is rest and token k-1 the strongest contraction in
every fold, and ids can be compared, averaged and differenced across folds and subjects.

The paper does not say how features are scaled before K-means. Unscaled, MNF/MDF (hundreds of
Hz) would swamp RMS (micro- to millivolts). Amplitude features (RMS, WL, MAV) grow
multiplicatively with contraction and span decades between rest and effort, so they are
log-transformed first (with a floor at 1e-3 x their training median, so a silent or padded
window does not produce -inf); then every feature is z-scored with training mean and std.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import cohen_kappa_score

from aemg.tokenize.features import FEATURE_NAMES

LOG_FEATURES: tuple[str, ...] = ("rms", "wl", "mav")
_LOG_FLOOR_FRACTION = 1e-3
_ASSIGN_ROWS = 65_536  # rows per distance block: memory stays flat for whole datasets


@dataclass(frozen=True, eq=False)
class StateCodebook:
    """K centroids in scaled feature space plus the scaling that maps raw features there.

    ``log_floor`` is 0 for features used linearly and the floor of the log for the others.
    Arrays are stored read-only: a codebook is shared by every fold that tokenises with it.
    """

    centers: np.ndarray  # (k, n_features), scaled space, ordered rest -> strongest
    scale_mean: np.ndarray  # (n_features,) of the (log-)features
    scale_std: np.ndarray  # (n_features,)
    log_floor: np.ndarray  # (n_features,)
    feature_names: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in ("centers", "scale_mean", "scale_std", "log_floor"):
            frozen = np.array(getattr(self, name), dtype=np.float64)
            frozen.flags.writeable = False
            object.__setattr__(self, name, frozen)
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        n = len(self.feature_names)
        shapes = [a.shape for a in (self.scale_mean, self.scale_std, self.log_floor)]
        if self.centers.ndim != 2 or self.centers.shape[1] != n or any(s != (n,) for s in shapes):
            raise ValueError(f"codebook arrays disagree with {n} feature names: centers "
                             f"{self.centers.shape}, scale/floor {shapes}")

    @property
    def k(self) -> int:
        """Number of states; derived from ``centers`` so the two can never disagree."""
        return int(self.centers.shape[0])

    def scale(self, features: np.ndarray) -> np.ndarray:
        """Raw features (..., n_features) -> the space the centroids live in (float64)."""
        z = _log_amplitudes(features, self.log_floor)
        z -= self.scale_mean
        z /= self.scale_std
        return z

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays, so the codebook can be stored in Zarr beside the tokens it produced."""
        return {
            "centers": self.centers,
            "scale_mean": self.scale_mean,
            "scale_std": self.scale_std,
            "log_floor": self.log_floor,
            "feature_names": np.array(self.feature_names, dtype=np.str_),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> StateCodebook:
        """Inverse of :meth:`to_arrays` (accepts anything array-like, e.g. Zarr arrays)."""
        return cls(
            centers=arrays["centers"],
            scale_mean=arrays["scale_mean"],
            scale_std=arrays["scale_std"],
            log_floor=arrays["log_floor"],
            feature_names=tuple(str(s) for s in np.asarray(arrays["feature_names"]).tolist()),
        )


def _log_amplitudes(features: np.ndarray, log_floor: np.ndarray) -> np.ndarray:
    """Float64 copy with log(max(value, floor)) for every feature whose floor is > 0."""
    z = np.array(features, dtype=np.float64)
    logged = log_floor > 0
    z[..., logged] = np.log(np.maximum(z[..., logged], log_floor[logged]))
    return z


def _as_rows(features: np.ndarray, n_features: int) -> np.ndarray:
    x = np.asarray(features)
    if x.ndim < 1 or x.shape[-1] != n_features:
        raise ValueError(f"features must end in {n_features} features, got shape {x.shape}")
    x = x.reshape(-1, n_features)
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf; drop or repair those windows first")
    return x


def fit_state_codebook(
    features: np.ndarray,
    k: int = 13,
    seed: int = 0,
    max_samples: int = 200_000,
    *,
    feature_names: tuple[str, ...] = FEATURE_NAMES,
) -> StateCodebook:
    """Fit K-means on training-subject feature rows (n, n_features) pooled over frames x chans.

    At most ``max_samples`` rows, drawn at random with ``seed``, set the log floors, the
    standardisation and the centroids: that bounds time and memory for whole training folds
    without favouring any part of a recording. Centroids are re-ordered by ascending RMS (then
    MAV), so state 0 is rest and state k-1 the strongest contraction.
    """
    rows = _as_rows(features, len(feature_names))
    if not 1 <= k <= min(rows.shape[0], max_samples):
        raise ValueError(f"need 1 <= k <= rows used, got {k=} with {rows.shape[0]} rows, "
                         f"{max_samples=}")
    if "rms" not in feature_names or "mav" not in feature_names:
        raise ValueError(f"ordering states needs 'rms' and 'mav' among {feature_names}")
    if rows.shape[0] > max_samples:
        rng = np.random.default_rng(seed)
        rows = rows[np.sort(rng.choice(rows.shape[0], max_samples, replace=False))]
    log_floor = np.zeros(len(feature_names))
    for i, name in enumerate(feature_names):
        if name in LOG_FEATURES:
            median = float(np.median(rows[:, i]))
            log_floor[i] = _LOG_FLOOR_FRACTION * median if median > 0 else np.finfo(np.float32).tiny
    z = _log_amplitudes(rows, log_floor)
    mean = z.mean(axis=0)
    std = z.std(axis=0)
    std[std == 0] = 1.0  # a constant feature carries no information; keep it finite
    z -= mean
    z /= std
    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(z)
    centers = km.cluster_centers_
    order = np.lexsort((centers[:, feature_names.index("mav")],
                        centers[:, feature_names.index("rms")]))
    return StateCodebook(centers=centers[order], scale_mean=mean, scale_std=std,
                         log_floor=log_floor, feature_names=tuple(feature_names))


def _nearest(codebook: StateCodebook, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid and squared distance to it, block by block."""
    states = np.empty(rows.shape[0], np.int16)
    dist = np.empty(rows.shape[0], np.float64)
    c = codebook.centers
    c_sq = np.einsum("kf,kf->k", c, c)
    for start in range(0, rows.shape[0], _ASSIGN_ROWS):
        z = codebook.scale(rows[start:start + _ASSIGN_ROWS])
        d = np.einsum("nf,nf->n", z, z)[:, None] - 2.0 * (z @ c.T) + c_sq
        idx = d.argmin(axis=1)
        states[start:start + z.shape[0]] = idx
        dist[start:start + z.shape[0]] = np.maximum(d[np.arange(z.shape[0]), idx], 0.0)
    return states, dist


def assign_states(codebook: StateCodebook, features: np.ndarray) -> np.ndarray:
    """Token id (int16, 0 = rest) of each feature vector; ``features`` is (..., n_features)."""
    features = np.asarray(features)
    rows = _as_rows(features, len(codebook.feature_names))
    return _nearest(codebook, rows)[0].reshape(features.shape[:-1])


def _pnmi(states: np.ndarray, labels: np.ndarray) -> float:
    """Phone-normalised mutual information I(state; label) / H(label) (HuBERT, Hsu et al. 2021)."""
    _, lab = np.unique(labels, return_inverse=True)
    _, sta = np.unique(states, return_inverse=True)
    joint = np.zeros((lab.max() + 1, sta.max() + 1))
    np.add.at(joint, (lab, sta), 1.0)
    joint /= joint.sum()
    p_lab, p_sta = joint.sum(axis=1), joint.sum(axis=0)
    nz = joint > 0
    mi = np.sum(joint[nz] * np.log(joint[nz] / np.outer(p_lab, p_sta)[nz]))
    h_lab = -np.sum(p_lab * np.log(p_lab))
    return float(mi / h_lab)


def select_k(
    features: np.ndarray,
    labels: np.ndarray,
    ks: Iterable[int] = range(2, 26),
    seed: int = 0,
) -> list[dict[str, float]]:
    """SSE and PNMI per K (paper Sec. 3.3): SSE flattening and PNMI peaking pick K.

    ``labels`` gives the gesture of each feature row; SSE is measured in the scaled space over
    all rows, so values are comparable across K.
    """
    rows = _as_rows(features, len(FEATURE_NAMES))
    labels = np.asarray(labels).reshape(-1)
    if labels.shape[0] != rows.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels for {rows.shape[0]} feature rows")
    if np.unique(labels).size < 2:
        raise ValueError("PNMI needs at least two distinct labels")
    out = []
    for k in ks:
        codebook = fit_state_codebook(rows, k=k, seed=seed)
        states, dist = _nearest(codebook, rows)
        out.append({"k": int(k), "sse": float(dist.sum()), "pnmi": _pnmi(states, labels)})
    return out


def consistency(
    train_codebook: StateCodebook,
    heldout_features: np.ndarray,
    k: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Agreement between training-codebook tokens and tokens from clustering the held-out data.

    As in the paper (Sec. 4.2): K-means is fitted independently on the held-out subject (own
    scaling, same rest -> strongest ordering) and both token sequences are compared with
    Cohen's kappa, exact overlap and overlap within +-1 token.
    """
    k = train_codebook.k if k is None else k
    if k != train_codebook.k:
        raise ValueError(f"{k=} differs from the training codebook's k={train_codebook.k}")
    rows = _as_rows(heldout_features, len(train_codebook.feature_names))
    heldout_codebook = fit_state_codebook(rows, k=k, seed=seed,
                                          feature_names=train_codebook.feature_names)
    a = assign_states(train_codebook, rows).astype(np.int64)
    b = assign_states(heldout_codebook, rows).astype(np.int64)
    return {
        "kappa": float(cohen_kappa_score(a, b)),
        "overlap": float(np.mean(a == b)),
        "overlap_pm1": float(np.mean(np.abs(a - b) <= 1)),
        "n": int(a.size),
    }


def token_histogram(states: np.ndarray, k: int) -> np.ndarray:
    """Share of each token along axis 0 (time): shape ``states.shape[1:] + (k,)``.

    These per-channel token ratios are the paper's SVM token statistics; an empty sequence
    gives all zeros rather than NaN so a missing recording cannot poison a feature matrix.
    """
    states = np.asarray(states)
    if states.ndim < 1:
        raise ValueError("states need a time axis")
    if states.size and (states.min() < 0 or states.max() >= k):
        raise ValueError(f"states must lie in [0, {k}), got [{states.min()}, {states.max()}]")
    n, cols = states.shape[0], math.prod(states.shape[1:])
    flat = states.reshape(n, cols).astype(np.int64)
    counts = np.bincount((flat + np.arange(cols) * k).ravel(), minlength=cols * k)
    hist = counts.reshape(cols, k) / max(n, 1)
    return hist.reshape((*states.shape[1:], k))
