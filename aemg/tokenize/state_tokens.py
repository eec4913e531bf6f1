"""Muscle-state tokens of a harmonized dataset: ``state(frame, channel)`` beside the events.

The muscle-state tokens paper (Sec. 3.2) band-passes sEMG at 20-450 Hz (4th-order Butterworth),
cuts 50 ms windows every 25 ms, computes ten features per window and channel
(:mod:`aemg.tokenize.features`) and clusters them with K-means, K=13, fitted on training subjects
only (:mod:`aemg.tokenize.states`). Here every number is a parameter (``tokenize.states`` in
``params.yaml``, defaults in :data:`STATE_DEFAULTS`).

Band. The upper edge is clipped to 0.95 x Nyquist of the store's rate: the harmonized store
runs at 200 Hz, so the paper's 20-450 Hz becomes **20-95 Hz** there (the harmonized signal was
already band-passed 10-95 Hz with a 50 Hz notch). A 50 ms window is then 10 samples, the
stride 5, and the periodogram bins are 20 Hz wide: MNF/MDF/PSR are coarse at this rate. The
effective band is recorded in the ``states`` attrs (``band_hz``).

Thresholds. ZC, SSC and WAMP need absolute thresholds (see features.py). Units differ between
datasets (volts, raw ADC counts, envelopes), so ``zc_threshold`` and ``wamp_threshold`` are
given in units of the *training subjects'* band-passed RMS (all channels pooled) and
``ssc_threshold`` in units of its square; the absolute values used are stored in the attrs.

Split. Subjects are split into training and held-out subjects once per dataset, either from an
explicit list (``train_subjects: {dataset_id: [subject, ...]}``, or a plain list used for every
dataset, where each name must exist) or by shuffling the sorted
subject ids with ``seed`` and keeping ``round(train_subjects_fraction x n)`` for training (at
least one, and at least one held out when there are two subjects or more and the fraction is
below 1). The codebook and the feature scaling are fitted on training subjects only; the held-out
subjects are named in the attrs (they are what ``aemg tokenize --consistency`` scores).

Dask. Three passes, each one task per block of recordings (a task gets the store path, the
group and recording indices and reads its own slices): (1) per-channel power of the raw and the
band-passed signal, (2) a seeded Bernoulli sample of training feature rows, (3) events and
states. The codebook is fitted between (2) and (3) in the driver on at most ``max_train_rows``
rows. A recording is processed in time blocks of ``block_samples`` samples (plus
``filter_margin_s`` on each side for the zero-phase filter's transients; the impulse response of
the band-pass has decayed below 1e-8 of its peak within 1.5 s at 200 Hz and 0.4 s at 1-2 kHz), so
passes (1) and (2) hold at most one block of one recording, whatever the recording length. The
block grid is fixed by the recording, and the sample is drawn with a generator seeded by
(seed, recording, block), so a result never depends on how recordings were spread over tasks
or on a task being re-run after a worker died. Workers return small arrays (int16 states at
frame rate: 1/10 of the bytes of the float32 signal at the harmonized rate's 5-sample stride);
the driver gathers them and writes the token store once, so no two writers ever share a chunk.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pandera.xarray as px
import xarray as xr
from pandera.typing import Series
from scipy import signal
from threadpoolctl import threadpool_limits

from aemg.errors import AemgError
from aemg.params import params_hash
from aemg.store import StoreLike, open_arrays, open_group, recording_table_from
from aemg.tokenize.events import Reader
from aemg.tokenize.features import FEATURE_NAMES, N_FEATURES, window_features
from aemg.tokenize.states import StateCodebook, fit_state_codebook
from aemg.vocabulary import UNLABELLED

STATE_DEFAULTS: dict[str, Any] = {
    "k": 13,
    "window_s": 0.05,
    "stride_s": 0.025,
    "band": [20.0, 450.0],
    "filter_order": 4,  # scipy's N: a band-pass of order 8, applied forward and backward
    "train_subjects_fraction": 0.8,
    "train_subjects": {},  # {dataset_id: [subject, ...]} (or one list for every dataset): overrides the fraction
    "seed": 0,
    "zc_threshold": 0.0,  # x training band-passed RMS
    "ssc_threshold": 0.0,  # x its square
    "wamp_threshold": 0.5,  # x training band-passed RMS
    "psr_halfwidth_hz": 20.0,
    "max_train_rows": 50_000,  # feature rows (frame x channel) the K-means fit sees at most
    "block_samples": 131_072,  # time block per read + filter: bounds a worker's memory
    "filter_margin_s": 2.0,
    "select_k": [2, 25],  # inclusive K range of `aemg tokenize --select-k`
    "report_max_rows": 20_000,  # rows per fit in the select-k and consistency reports
}

MapFn = Callable[..., Iterable[Any]]


def state_params(tp: Mapping[str, Any]) -> dict[str, Any]:
    """``tokenize.states`` merged over :data:`STATE_DEFAULTS`; unknown keys fail loudly."""
    given = dict(tp.get("states") or {})
    unknown = sorted(set(given) - set(STATE_DEFAULTS))
    if unknown:
        raise AemgError(f"tokenize.states: unknown parameter(s) {unknown}; valid: {', '.join(STATE_DEFAULTS)}")
    return {**STATE_DEFAULTS, **given}


@dataclass(frozen=True)
class StateParams:
    """``tokenize.states`` resolved for one sampling rate (sample counts, effective band)."""

    sfreq: float
    k: int
    window: int
    stride: int
    band: tuple[float, float]  # effective, after clipping to 0.95 x Nyquist
    requested_band: tuple[float, float]
    filter_order: int
    seed: int
    zc_rel: float
    ssc_rel: float
    wamp_rel: float
    psr_halfwidth_hz: float
    max_train_rows: int
    block_frames: int
    margin: int
    raw: dict[str, Any]

    @classmethod
    def from_params(cls, tp: Mapping[str, Any], sfreq: float) -> StateParams:
        sp = state_params(tp)
        window = round(sp["window_s"] * sfreq)
        stride = round(sp["stride_s"] * sfreq)
        if window < 2 or stride < 1:
            raise AemgError(f"tokenize.states: window_s={sp['window_s']} and stride_s={sp['stride_s']} give "
                            f"{window=} and {stride=} samples at {sfreq=}; need window >= 2, stride >= 1")
        low, high = (float(v) for v in sp["band"])
        high_eff = min(high, 0.95 * sfreq / 2)
        if not 0 < low < high_eff:
            raise AemgError(f"tokenize.states.band {[low, high]} is empty at {sfreq=} (upper edge clipped to "
                            f"0.95 x Nyquist = {0.95 * sfreq / 2:g} Hz); lower the low edge")
        for key in ("zc_threshold", "ssc_threshold", "wamp_threshold", "psr_halfwidth_hz"):
            if not float(sp[key]) >= 0:
                raise AemgError(f"tokenize.states.{key} must be >= 0, got {sp[key]}")
        if int(sp["k"]) < 2:
            raise AemgError(f"tokenize.states.k must be >= 2, got {sp['k']}")
        return cls(
            sfreq=float(sfreq), k=int(sp["k"]), window=window, stride=stride, band=(low, high_eff),
            requested_band=(low, high), filter_order=int(sp["filter_order"]), seed=int(sp["seed"]),
            zc_rel=float(sp["zc_threshold"]), ssc_rel=float(sp["ssc_threshold"]),
            wamp_rel=float(sp["wamp_threshold"]), psr_halfwidth_hz=float(sp["psr_halfwidth_hz"]),
            max_train_rows=int(sp["max_train_rows"]),
            block_frames=max(1, int(sp["block_samples"]) // stride),
            margin=math.ceil(float(sp["filter_margin_s"]) * sfreq), raw=sp,
        )

    def n_frames(self, n_times: int) -> int:
        return 0 if n_times < self.window else 1 + (n_times - self.window) // self.stride

    def sos(self) -> np.ndarray:
        return _butter(self.filter_order, self.band, self.sfreq).copy()  # scipy wants it writeable


@functools.lru_cache(maxsize=16)
def _butter(order: int, band: tuple[float, float], sfreq: float) -> np.ndarray:
    sos = signal.butter(order, list(band), btype="bandpass", fs=sfreq, output="sos")
    return sos


# ---------------------------------------------------------------------------------------------
# Subjects: training vs held out
# ---------------------------------------------------------------------------------------------


def split_subjects(subjects: Iterable[str], dataset: str, raw: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(training, held-out) subject ids, both sorted; see the module docstring for the rule."""
    known = sorted({str(s) for s in subjects})
    if not known:
        raise AemgError(f"{dataset}: no subjects to split")
    given = raw.get("train_subjects") or {}
    explicit = given.get(dataset) if isinstance(given, Mapping) else given  # a plain list: every dataset
    if explicit:
        wanted = sorted({str(s) for s in explicit})
        missing = [s for s in wanted if s not in known]
        if missing:
            raise AemgError(f"{dataset}: tokenize.states.train_subjects names unknown subject(s) {missing}; "
                            f"known: {known}")
        return wanted, [s for s in known if s not in wanted]
    fraction = float(raw["train_subjects_fraction"])
    if not 0 < fraction <= 1:
        raise AemgError(f"tokenize.states.train_subjects_fraction must be in (0, 1], got {fraction}")
    n = len(known)
    n_train = min(n, max(1, round(fraction * n)))
    if fraction < 1 and n_train == n and n > 1:
        n_train = n - 1
    order = np.random.default_rng(int(raw["seed"])).permutation(n)
    train = sorted(known[i] for i in order[:n_train])
    return train, [s for s in known if s not in train]


