"""Movement quality: DTW between muscle-state token sequences, scored as in the muscle-state paper.

The paper (Sec. 3.4.2) compares a candidate execution ``B`` with a standard one ``A``, both
token sequences of shape (time, muscles):

- pointwise distance ``d(i, j) = sum_m |A[i, m] - B[j, m]|`` (L1 over the muscles compared);
- ``D(i, j) = d(i, j) + min(D(i-1, j), D(i, j-1), D(i-1, j-1))``, DTW distance ``D(N, M)``;
- score ``S = (1 - D(N, M) / (d_max · L)) · 100 %`` with ``L`` the length of the optimal
  warping path and ``d_max`` the largest possible pointwise distance. The paper states
  ``d_max = K - 1`` (rest to strongest token) for one muscle; for ``M`` muscles compared at once
  the largest L1 distance is ``M · (K - 1)``, which keeps the score in [0, 100] (the mean
  per-muscle token difference along the path, relative to its maximum).

Identical executions score 100; a time-shifted or slower copy scores 100 as well (DTW absorbs
timing); under- or over-activation of a muscle lowers that muscle's score and the overall one.
A pure-numpy DTW (anti-diagonal sweeps, O(N·M) memory) replaces dtaidistance, which this
project does not depend on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DTWResult:
    distance: float  # D(N, M)
    path_length: int  # L
    path: np.ndarray  # (L, 2) index pairs (i, j), from (0, 0) to (N-1, M-1)


def _as_sequence(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (time, muscles) token sequence, got shape {np.shape(x)}")
    if not np.isfinite(a.astype(np.float64)).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a.astype(np.float64)


def dtw(a: np.ndarray, b: np.ndarray, window: int | None = None) -> DTWResult:
    """DTW of two (time, features) sequences with L1 pointwise cost and the optimal path.

    ``window``: optional Sakoe-Chiba band half-width (in steps, widened to |N - M| so a path
    always exists); None = unconstrained. Ties in the backtrack prefer the diagonal.
    """
    a = _as_sequence(a, "a")
    b = _as_sequence(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"sequences compare different muscles: a has {a.shape[1]}, b has {b.shape[1]}")
    n, m = len(a), len(b)
    cost = np.abs(a[:, None, :] - b[None, :, :]).sum(axis=2)  # (n, m)
    if window is not None:
        w = max(int(window), abs(n - m))
        i, j = np.indices((n, m))
        cost = np.where(np.abs(i - j) <= w, cost, np.inf)
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for s in range(2, n + m + 1):  # anti-diagonal i + j = s in 1-based indices
        i = np.arange(max(1, s - m), min(n, s - 1) + 1)
        j = s - i
        best = np.minimum(np.minimum(acc[i - 1, j], acc[i, j - 1]), acc[i - 1, j - 1])
        acc[i, j] = cost[i - 1, j - 1] + best
    # backtrack
    i, j = n, m
    path = [(n - 1, m - 1)]
    while (i, j) != (1, 1):
        steps = ((i - 1, j - 1), (i - 1, j), (i, j - 1))
        i, j = min(steps, key=lambda ij: acc[ij])  # diagonal first among ties
        path.append((i - 1, j - 1))
    path_arr = np.array(path[::-1], dtype=np.int64)
    return DTWResult(float(acc[n, m]), len(path_arr), path_arr)


def score_from_dtw(distance: float, path_length: int, d_max: float) -> float:
    """The paper's score in percent: ``(1 - D / (d_max · L)) · 100``, clipped to [0, 100]."""
    if d_max <= 0 or path_length <= 0:
        raise ValueError(f"need d_max > 0 and path_length > 0, got {d_max=}, {path_length=}")
    return float(np.clip(100.0 * (1.0 - distance / (d_max * path_length)), 0.0, 100.0))


