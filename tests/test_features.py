"""Window features against plain per-window loops, so both engines (numba kernels, numpy path) have
a referee, and the kernels against the numpy path on edge cases (ties, silence, pure tones)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from scipy import signal

from aemg.tokenize import features
from aemg.tokenize.features import FEATURE_NAMES, bandpass, window_features

THRESHOLDS = {"zc_threshold": 0.0, "ssc_threshold": 0.0, "wamp_threshold": 0.25}
ENGINES = ("numba", "numpy")
COUNTS = [FEATURE_NAMES.index(name) for name in ("zc", "ssc", "wamp")]


def burg(x: np.ndarray, order: int) -> np.ndarray:
    """Burg's recursion, A(z) = 1 + a1 z^-1 + ...; returns [1, a1, ..., a_order]."""
    f, b = x.astype(np.float64), x.astype(np.float64)
    a = np.array([1.0])
    for _ in range(order):
        ff, bb = f[1:], b[:-1]
        den = ff @ ff + bb @ bb
        k = -2.0 * (ff @ bb) / den if den > 0 else 0.0
        a = np.concatenate([a, [0.0]])
        a = a + k * a[::-1]
        f, b = ff + k * bb, bb + k * ff
    return a


def reference(w: np.ndarray, sfreq: float, zc_threshold: float, ssc_threshold: float,
              wamp_threshold: float, psr_halfwidth_hz: float = 20.0) -> list[float]:
    """The ten features of one window, one definition at a time."""
    w = w.astype(np.float64)
    d = np.diff(w)
    rms = np.sqrt(np.mean(w**2))
    zc = np.sum((w[:-1] * w[1:] < 0) & (np.abs(d) > zc_threshold))
    ssc = np.sum((w[1:-1] - w[:-2]) * (w[1:-1] - w[2:]) > ssc_threshold)
    wl = np.sum(np.abs(d))
    mav = np.mean(np.abs(w))
    wamp = np.sum(np.abs(d) > wamp_threshold)
    ar1 = burg(w, 1)[1]
    f, p = signal.periodogram(w, fs=sfreq, detrend="constant", window="boxcar")
    p[0] = 0.0  # detrending leaves rounding noise in the DC bin
    total = p.sum()
    if total == 0:
        return [rms, zc, ssc, wl, mav, wamp, ar1, 0.0, 0.0, 0.0]
    mnf = np.sum(f * p) / total
    df = f[1] - f[0]
    acc = 0.0
    for k in range(len(p)):  # bin k spreads its power over [f_k - df/2, f_k + df/2]
        if acc + p[k] >= total / 2:
            mdf = f[k] - df / 2 + df * (total / 2 - acc) / p[k]
            break
        acc += p[k]
    peak = int(np.argmax(p))
    psr = p[np.abs(f - f[peak]) <= psr_halfwidth_hz + 1e-9].sum() / total
    return [rms, zc, ssc, wl, mav, wamp, ar1, mnf, mdf, psr]


def reference_all(x: np.ndarray, sfreq: float, window: int, stride: int, **thr: float) -> np.ndarray:
    n_frames = 1 + (x.shape[0] - window) // stride
    return np.array([[reference(x[i * stride:i * stride + window, c], sfreq, **thr)
                      for c in range(x.shape[1])] for i in range(n_frames)])