# ---------------------------------------------------------------------------------------------
# One recording, block by block
# ---------------------------------------------------------------------------------------------


class ChunkReader:
    """``read(a, b)``: samples [a, b) of a Zarr array, keeping the last decoded chunk.

    Recordings of a task lie end to end in the store, and a recording is read block by block, so
    consecutive reads mostly hit the chunk decoded last: each chunk is decoded about once per
    pass, and memory holds one chunk plus the block being read.
    """

    def __init__(self, array: Any, offset: int = 0) -> None:
        self.array, self.offset = array, offset
        self.step, self.n = int(array.chunks[0]), int(array.shape[0])
        self.cached: tuple[int, np.ndarray | None] = (-1, None)

    def at(self, offset: int) -> Reader:
        """A reader of the same array whose sample 0 is ``offset`` (one recording)."""
        return lambda a, b: self(offset + a, offset + b)

    def __call__(self, a: int, b: int) -> np.ndarray:
        out = np.empty((b - a, *self.array.shape[1:]), self.array.dtype)
        pos = a
        while pos < b:
            c = pos // self.step
            if self.cached[0] != c:
                self.cached = (-1, None)  # free the previous chunk before decoding the next
                self.cached = (c, self.array[c * self.step:min((c + 1) * self.step, self.n)])
            chunk = self.cached[1]
            assert chunk is not None
            end = min(b, (c + 1) * self.step)
            out[pos - a:end - a] = chunk[pos - c * self.step:end - c * self.step]
            pos = end
        return out