def quality_score(
    reference_states: np.ndarray,
    candidate_states: np.ndarray,
    k: int = 13,
    *,
    channel_names: list[str] | None = None,
    window: int | None = None,
    primary: list[int] | None = None,
) -> dict[str, Any]:
    """Movement quality of ``candidate_states`` against ``reference_states`` (time, muscles).

    Returns ``{"overall": S, "per_muscle": {name: S_m}, "primary": S_primary | None,
    "dtw_distance", "path_length", "k"}``: ``overall`` aligns all muscles jointly (d_max =
    M·(K-1)); each ``per_muscle`` score aligns that muscle alone (d_max = K-1), as the paper's
    per-muscle analysis; ``primary`` aligns only the listed muscle indices (the paper's
    "Primary Muscles"). Token ids must be ordered rest (0) to strongest (K-1), as
    :func:`aemg.tokenize.states.fit_state_codebook` orders them.
    """
    ref = _as_sequence(reference_states, "reference_states")
    cand = _as_sequence(candidate_states, "candidate_states")
    if ref.shape[1] != cand.shape[1]:
        raise ValueError(f"reference has {ref.shape[1]} muscles, candidate has {cand.shape[1]}")
    if k < 2:
        raise ValueError(f"k={k} must be >= 2")
    for name, s in (("reference_states", ref), ("candidate_states", cand)):
        if s.min() < 0 or s.max() > k - 1:
            raise ValueError(f"{name} has tokens in [{s.min():g}, {s.max():g}], outside [0, k-1={k - 1}]")
    n_muscles = ref.shape[1]
    names = channel_names or [f"ch{i}" for i in range(n_muscles)]
    if len(names) != n_muscles:
        raise ValueError(f"{len(names)} channel names for {n_muscles} muscles")
    joint = dtw(ref, cand, window)
    per = {}
    for m, name in enumerate(names):
        r = dtw(ref[:, m], cand[:, m], window)
        per[name] = round(score_from_dtw(r.distance, r.path_length, k - 1), 4)
    out: dict[str, Any] = {
        "overall": round(score_from_dtw(joint.distance, joint.path_length, n_muscles * (k - 1)), 4),
        "per_muscle": per,
        "primary": None,
        "dtw_distance": joint.distance,
        "path_length": joint.path_length,
        "k": k,
        "n_reference": len(ref),
        "n_candidate": len(cand),
    }
    if primary:
        sel = list(primary)
        r = dtw(ref[:, sel], cand[:, sel], window)
        out["primary"] = round(score_from_dtw(r.distance, r.path_length, len(sel) * (k - 1)), 4)
    return out


# --------------------------------------------------------------------------- executions from files or stores
def load_states_file(path: Path) -> np.ndarray:
    """A (time, muscles) token sequence from .npy, or .csv/.txt (one row per time step)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    return np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None, ndmin=2)


def parse_execution(spec: str) -> tuple[str, int, float | None, float | None]:
    """``DATASET:RECORDING[:START_S-STOP_S]`` -> (dataset, recording index, start s, stop s)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"{spec!r}: no such file, and not of the form DATASET:RECORDING[:START_S-STOP_S]")
    try:
        rec = int(parts[1])
    except ValueError:
        raise ValueError(f"{spec!r}: recording must be an integer index") from None
    start = stop = None
    if len(parts) == 3:
        try:
            a, b = parts[2].split("-")
            start, stop = float(a), float(b)
        except ValueError:
            raise ValueError(f"{spec!r}: time span must be START_S-STOP_S in seconds") from None
    return parts[0], rec, start, stop


def load_dataset_signal(harmonized: Path, dataset: str, window_s: float = 0.05, stride_s: float = 0.025,
                        wamp_std: float = 0.1) -> dict[str, Any]:
    """One harmonized dataset in memory with its state-window settings: ``{"emg", "offset",
    "n_times", "sfreq", "window", "stride", "wamp_threshold", "channels", "gesture"}``. WAMP's
    absolute threshold is ``wamp_std`` times the std of the dataset's whole signal, so every
    recording of the dataset gets comparable features."""

    from aemg.evaluate.features import state_window_samples
    from aemg.store import has_group, open_group

    if not has_group(harmonized, dataset):
        raise FileNotFoundError(f"{harmonized}: no dataset {dataset!r}; run `aemg harmonize {dataset}` first")
    ds = open_group(harmonized, dataset)
    sfreq = float(ds.attrs["sfreq"])
    window, stride = state_window_samples(sfreq, window_s, stride_s)
    emg = np.asarray(ds["emg"].values, dtype=np.float32)
    return {
        "emg": emg, "offset": ds["offset"].values.astype(np.int64), "n_times": ds["n_times"].values.astype(np.int64),
        "sfreq": sfreq, "window": window, "stride": stride, "wamp_threshold": wamp_std * float(np.std(emg)),
        "channels": [str(c) for c in ds["channel"].values.tolist()], "gesture": ds["gesture"].values,
    }