def quantised(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    """Multiples of 1/8: differences and products are exact in float32, and ties, zeros and
    flat runs occur, so strict-vs-inclusive threshold bugs show up as wrong counts."""
    return (np.round(rng.standard_normal((n, c)) * 4) / 8).astype(np.float32)


CONFIGS = [  # sfreq, window, stride: overlapping, gcd 1 with odd window, no overlap, small block
    (1000.0, 50, 25),
    (1259.0, 63, 31),
    (2000.0, 100, 100),
    (1000.0, 64, 16),
]


@pytest.mark.parametrize(("sfreq", "window", "stride"), CONFIGS)
def test_counts_match_reference_exactly(sfreq: float, window: int, stride: int) -> None:
    rng = np.random.default_rng(1)
    x = quantised(rng, 1000, 3)
    on_grid = {"zc_threshold": 0.25, "ssc_threshold": 1 / 32, "wamp_threshold": 0.375}  # ties
    for thr in (THRESHOLDS, on_grid):
        want = reference_all(x, sfreq, window, stride, **thr)
        for engine in ENGINES:
            got = window_features(x, sfreq, window, stride, **thr, engine=engine)
            for name in ("zc", "ssc", "wamp"):
                i = FEATURE_NAMES.index(name)
                np.testing.assert_array_equal(got[..., i], want[..., i], err_msg=f"{engine} {name}")


@pytest.mark.parametrize(("sfreq", "window", "stride"), CONFIGS)
@pytest.mark.parametrize("kind", ["gaussian", "quantised"])
def test_continuous_features_match_reference(sfreq: float, window: int, stride: int,
                                             kind: str) -> None:
    rng = np.random.default_rng(2)
    if kind == "gaussian":  # coloured noise with an offset, so detrending and AR matter
        x = signal.lfilter([1.0], [1.0, -0.6], rng.standard_normal((1000, 3)), axis=0) + 0.3
        x = x.astype(np.float32)
    else:
        x = quantised(rng, 1000, 3)
    want = reference_all(x, sfreq, window, stride, **THRESHOLDS)
    for engine in ENGINES:
        got = window_features(x, sfreq, window, stride, **THRESHOLDS, engine=engine)
        assert got.shape == want.shape == (1 + (1000 - window) // stride, 3, len(FEATURE_NAMES))
        assert got.dtype == np.float32
        for name in ("rms", "wl", "mav", "ar1", "mnf", "mdf", "psr"):
            i = FEATURE_NAMES.index(name)
            np.testing.assert_allclose(got[..., i], want[..., i], rtol=2e-4, atol=1e-4, err_msg=f"{engine} {name}")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("n_chans", [1, 4])
@pytest.mark.parametrize(("window", "stride"), [(50, 20), (100, 50), (63, 31)])
def test_chunking_is_bit_identical(n_chans: int, window: int, stride: int, engine: str) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2003, n_chans)).astype(np.float32)
    full = window_features(x, 1000.0, window, stride, **THRESHOLDS, chunk_frames=10_000, engine=engine)
    for chunk in (1, 2, 3, 7, 33, 64):
        got = window_features(x, 1000.0, window, stride, **THRESHOLDS, chunk_frames=chunk, engine=engine)
        np.testing.assert_array_equal(got, full, err_msg=f"{chunk=}")


def test_frame_count_and_short_input() -> None:
    x = np.zeros((99, 2), np.float32)
    assert window_features(x, 1000.0, 100, 50, **THRESHOLDS).shape == (0, 2, 10)
    x = np.ones((100 + 3 * 50 + 49, 2), np.float32)
    got = window_features(x, 1000.0, 100, 50, **THRESHOLDS)
    assert got.shape == (4, 2, 10)
    # a constant window has no spectrum and no zero crossings, and nothing divides by zero
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got[..., FEATURE_NAMES.index("mnf")], 0.0)


@pytest.mark.parametrize("engine", ENGINES)
def test_float64_input_matches_float32(engine: str) -> None:
    x = np.random.default_rng(4).standard_normal((500, 2)).astype(np.float32)
    np.testing.assert_array_equal(window_features(x.astype(np.float64), 1e3, 50, 25, **THRESHOLDS, engine=engine),
                                  window_features(x, 1e3, 50, 25, **THRESHOLDS, engine=engine))