@dataclass
class Recordings:
    """A task's view of one group: the recording table and chunk-caching readers."""

    sfreq: float
    n_chans: int
    table: pd.DataFrame
    emg: ChunkReader
    gesture: ChunkReader

    def span(self, rec: int) -> tuple[Reader, Reader, int]:
        offset, n_times = int(self.table.offset.iloc[rec]), int(self.table.n_times.iloc[rec])
        return self.emg.at(offset), self.gesture.at(offset), n_times


def open_recordings(store: StoreLike, group: str) -> Recordings:
    """Open a harmonized group for reading slices (no Dask: tasks run inside Dask already)."""
    ds = open_group(store, group, chunks=None)
    arrays = open_arrays(store, group)
    return Recordings(float(ds.attrs["sfreq"]), int(ds.sizes["channel"]), recording_table_from(ds),
                      ChunkReader(arrays["emg"]), ChunkReader(arrays["gesture"]))


def _filtfilt(sos: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Zero-phase filter along time, float32 out; short pieces get a shorter edge pad."""
    padlen = 3 * (2 * len(sos) + 1 - min((sos[:, 2] == 0).sum(), (sos[:, 5] == 0).sum()))
    return signal.sosfiltfilt(sos, x, axis=0, padlen=min(padlen, x.shape[0] - 1)).astype(np.float32)


def filtered_blocks(read: Reader, n_times: int, sp: StateParams) -> Iterator[tuple[int, int, np.ndarray]]:
    """(first frame, frame count, band-passed samples of those frames) per time block.

    Block b holds frames [b*B, b*B + count) and the samples they cover; the filter runs over the
    block plus ``margin`` samples of real signal on each side (or up to the recording's edge),
    so only one block of one recording is ever in memory.
    """
    sos = sp.sos()
    n_frames = sp.n_frames(n_times)
    for f0 in range(0, n_frames, sp.block_frames):
        count = min(sp.block_frames, n_frames - f0)
        lo, hi = f0 * sp.stride, (f0 + count - 1) * sp.stride + sp.window
        rlo, rhi = max(0, lo - sp.margin), min(n_times, hi + sp.margin)
        y = _filtfilt(sos, read(rlo, rhi).astype(np.float32, copy=False))
        yield f0, count, y[lo - rlo:hi - rlo]


def block_thresholds(sp: StateParams, bp_rms: float) -> dict[str, float]:
    """Absolute ZC/SSC/WAMP thresholds from the relative ones and the training band-passed RMS."""
    return {"zc_threshold": sp.zc_rel * bp_rms, "ssc_threshold": sp.ssc_rel * bp_rms**2,
            "wamp_threshold": sp.wamp_rel * bp_rms}


def _features(y: np.ndarray, sp: StateParams, thr: Mapping[str, float]) -> np.ndarray:
    return window_features(y, sp.sfreq, sp.window, sp.stride, psr_halfwidth_hz=sp.psr_halfwidth_hz, **thr)


def frame_labels(read_gesture: Reader, f0: int, count: int, sp: StateParams) -> np.ndarray:
    """Gesture at each frame's centre sample (int16, -1 = unlabelled)."""
    lo = f0 * sp.stride
    g = read_gesture(lo, lo + (count - 1) * sp.stride + sp.window)
    return g[np.arange(count) * sp.stride + sp.window // 2].astype(np.int16)


def recording_power(read: Reader, n_times: int, n_chans: int, sp: StateParams) -> tuple[np.ndarray, int]:
    """Per-channel sum of squares of the band-passed signal (the samples covered by frames) and
    the number of those samples; streamed in time blocks."""
    bp, n = np.zeros(n_chans), 0
    for f0, count, y in filtered_blocks(read, n_times, sp):
        keep = y if f0 + count == sp.n_frames(n_times) else y[:count * sp.stride]  # no double count
        z = keep.astype(np.float64)
        bp += np.einsum("tc,tc->c", z, z)
        n += len(keep)
    return bp, n


def recording_sample(read: Reader, read_gesture: Reader, n_times: int, rec: int, p: float, sp: StateParams,
                     thr: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Feature rows (m, 10) and their frame gesture (m,), each (frame, channel) row kept with
    probability ``p``, drawn from a generator seeded by (seed, recording, block)."""
    feats, labels = [], []
    for f0, count, y in filtered_blocks(read, n_times, sp):
        f = _features(y, sp, thr)
        n_chans = f.shape[1]
        keep = np.random.default_rng([sp.seed, rec, f0]).random(count * n_chans) < p
        feats.append(f.reshape(-1, N_FEATURES)[keep])
        labels.append(np.repeat(frame_labels(read_gesture, f0, count, sp), n_chans)[keep])
    if not feats:
        return np.zeros((0, N_FEATURES), np.float32), np.zeros(0, np.int16)
    return np.concatenate(feats), np.concatenate(labels)


def recording_states(read: Reader, read_gesture: Reader, n_times: int, n_chans: int, sp: StateParams,
                     thr: Mapping[str, float], codebook: StateCodebook) -> tuple[np.ndarray, np.ndarray]:
    """``state(frame, channel)`` int16 and the frame gesture of one recording."""
    from aemg.tokenize.states import assign_states

    n_frames = sp.n_frames(n_times)
    states = np.empty((n_frames, n_chans), np.int16)
    gesture = np.empty(n_frames, np.int16)
    for f0, count, y in filtered_blocks(read, n_times, sp):
        states[f0:f0 + count] = assign_states(codebook, _features(y, sp, thr))
        gesture[f0:f0 + count] = frame_labels(read_gesture, f0, count, sp)
    return states, gesture


# ---------------------------------------------------------------------------------------------
# Tasks: one block of recordings each, reading their own slices
# ---------------------------------------------------------------------------------------------


def block_sample(store: StoreLike, group: str, recs: list[int], tp: Mapping[str, Any], probs: Mapping[int, float],
                 thr: Mapping[str, float]) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Pass 2: (recording, feature rows, gesture per row) for each recording in the block."""
    data = open_recordings(store, group)
    sp = StateParams.from_params(tp, data.sfreq)
    out = []
    for rec in recs:
        emg, gesture, n_times = data.span(rec)
        rows, labels = recording_sample(emg, gesture, n_times, rec, probs[rec], sp, thr)
        out.append((rec, rows, labels))
    return out


# ---------------------------------------------------------------------------------------------
# The driver's part: split, thresholds, pooled sample, codebook
# ---------------------------------------------------------------------------------------------


@dataclass
class StatePlan:
    """What the driver decides between passes; ``thr`` and ``codebook`` go to every task."""

    sp: StateParams
    train: list[str]
    heldout: list[str]
    bp_rms: float
    thr: dict[str, float]
    codebook: StateCodebook | None = None


def plan_states(group: str, table: pd.DataFrame, tp: Mapping[str, Any], sfreq: float,
                bp_power: Mapping[int, tuple[np.ndarray, int]]) -> StatePlan:
    """Split subjects and turn the training recordings' band-passed power into thresholds."""
    sp = StateParams.from_params(tp, sfreq)
    train, heldout = split_subjects(table.subject, group, sp.raw)
    train_recs = np.flatnonzero(table.subject.isin(train).to_numpy())
    sumsq = sum((bp_power[int(r)][0].sum() for r in train_recs), 0.0)
    count = sum(bp_power[int(r)][1] * len(bp_power[int(r)][0]) for r in train_recs)
    if count == 0:
        raise AemgError(f"{group}: training subjects {train} have no {sp.window}-sample frame; "
                        "lower tokenize.states.window_s or add subjects")
    bp_rms = math.sqrt(sumsq / count)
    if bp_rms == 0:
        raise AemgError(f"{group}: the training subjects' band-passed signal is all zero in {list(sp.band)} Hz")
    return StatePlan(sp, train, heldout, bp_rms, block_thresholds(sp, bp_rms))


def sample_probabilities(table: pd.DataFrame, recs: Iterable[int], sp: StateParams, n_chans: int,
                         max_rows: int) -> dict[int, float]:
    """One keep-probability for all ``recs`` so that about ``max_rows`` rows are drawn."""
    recs = [int(r) for r in recs]
    total = sum(sp.n_frames(int(table.n_times.iloc[r])) * n_chans for r in recs)
    p = 1.0 if total <= max_rows else max_rows / total
    return dict.fromkeys(recs, p)


def gather_sample(map_fn: MapFn, store: StoreLike, group: str, tp: Mapping[str, Any], recs: list[int],
                  probs: Mapping[int, float], thr: Mapping[str, float], per_task: int
                  ) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Pass 2 on Dask (or any map): sampled feature rows of ``recs``, in recording order."""
    parts = [recs[i:i + per_task] for i in range(0, len(recs), per_task)]
    tp, probs, thr = dict(tp), dict(probs), dict(thr)
    chunks = map_fn(lambda part: block_sample(store, group, part, tp, probs, thr), parts)
    return sorted((item for chunk in chunks for item in chunk), key=lambda item: item[0])


def fit_codebook(plan: StatePlan, sample: list[tuple[int, np.ndarray, np.ndarray]]) -> StateCodebook:
    rows = np.concatenate([r for _, r, _ in sample]) if sample else np.zeros((0, N_FEATURES), np.float32)
    if rows.shape[0] < plan.sp.k:
        raise AemgError(f"{plan.sp.k=} states but only {rows.shape[0]} training feature rows; "
                        "lower tokenize.states.k or raise max_train_rows")
    # One thread: OpenMP spin-waits made the fit 4x slower on a busy 2-core machine, and sklearn's
    # Lloyd sums per thread, so centroids would differ in the last bits between machines.
    with threadpool_limits(1):
        return fit_state_codebook(rows, k=plan.sp.k, seed=plan.sp.seed,
                                  max_samples=max(plan.sp.max_train_rows, plan.sp.k))


# ---------------------------------------------------------------------------------------------
# The states group: table contract, dataset, schema
# ---------------------------------------------------------------------------------------------


class StateRecordingTable(pa.DataFrameModel):
    """One row per recording: its frames lie end to end along ``frame`` (contiguous ragged)."""

    frame_offset: Series[np.int64] = pa.Field(ge=0)
    n_frames: Series[np.int64] = pa.Field(ge=0)
    subject: Series[str] = pa.Field(str_length={"min_value": 1})
    split: Series[str] = pa.Field(isin=["train", "heldout"])

    @pa.dataframe_check
    def contiguous(cls, df: pd.DataFrame) -> bool:
        ends = (df["frame_offset"] + df["n_frames"]).to_numpy()
        offsets = df["frame_offset"].to_numpy()
        return bool(len(df) == 0 or (offsets[0] == 0 and np.array_equal(offsets[1:], ends[:-1])))


class CodebookTable(pa.DataFrameModel):
    """Feature scaling of the codebook, one row per feature (std > 0, finite)."""

    feature: Series[str] = pa.Field(unique=True)
    scale_mean: Series[float] = pa.Field(nullable=False)
    scale_std: Series[float] = pa.Field(gt=0)
    log_floor: Series[float] = pa.Field(ge=0)


def states_schema(k: int | None = None, n_chans: int | None = None) -> px.DatasetSchema:
    """Shape contract of ``/<dataset>/states`` (checked before publish and on read)."""
    state_checks = [px.Check.in_range(0, k - 1)] if k else None
    return px.DatasetSchema(
        data_vars={
            "state": px.DataVar(dtype=np.int16, dims=("frame", "channel"), checks=state_checks),
            "gesture": px.DataVar(dtype=np.int16, dims=("frame",), checks=[px.Check.ge(UNLABELLED)]),
            "frame_recording": px.DataVar(dtype=np.int64, dims=("frame",)),
            "frame_offset": px.DataVar(dtype=np.int64, dims=("recording",)),
            "n_frames": px.DataVar(dtype=np.int64, dims=("recording",)),
            "subject": px.DataVar(dims=("recording",)),
            "split": px.DataVar(dims=("recording",)),
            "centers": px.DataVar(dtype=np.float64, dims=("centroid", "feature")),
            "scale_mean": px.DataVar(dtype=np.float64, dims=("feature",)),
            "scale_std": px.DataVar(dtype=np.float64, dims=("feature",)),
            "log_floor": px.DataVar(dtype=np.float64, dims=("feature",)),
        },
        sizes={k_: v for k_, v in (("centroid", k), ("channel", n_chans), ("feature", N_FEATURES)) if v},
    )


def validate_states(states: xr.Dataset) -> pd.DataFrame:
    """Schema plus the recording and codebook tables; returns the recording table."""
    states_schema(int(states.attrs["k"])).validate(states)
    table = StateRecordingTable.validate(pd.DataFrame({
        "frame_offset": states["frame_offset"].values,
        "n_frames": states["n_frames"].values,
        "subject": states["subject"].values.astype(object).astype(str),
        "split": states["split"].values.astype(object).astype(str),
    }))
    CodebookTable.validate(pd.DataFrame({
        "feature": states["feature"].values.astype(object).astype(str),
        **{name: states[name].values for name in ("scale_mean", "scale_std", "log_floor")},
    }))
    if int(table.n_frames.sum()) != states.sizes["frame"]:
        raise AemgError(f"states: n_frames sums to {int(table.n_frames.sum())}, frame dimension is {states.sizes['frame']}")
    return table


def codebook_from(states: xr.Dataset) -> StateCodebook:
    """The codebook stored beside the states (``StateCodebook.from_arrays``)."""
    return StateCodebook.from_arrays({
        "centers": states["centers"].values, "scale_mean": states["scale_mean"].values,
        "scale_std": states["scale_std"].values, "log_floor": states["log_floor"].values,
        "feature_names": np.array([str(s) for s in states["feature"].values.tolist()]),
    })


def states_dataset(ds: xr.Dataset, table: pd.DataFrame, plan: StatePlan,
                   results: list[tuple[int, np.ndarray, np.ndarray]]) -> xr.Dataset:
    """Gathered per-recording states (sorted by recording) -> the ``states`` group."""
    sp, codebook = plan.sp, plan.codebook
    assert codebook is not None
    n_chans = ds.sizes["channel"]
    if [rec for rec, _, _ in results] != list(range(len(table))):
        raise AemgError(f"states: results cover recordings {[r for r, _, _ in results][:10]}..., expected all {len(table)}")
    n_frames = np.array([len(s) for _, s, _ in results], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(n_frames)[:-1]]).astype(np.int64)
    state = np.concatenate([s for _, s, _ in results]) if results else np.zeros((0, n_chans), np.int16)
    gesture = np.concatenate([g for _, _, g in results]) if results else np.zeros(0, np.int16)
    split = np.where(table.subject.isin(plan.train), "train", "heldout").astype(object)
    arrays = codebook.to_arrays()
    out = xr.Dataset(
        {
            "state": (("frame", "channel"), state.reshape(-1, n_chans).astype(np.int16, copy=False)),
            "gesture": (("frame",), gesture.astype(np.int16, copy=False)),
            "frame_recording": (("frame",), np.repeat(np.arange(len(table), dtype=np.int64), n_frames)),
            "frame_offset": (("recording",), offsets),
            "n_frames": (("recording",), n_frames),
            "subject": (("recording",), table.subject.to_numpy(object)),
            "split": (("recording",), split),
            "centers": (("centroid", "feature"), arrays["centers"]),
            "scale_mean": (("feature",), arrays["scale_mean"]),
            "scale_std": (("feature",), arrays["scale_std"]),
            "log_floor": (("feature",), arrays["log_floor"]),
        },
        coords={
            "channel": ds["channel"].values,
            "angle_deg": ("channel", ds["angle_deg"].values),
            "distance": ("channel", ds["distance"].values),
            "feature": np.array(FEATURE_NAMES, dtype=object),
            "centroid": np.arange(sp.k, dtype=np.int64),  # centroid i is state token i
        },
        attrs={
            "dataset": ds.attrs.get("dataset", ""),
            "sfreq": sp.sfreq,
            "k": sp.k,
            "window": sp.window,
            "stride": sp.stride,
            "window_s": sp.window / sp.sfreq,
            "stride_s": sp.stride / sp.sfreq,
            "band_hz": list(sp.band),
            "requested_band_hz": list(sp.requested_band),
            "filter": f"Butterworth band-pass, scipy N={sp.filter_order} (order {2 * sp.filter_order}), zero-phase",
            "seed": sp.seed,
            "train_subjects": list(plan.train),
            "heldout_subjects": list(plan.heldout),
            "train_bandpassed_rms": plan.bp_rms,
            **{f"{name}_abs": value for name, value in plan.thr.items()},
            "frame_rule": "frame i of recording r covers samples [i*stride, i*stride + window) of that recording; "
                          "its frames are state[frame_offset[r] : frame_offset[r] + n_frames[r]]",
            "state_order": "0 = rest ... k-1 = strongest contraction (centroids ordered by RMS, then MAV)",
            "states_params": json.dumps(sp.raw, sort_keys=True),
            "params_hash": params_hash(sp.raw),
        },
    )
    out["state"].attrs["description"] = "muscle-state token: nearest codebook centroid of the frame's ten features"
    out["gesture"].attrs["description"] = "gesture at the frame's centre sample (shared vocabulary, -1 = unlabelled)"
    out["centers"].attrs["description"] = "centroids in the scaled feature space (log of rms/wl/mav, then z-score)"
    validate_states(out)
    return out


def states_encoding(states: xr.Dataset, frames_per_chunk: int = 65_536) -> dict[str, dict[str, Any]]:
    """Chunk ``state`` along frames only (a chunk of all channels is ~2 MB for 16 channels)."""
    n = states.sizes["frame"]
    if n == 0:
        return {}
    rows = min(frames_per_chunk, n)
    return {"state": {"chunks": (rows, states.sizes["channel"])}, "gesture": {"chunks": (rows,)},
            "frame_recording": {"chunks": (rows,)}}