def fit_dataset_codebook(info: dict[str, Any], k: int = 13, seed: int = 0, max_samples: int = 200_000) -> Any:
    """Muscle-state codebook on every recording of a dataset: unsupervised, for scoring and
    figures only (never inside a LOSO fold, where K-means sees training subjects only)."""
    from aemg.tokenize.features import N_FEATURES, window_features
    from aemg.tokenize.states import fit_state_codebook

    rows = []
    for o, n in zip(info["offset"], info["n_times"], strict=True):
        if n >= info["window"]:
            f = window_features(info["emg"][o:o + n], info["sfreq"], info["window"], info["stride"],
                                wamp_threshold=info["wamp_threshold"])
            rows.append(f.reshape(-1, N_FEATURES))
    return fit_state_codebook(np.concatenate(rows), k=k, seed=seed, max_samples=max_samples)


def span_states(codebook: Any, info: dict[str, Any], rec: int, start_s: float | None = None,
                stop_s: float | None = None) -> np.ndarray:
    """States (frames, channels) of recording ``rec`` (optionally a span in seconds)."""
    from aemg.tokenize.features import window_features
    from aemg.tokenize.states import assign_states

    n_rec = len(info["offset"])
    if not 0 <= rec < n_rec:
        raise ValueError(f"recording {rec} out of range 0..{n_rec - 1}")
    offset, n_times, sfreq = int(info["offset"][rec]), int(info["n_times"][rec]), info["sfreq"]
    a = offset + (0 if start_s is None else round(start_s * sfreq))
    b = offset + (n_times if stop_s is None else min(n_times, round(stop_s * sfreq)))
    if b - a < info["window"]:
        raise ValueError(f"recording {rec}: span of {b - a} samples is shorter than one state window ({info['window']})")
    feats = window_features(info["emg"][a:b], sfreq, info["window"], info["stride"], wamp_threshold=info["wamp_threshold"])
    return assign_states(codebook, feats)


def quality_from_specs(reference: str, candidate: str, harmonized: Path | None = None, k: int = 13,
                       primary: list[int] | None = None, window: int | None = None) -> dict[str, Any]:
    """``aemg quality``: each of REFERENCE / CANDIDATE is a token file (.npy/.csv) or
    ``DATASET:RECORDING[:START_S-STOP_S]`` in the harmonized store (both then share one
    codebook, fitted on the reference's dataset)."""
    seqs, names = [], None
    signals: dict[str, dict[str, Any]] = {}
    codebook = None
    for spec in (reference, candidate):
        if Path(spec).exists():
            seqs.append(load_states_file(Path(spec)))
            continue
        if harmonized is None:
            raise FileNotFoundError(f"{spec}: not a file, and no harmonized store given")
        dataset, rec, start, stop = parse_execution(spec)
        if dataset not in signals:
            signals[dataset] = load_dataset_signal(harmonized, dataset)
        if codebook is None:  # one codebook, fitted on the reference's dataset, for both executions
            codebook = fit_dataset_codebook(signals[dataset], k=k)
        seqs.append(span_states(codebook, signals[dataset], rec, start, stop))
        names = signals[dataset]["channels"]
    return quality_score(seqs[0], seqs[1], k=k, channel_names=names, primary=primary, window=window)


def quality_command(reference: str, candidate: str, params_path: str | Path | None = None, store: str | Path | None = None,
                    k: int = 13, primary: list[int] | None = None, window: int | None = None) -> dict[str, Any]:
    """What ``aemg quality REFERENCE CANDIDATE`` runs: the harmonized store is ``store`` or the
    ``paths.harmonized`` of ``params_path``."""
    from aemg.params import load_params

    harmonized = store or load_params(params_path)["paths"]["harmonized"]
    return quality_from_specs(reference, candidate, harmonized, k=k, primary=primary or None, window=window)


def format_quality(result: dict[str, Any]) -> str:
    """Plain-text table of a :func:`quality_score` result."""
    lines = [f"overall quality: {result['overall']:.1f} / 100  (DTW distance {result['dtw_distance']:g}, "
             f"path length {result['path_length']}, K={result['k']})"]
    if result.get("primary") is not None:
        lines.append(f"primary muscles: {result['primary']:.1f} / 100")
    width = max(len(n) for n in result["per_muscle"])
    lines += [f"  {name.ljust(width)}  {score:6.1f}" for name, score in result["per_muscle"].items()]
    return "\n".join(lines)