def edge_case_signal(sfreq: float, n: int) -> np.ndarray:
    """Channels: coloured noise with an offset, quantised noise (ties, zeros, flat runs), silence
    with one burst, a tone on a bin for 50 ms windows and a tone between bins."""
    rng = np.random.default_rng(7)
    t = np.arange(n) / sfreq
    noise = signal.lfilter([1.0], [1.0, -0.6], rng.standard_normal(n)) + 0.3
    silence = np.zeros(n)
    silence[n // 2:n // 2 + 40] = rng.standard_normal(40)
    tones = [np.sin(2 * np.pi * f * t) for f in (200.0, 130.0)]
    return np.stack([noise, quantised(rng, n, 1)[:, 0], silence, *tones], axis=1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("sfreq", "window", "stride"), CONFIGS)
def test_kernels_match_numpy_path(sfreq: float, window: int, stride: int, dtype: type) -> None:
    """The engines differ only in float summation order: counts equal, the rest to ~1e-5 of each
    feature's scale (largest magnitude), on windows with ties, silence and pure tones."""
    x = edge_case_signal(sfreq, 1500).astype(dtype)
    on_grid = {"zc_threshold": 0.25, "ssc_threshold": 1 / 32, "wamp_threshold": 0.375}
    for thr in (THRESHOLDS, on_grid):
        got = window_features(x, sfreq, window, stride, **thr, engine="numba")
        want = window_features(x, sfreq, window, stride, **thr, engine="numpy")
        np.testing.assert_array_equal(got[..., COUNTS], want[..., COUNTS])
        scale = np.abs(want).max(axis=(0, 1))
        bad = np.abs(got - want) > 1e-5 * scale
        assert not bad.any(), [FEATURE_NAMES[i] for i in np.unique(np.nonzero(bad)[2])]
        assert not x[:window, 2].any() and not got[0, 2].any()  # a silent window: all ten are 0


def test_kernels_are_cached_only_for_the_package() -> None:
    """numba keys its on-disk cache by file: a copy of features.py loaded by path under another
    name (as the LibEMG benchmark does) must not write entries the package then fails to load."""
    from numba.core.caching import NullCache

    spec = importlib.util.spec_from_file_location("features_by_path", features.__file__)
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    assert all(isinstance(k._cache, NullCache) for k in copy._kernels())
    assert not any(isinstance(k._cache, NullCache) for k in features._kernels())


def test_engine_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(8).standard_normal((300, 2)).astype(np.float32)
    numpy_path = window_features(x, 1e3, 50, 25, **THRESHOLDS, engine="numpy")
    assert not np.array_equal(window_features(x, 1e3, 50, 25, **THRESHOLDS), numpy_path)  # auto: the kernels
    with pytest.raises(ValueError, match="engine"):
        window_features(x, 1e3, 50, 25, **THRESHOLDS, engine="cuda")
    monkeypatch.setattr(features, "_kernels", lambda: None)  # as without numba
    np.testing.assert_array_equal(window_features(x, 1e3, 50, 25, **THRESHOLDS), numpy_path)
    with pytest.raises(ModuleNotFoundError, match="pip install"):
        window_features(x, 1e3, 50, 25, **THRESHOLDS, engine="numba")


def test_known_signals() -> None:
    sfreq, window = 1000.0, 50  # 20 Hz bins
    t = np.arange(2000) / sfreq
    tone = np.sin(2 * np.pi * 200.0 * t).astype(np.float32)[:, None]
    got = window_features(tone, sfreq, window, 25, **THRESHOLDS)
    np.testing.assert_allclose(got[..., FEATURE_NAMES.index("mnf")], 200.0, atol=1e-2)
    np.testing.assert_allclose(got[..., FEATURE_NAMES.index("mdf")], 200.0, atol=1e-2)
    np.testing.assert_allclose(got[..., FEATURE_NAMES.index("psr")], 1.0, atol=1e-5)
    np.testing.assert_allclose(got[..., FEATURE_NAMES.index("rms")], np.sqrt(0.5), rtol=1e-4)

    ar = signal.lfilter([1.0], [1.0, -0.9], np.random.default_rng(5).standard_normal(20_000))
    got = window_features(ar.astype(np.float32)[:, None], sfreq, 2000, 2000, **THRESHOLDS)
    np.testing.assert_allclose(got[..., FEATURE_NAMES.index("ar1")], -0.9, atol=0.05)


def test_threshold_validation() -> None:
    x = np.zeros((100, 1), np.float32)
    with pytest.raises(ValueError, match="wamp_threshold"):
        window_features(x, 1e3, 50, 25, wamp_threshold=-1.0)
    with pytest.raises(ValueError, match="window"):
        window_features(x, 1e3, 1, 25, wamp_threshold=0.1)


def test_bandpass_clips_high_edge_to_nyquist() -> None:
    sfreq = 200.0
    x = np.random.default_rng(6).standard_normal((4000, 2)).astype(np.float32)
    got = bandpass(x, sfreq, 20.0, 450.0)
    sos = signal.butter(4, [20.0, 0.95 * sfreq / 2], btype="bandpass", fs=sfreq, output="sos")
    np.testing.assert_allclose(got, signal.sosfiltfilt(sos, x, axis=0), rtol=1e-5, atol=1e-5)
    assert got.dtype == np.float32 and got.shape == x.shape


def test_bandpass_passes_band_and_rejects_outside() -> None:
    sfreq = 2000.0
    t = np.arange(8000) / sfreq
    inside, below = np.sin(2 * np.pi * 100 * t), np.sin(2 * np.pi * 3 * t)
    got = bandpass(np.stack([inside, below], axis=1), sfreq)
    mid = slice(1000, -1000)
    np.testing.assert_allclose(got[mid, 0], inside[mid], atol=1e-3)  # zero phase, unit gain
    assert np.abs(got[mid, 1]).max() < 1e-3


def test_bandpass_empty_band_names_values() -> None:
    x = np.zeros((1000, 1))
    with pytest.raises(ValueError, match=r"sfreq=40\.0.*low=20\.0"):
        bandpass(x, 40.0)
    with pytest.raises(ValueError, match="low=500"):
        bandpass(x, 2000.0, low=500, high=400)
