"""The ten per-window sEMG features behind muscle-state tokens.

The muscle-state tokens paper ("From Continuous sEMG Signals to Discrete Muscle State Tokens",
Sec. 3.2) clusters one ten-dimensional vector per channel and 50 ms window: RMS, ZC, SSC, WL,
MAV, WAMP, AR coefficients, MNF, MDF and PSR. Ten values per channel leave room for exactly one
AR coefficient, so the AR part is a first-order model; the paper names no estimator, we pin
Burg's (librosa's ``lpc`` and therefore LibEMG's ``AR`` feature use it too).

Definitions for one window ``x[0..W-1]`` (counts are raw counts per window, not rates):

- ``rms``  sqrt(mean(x**2));  ``mav`` mean(|x|);  ``wl`` sum |x[n] - x[n-1]|.
- ``zc``   #{n: x[n-1]*x[n] < 0 and |x[n] - x[n-1]| > zc_threshold}.
- ``ssc``  #{n: (x[n] - x[n-1]) * (x[n] - x[n+1]) > ssc_threshold}  (threshold in squared units).
- ``wamp`` #{n: |x[n] - x[n-1]| > wamp_threshold}  (absolute, in the signal's units).
- ``ar1``  a1 of A(z) = 1 + a1 z^-1 (librosa/LibEMG sign), Burg:
  a1 = -2 sum x[n]x[n-1] / sum (x[n]**2 + x[n-1]**2), n = 1..W-1; 0 for an all-zero window.
- ``mnf``, ``mdf`` mean and median frequency (Hz) of the one-sided periodogram with the window
  mean removed, i.e. ``scipy.signal.periodogram(x, fs, detrend="constant")``. For the median,
  bin k's power is spread evenly over [f_k - df/2, f_k + df/2] and the cumulative power is
  interpolated to one half, so MDF is not quantised to the bin spacing df = fs/W (20 Hz for
  50 ms windows) and a pure tone at f_k has MDF = f_k.
- ``psr`` power spectrum ratio (Oskoei & Hu 2008, IEEE TBME 55(8):1956; as defined in
  Phinyomark et al. 2012, Expert Syst. Appl. 39(8):7420): power within ``psr_halfwidth_hz`` of
  the periodogram's peak frequency divided by total power.

All thresholds are strict (``>``) and explicit. LibEMG differs in ways that silently change
the features: its SSC counts ties (``>=``, so flat stretches count at threshold 0), its ZC has
no threshold, its WAMP default (2e-3) is absolute, meaningful only for signals in volts, and its
MNF/MDF assume ``fs=1000`` unless told otherwise. WAMP therefore has no default here.

Two engines compute the same definitions. ``engine="auto"`` (the default) takes the numba
kernels when numba imports, else the numpy path; ``"numba"`` and ``"numpy"`` force one. Why the
kernels: speed. The numpy path makes a dozen whole-chunk array passes; the kernels visit each
sample once and each spectrum bin a few times in compiled loops, beside the one rFFT per window
both share (``benchmarks/tokenize.py`` times both against that rFFT alone). The numpy path stays
as the reference the kernels are tested against. Where they differ: float summation order only
(the kernels sum squares and lag products over the samples, the numpy path gets them from the
spectrum; power is |X|^2 from re^2 + im^2 in the kernels, from hypot there), so continuous
features agree to ~1e-6 of their scale and counts exactly (both test thresholds on the same
float32 values).
Each engine on its own gives bit-identical results whatever ``chunk_frames``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import as_strided
from scipy import fft as sp_fft
from scipy import signal

FEATURE_NAMES: tuple[str, ...] = ("rms", "zc", "ssc", "wl", "mav", "wamp", "ar1", "mnf", "mdf", "psr")
N_FEATURES = len(FEATURE_NAMES)
ENGINES = ("auto", "numba", "numpy")
_TILE = 512  # block sums per tile in the time kernel: its nine sums, 18 kB, stay in L1


def bandpass(
    x: np.ndarray, sfreq: float, low: float = 20.0, high: float = 450.0, order: int = 4
) -> np.ndarray:
    """Zero-phase Butterworth band-pass along axis 0 (time), as in the paper's preprocessing.

    ``order`` is scipy's ``N``: ``N=4`` designs a band-pass of order 8 (4 per edge), applied
    forward and backward, so the magnitude response is squared and there is no phase lag (a
    token must not shift in time relative to the gesture label). ``high`` is clipped to 0.95 x
    Nyquist because a recording at 200 Hz or 1 kHz cannot hold a 450 Hz edge; a band left empty
    by the clipping is an error, not a silent no-op. Float input keeps its dtype.
    """
    if sfreq <= 0 or order < 1:
        raise ValueError(f"bandpass needs sfreq > 0 and order >= 1, got {sfreq=}, {order=}")
    nyquist_edge = 0.95 * sfreq / 2
    high_eff = min(high, nyquist_edge)
    if not 0 < low < high_eff:
        raise ValueError(
            f"empty pass band: {sfreq=}, {low=}, {high=} (high clipped to 0.95*Nyquist = "
            f"{nyquist_edge:g} Hz); need 0 < low < high"
        )
    sos = signal.butter(order, [low, high_eff], btype="bandpass", fs=sfreq, output="sos")
    y = signal.sosfiltfilt(sos, x, axis=0)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    return y.astype(dtype, copy=False)


class _Workspace:
    """Buffers and constants reused by every chunk, so memory does not grow with the recording.

    Window sums of per-sample quantities are built from sums over blocks of
    ``gcd(window, stride)`` samples; blocks sit on a grid fixed by the recording, not by the
    chunk, so every chunking gives bit-identical features.
    """

    def __init__(self, max_frames: int, n_chans: int, sfreq: float, window: int, stride: int,
                 psr_halfwidth_hz: float) -> None:
        self.window, self.stride, self.n_chans = window, stride, n_chans
        self.block = math.gcd(window, stride)
        self.blocks_per_stride = stride // self.block
        self.blocks_per_window = window // self.block
        max_len = (max_frames - 1) * stride + window
        self.ones_block = np.ones(self.block, np.float32)
        self.diff = np.empty((max_len + 1, n_chans), np.float32)
        self.absdiff = np.empty((max_len, n_chans), np.float32)
        self.prod = np.empty((max_len, n_chans), np.float32)
        self.plane = np.empty((max_len, n_chans), np.float32)
        self.plane2 = np.empty((max_len, n_chans), np.float32)
        self.blocks = np.empty((max_len // self.block, n_chans), np.float32)
        # Feature-major, so each feature is written contiguously; one transposing copy per chunk
        # produces the (frames, chans, features) output.
        self.feat = np.empty((N_FEATURES, max_frames, n_chans), np.float32)

        n_bins = window // 2 + 1
        rows = max_frames * n_chans
        self.n_bins = n_bins
        self.bin_hz = sfreq / window
        self.psr_half_bins = _psr_half_bins(sfreq, window, psr_halfwidth_hz)
        # Power spectra are kept bin-major, (n_bins, frames*chans), so every per-window
        # reduction over bins runs vectorised across windows instead of row by short row.
        # Flat buffers: a chunk's prefix of them is contiguous, whatever its frame count.
        self.power = np.empty(n_bins * rows, np.float32)
        self.cum = np.empty((n_bins + 1) * rows, np.float32)
        self.mask = np.empty(n_bins * rows, np.bool_)
        count_dtype = np.min_scalar_type(n_bins)  # 1-byte counts for usual windows
        self.ranked = np.empty(n_bins * rows, count_dtype)
        self.dc = np.empty(rows, np.float32)
        # one matrix product weighs every spectrum by bin frequency (MNF) and by cos(2 pi k / W),
        # whose sum is the lag-1 circular autocorrelation (Wiener-Khinchin) that AR1 needs
        k = np.arange(n_bins)
        self.bin_weights = np.stack([k * self.bin_hz, np.cos(2 * np.pi * k / window)]).astype(np.float32)
        self.bin_sums = np.empty(2 * rows, np.float32)
        self.rank = np.arange(n_bins, 0, -1, dtype=count_dtype)[:, None]  # n_bins - bin
        self.cols = np.arange(rows)

    def window_sum(self, plane: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Write the sum of a per-sample quantity over each window into ``out`` (frames, chans)."""
        n_blocks = plane.shape[0] // self.block
        blocks = np.matmul(self.ones_block, plane.reshape(n_blocks, self.block, self.n_chans),
                           out=self.blocks[:n_blocks])
        step, span = self.blocks_per_stride, (out.shape[0] - 1) * self.blocks_per_stride + 1
        np.copyto(out, blocks[0:span:step])
        for j in range(1, self.blocks_per_window):
            out += blocks[j:j + span:step]
        return out

    def time_features(self, ext: np.ndarray, n_frames: int, out: np.ndarray, zc_threshold: float,
                      ssc_threshold: float, wamp_threshold: float) -> None:
        """RMS, ZC, SSC, WL, MAV, WAMP, AR1 of ``n_frames`` windows of ``ext[1:-1]`` -> out[:7].

        ``ext`` holds one extra sample on each side (the neighbours of the chunk, or edge
        copies at the ends of the recording). A quantity indexed by sample n that involves
        x[n-1] is summed over the whole window and its value at the window start is subtracted;
        SSC also drops the window end, which involves x[n+1]. ``out[0]`` and ``out[6]`` arrive
        from :meth:`spectral_features` holding the window's sum of squares and its lag-1
        circular autocorrelation: the spectrum gives both, so they cost no pass over samples.
        """
        w, s = self.window, self.stride
        n = ext.shape[0] - 2
        x, x_prev = ext[1:n + 1], ext[:n]
        starts = slice(0, (n_frames - 1) * s + 1, s)
        ends = slice(w - 1, w - 1 + (n_frames - 1) * s + 1, s)
        diff = np.subtract(ext[1:], ext[:-1], out=self.diff[:n + 1])  # diff[i] = x[i] - x[i-1]
        absdiff = np.abs(diff[:n], out=self.absdiff[:n])
        prod = np.multiply(x, x_prev, out=self.prod[:n])
        plane, plane2 = self.plane[:n], self.plane2[:n]

        rms, zc, ssc, wl, mav, wamp, ar1 = out[:7]

        sum_sq = rms
        den = 2 * sum_sq - np.square(x[starts]) - np.square(x[ends])  # sum x[n]^2 + x[n-1]^2
        num = ar1
        num -= x[starts] * x[ends]  # circular lag 1 -> sum over n = 1..W-1 of x[n] x[n-1]
        np.divide(num, den, out=ar1, where=den > 0)
        np.copyto(ar1, 0.0, where=den <= 0)  # an all-zero window
        ar1 *= -2.0
        sum_sq *= 1.0 / w
        np.sqrt(sum_sq, out=rms)

        np.less(prod, 0, out=plane)
        if zc_threshold > 0:  # at 0 the sign change alone implies |x[n] - x[n-1]| > 0
            plane *= np.greater(absdiff, zc_threshold, out=plane2)
        self.window_sum(plane, zc)
        zc -= plane[starts]

        np.multiply(diff[:n], diff[1:], out=prod)  # (x[n]-x[n-1]) * (x[n+1]-x[n])
        np.less(prod, -ssc_threshold, out=plane)
        self.window_sum(plane, ssc)
        ssc -= plane[starts]
        ssc -= plane[ends]

        self.window_sum(absdiff, wl)
        wl -= absdiff[starts]
        self.window_sum(np.abs(x, out=plane), mav)
        mav *= 1.0 / w

        np.greater(absdiff, wamp_threshold, out=plane)
        self.window_sum(plane, wamp)
        wamp -= plane[starts]

    def spectral_features(self, x: np.ndarray, n_frames: int, out: np.ndarray) -> None:
        """MNF, MDF, PSR from one rFFT per window of ``x`` (the chunk's samples) -> out[7:], and
        the sums :meth:`time_features` needs for RMS and AR1 -> out[0], out[6]. The spectra
        arrive bin-major from :func:`_window_spectra`.
        """
        m, rows = self.n_bins, n_frames * self.n_chans
        spec = _window_spectra(x, self.window, self.stride, n_frames).reshape(m, rows)
        shape = (n_frames, self.n_chans)
        power = self.power[:m * rows].reshape(m, rows)
        cum = self.cum[:(m + 1) * rows].reshape(m + 1, rows)
        mask, ranked = (buf[:m * rows].reshape(m, rows) for buf in (self.mask, self.ranked))
        np.abs(spec, out=power)
        np.square(power, out=power)
        dc = self.dc[:rows]
        np.copyto(dc, power[0])  # |sum x|^2: Parseval's sum of squares needs it
        power[0] = 0.0  # detrend="constant": the window mean only lives in the DC bin
        if self.window % 2 == 0:
            power[-1] *= 0.5  # the one-sided periodogram doubles every bin but DC and Nyquist
        # cum has a leading zero row: cum[j + 1] = power up to bin j, so band sums need no edge case
        cum[0] = 0.0
        for j in range(m):  # sequential adds keep the cumulative power monotone
            np.add(cum[j], power[j], out=cum[j + 1])
        total = cum[m]
        ok = total > 0
        half = total * np.float32(0.5)
        cols = self.cols[:rows]
        flat_cum, flat_power = cum.reshape(-1), power.reshape(-1)

        # MDF: k = first bin with cumulative power >= half (k >= 1: the DC bin is 0)
        k = np.add.reduce(np.less(cum[1:], half, out=mask), axis=0, dtype=self.rank.dtype)
        at = k.astype(np.intp)
        at *= rows
        at += cols  # flat index of bin k: power[k] in power, power up to bin k-1 in cum
        frac = np.divide(half - flat_cum[at], flat_power[at], out=np.zeros_like(half), where=ok)
        np.clip(frac, 0.0, 1.0, out=frac)  # only rounding in cum can push it outside
        frac += k
        frac -= np.float32(0.5)
        frac *= np.float32(self.bin_hz)
        np.copyto(out[8], frac.reshape(shape))

        # PSR: power within +-psr_half_bins of the peak (the lowest-frequency peak wins ties)
        np.equal(power, power.max(axis=0), out=mask)
        peak = m - np.multiply(mask, self.rank, out=ranked).max(axis=0).astype(np.intp)
        lo = np.maximum(peak - self.psr_half_bins, 0) * rows + cols
        hi = np.minimum(peak + self.psr_half_bins + 1, m) * rows + cols
        band = flat_cum[hi] - flat_cum[lo]

        # One (2, bins) @ (bins, chans) product per frame: a product's rounding may depend on its
        # size, and frames x chans changes with the chunk while chans does not.
        per_frame = power.reshape(m, n_frames, self.n_chans).transpose(1, 0, 2)
        weighted = np.matmul(self.bin_weights, per_frame, out=self.bin_sums[:2 * rows].reshape(n_frames, 2, -1))
        ok, total, dc = ok.reshape(shape), total.reshape(shape), dc.reshape(shape)  # per (frame, channel)
        # For time_features: sum x^2 (Parseval) and the lag-1 circular autocorrelation, both
        # (|X_0|^2 + 2 sum_k power_k w_k) / W with the Nyquist bin's power already halved.
        for row, bins in ((0, total), (6, weighted[:, 1])):
            np.multiply(bins, 2.0, out=out[row])
            out[row] += dc
            out[row] *= np.float32(1.0 / self.window)
        np.divide(weighted[:, 0], total, out=out[7], where=ok)
        np.divide(band.reshape(shape), total, out=out[9], where=ok)
        np.copyto(out[7:], 0.0, where=~ok)  # a window without spectrum has no MNF, MDF, PSR


def _psr_half_bins(sfreq: float, window: int, psr_halfwidth_hz: float) -> int:
    """Bins on each side of the peak that PSR counts (the epsilon keeps 20 Hz at 20 Hz bins one bin)."""
    return math.floor(psr_halfwidth_hz / (sfreq / window) + 1e-9)


def _window_spectra(x: np.ndarray, window: int, stride: int, n_frames: int) -> np.ndarray:
    """One rFFT per window of ``x`` (samples, chans), returned bin-major: (window // 2 + 1, frames, chans).

    ``scipy.fft`` runs several same-length transforms at once in SIMD lanes (about 6x numpy's
    ``np.fft`` here); transforming along axis 0 of the (W, frames, chans) window view returns
    the spectra already bin-major.
    """
    step, chan = x.strides
    windows = as_strided(x, (window, n_frames, x.shape[1]), (step, stride * step, chan),
                         writeable=False)  # sliding_window_view costs 50 us a call
    return sp_fft.rfft(windows, axis=0)


def _time_kernel(x: np.ndarray, window: int, stride: int, zc_threshold: np.float32, ssc_threshold: np.float32,
                 wamp_threshold: np.float32, out: np.ndarray) -> None:
    """RMS, ZC, SSC, WL, MAV, WAMP, AR1 of every window of ``x`` (samples, chans) -> ``out[..., :7]``.

    Compiled by numba (:func:`_kernels`); ``x`` holds exactly the frames of ``out`` (frames,
    chans, 10). Each sample is visited once, not once per window holding it: per-sample terms
    are summed over blocks of ``gcd(window, stride)`` samples and a window adds up its blocks.
    A window's first sample has no x[n-1] inside it: terms that need x[n-1] keep a block's
    first sample apart, and the window leaves its own first block's out, so every float sum is
    the same additions in the same order whatever the chunking. Counts are exact, so they just
    subtract the edge terms (SSC also at the window end, where x[n+1] lies outside). The samples
    are first regrouped so that sample j of every block lies in one contiguous row: each sum
    is then a long loop with a single output array, which LLVM vectorises (loops over a few
    channels with several outputs it leaves scalar). Differences, products and threshold tests
    are float32 as in the numpy path, so counts agree exactly; block sums are float32 too (8 SIMD
    lanes, not 4: float64 ones cost ~0.1 rFFT time for nothing the tests can see) and a window
    adds its blocks in float64.
    """
    n_frames, n_chans = out.shape[0], out.shape[1]
    n = x.shape[0]
    g = math.gcd(window, stride)
    span = n // g * n_chans
    rows = np.empty((g, span), np.float32)  # rows[j, b * n_chans + c] = x[b * g + j, c]
    for b in range(n // g):
        for j in range(g):
            for c in range(n_chans):
                rows[j, b * n_chans + c] = x[b * g + j, c]
    sq, lag, lag_first = np.zeros(span, np.float32), np.zeros(span, np.float32), np.zeros(span, np.float32)
    mav, wl, wl_first = np.zeros(span, np.float32), np.zeros(span, np.float32), np.zeros(span, np.float32)
    zc, ssc, wamp = np.zeros(span, np.int32), np.zeros(span, np.int32), np.zeros(span, np.int32)
    tile = max(_TILE // n_chans, 1) * n_chans  # whole blocks: only the first tile holds the first block
    for t0 in range(0, span, tile):  # a tile's sums stay in L1 across the g passes
        t1 = min(t0 + tile, span)
        sq_t, mav_t, lag_t, wl_t = sq[t0:t1], mav[t0:t1], lag[t0:t1], wl[t0:t1]
        for j in range(g):
            cur = rows[j, t0:t1]
            for i in range(t1 - t0):
                sq_t[i] += cur[i] * cur[i]
                mav_t[i] += abs(cur[i])
            # terms that need x[n-1] (flat index i - n_chans at j = 0): none for the chunk's first sample
            lo = max(t0, n_chans) if j == 0 else t0
            m = t1 - lo
            cur = rows[j, lo:t1]
            prev = rows[j - 1, lo:t1] if j > 0 else rows[g - 1, lo - n_chans:t1 - n_chans]
            lag_j, wl_j = (lag_first[lo:t1], wl_first[lo:t1]) if j == 0 else (lag_t, wl_t)
            zc_j, wamp_j, ssc_j = zc[lo:t1], wamp[lo:t1], ssc[lo:t1]
            for i in range(m):
                lag_j[i] += cur[i] * prev[i]
                zc_j[i] += (prev[i] * cur[i] < 0) & (abs(cur[i] - prev[i]) > zc_threshold)
            for i in range(m):
                d = abs(cur[i] - prev[i])
                wl_j[i] += d
                wamp_j[i] += d > wamp_threshold
            # SSC also needs x[n+1]: none for the chunk's last sample
            nxt = rows[j + 1, lo:t1] if j < g - 1 else rows[0, lo + n_chans:min(t1 + n_chans, span)]
            for i in range(len(nxt)):
                ssc_j[i] += (cur[i] - prev[i]) * (cur[i] - nxt[i]) > ssc_threshold
    per_window, per_stride = window // g, stride // g
    for f in range(n_frames):
        a, e = f * stride, f * stride + window - 1
        for c in range(n_chans):
            s_sq = s_lag = s_wl = s_mav = 0.0
            n_zc = n_ssc = n_wamp = 0
            for b in range(f * per_stride, f * per_stride + per_window):
                i = b * n_chans + c
                s_sq += sq[i]
                s_lag += lag[i]
                s_wl += wl[i]
                s_mav += mav[i]
                n_zc += zc[i]
                n_ssc += ssc[i]
                n_wamp += wamp[i]
            for b in range(f * per_stride + 1, f * per_stride + per_window):
                s_lag += lag_first[b * n_chans + c]
                s_wl += wl_first[b * n_chans + c]
            if a > 0:  # sample a's count terms reach x[a-1], outside the window
                u, v = x[a - 1, c], x[a, c]
                d = v - u
                n_zc -= (u * v < 0) & (abs(d) > zc_threshold)
                n_wamp -= abs(d) > wamp_threshold
                n_ssc -= d * (v - x[a + 1, c]) > ssc_threshold
            if e < n - 1:  # and sample e's SSC term reaches x[e+1]
                n_ssc -= (x[e, c] - x[e - 1, c]) * (x[e, c] - x[e + 1, c]) > ssc_threshold
            first, last = np.float64(x[a, c]), np.float64(x[e, c])
            den = 2.0 * s_sq - first * first - last * last  # sum over the window of x[n]^2 + x[n-1]^2
            o = out[f, c]
            o[0] = np.sqrt(s_sq / window)
            o[1], o[2], o[3], o[4], o[5] = n_zc, n_ssc, s_wl, s_mav / window, n_wamp
            o[6] = -2.0 * s_lag / den if den > 0 else 0.0


def _spectral_kernel(spec: np.ndarray, window: int, bin_hz: float, half_bins: int, out: np.ndarray) -> None:
    """MNF, MDF, PSR -> ``out[:, 7:]`` from ``spec`` (bins, windows), one rFFT per window.

    Compiled by numba (:func:`_kernels`). As in :func:`_time_kernel`, every loop runs over all
    windows with one output array, so that it vectorises: the peak is found with a select-free
    update for that reason. Power and its cumulative sum are float32, added in the numpy
    path's order, so MDF and PSR agree with it to float32 rounding of the power.
    """
    n_bins, n_rows = spec.shape
    power = np.empty((n_bins, n_rows), np.float32)
    cum = np.empty((n_bins, n_rows), np.float32)  # cum[k]: power of bins 1..k
    weighted, top = np.zeros(n_rows, np.float32), np.zeros(n_rows, np.float32)
    cum[0] = 0.0
    for k in range(1, n_bins):  # bin 0 is left out: detrend="constant" removes the window mean, all it holds
        # the one-sided periodogram doubles every bin but DC and Nyquist
        half = np.float32(0.5) if k == n_bins - 1 and window % 2 == 0 else np.float32(1.0)
        p, z, prev, now = power[k], spec[k], cum[k - 1], cum[k]
        for r in range(n_rows):
            p[r] = (z[r].real * z[r].real + z[r].imag * z[r].imag) * half
            now[r] = prev[r] + p[r]
        for r in range(n_rows):
            weighted[r] += np.float32(k) * p[r]
        for r in range(n_rows):
            top[r] = np.maximum(top[r], p[r])
    total = cum[n_bins - 1]
    peak, below = np.zeros(n_rows, np.int32), np.zeros(n_rows, np.int32)
    for k in range(1, n_bins):
        p, now, k32 = power[k], cum[k], np.int32(k)
        for r in range(n_rows):  # the first bin holding the maximum: the lowest-frequency peak wins ties
            peak[r] += np.int32((peak[r] == 0) & (p[r] == top[r])) * k32
        for r in range(n_rows):  # bins whose cumulative power is below half the total
            below[r] += now[r] < np.float32(0.5) * total[r]
    for r in range(n_rows):
        if not total[r] > 0:  # a window without spectrum has no MNF, MDF, PSR
            out[r, 7] = out[r, 8] = out[r, 9] = 0.0
            continue
        k = below[r] + 1  # the bin where the cumulative power reaches half
        frac = (np.float32(0.5) * total[r] - cum[k - 1, r]) / power[k, r]
        lo, hi = max(peak[r] - half_bins, 1), min(peak[r] + half_bins, n_bins - 1)
        out[r, 7] = weighted[r] * bin_hz / total[r]
        out[r, 8] = (k + min(max(frac, 0.0), 1.0) - 0.5) * bin_hz
        out[r, 9] = (cum[hi, r] - cum[lo - 1, r]) / total[r]


@functools.cache
def _kernels() -> tuple[Callable[..., None], Callable[..., None]] | None:
    """:func:`_time_kernel` and :func:`_spectral_kernel` compiled by numba, or None without numba.

    Compiled on first use, not at import: processes that never compute features do not pay for
    importing numba. ``cache=True`` keeps the machine code in ``__pycache__``, so only the
    first run after a change to this file compiles (about 5 s); ``nogil`` lets threads
    overlap chunks.
    """
    try:
        import numba
    except ModuleNotFoundError:
        return None
    # numba keys its cache by file, not by module: a copy of this file loaded under another name
    # (the LibEMG benchmark loads it by path) would write entries that the package cannot load
    jit = numba.njit(cache=__name__ == "aemg.tokenize.features", nogil=True)
    return jit(_time_kernel), jit(_spectral_kernel)


def window_features(
    x: np.ndarray,
    sfreq: float,
    window: int,
    stride: int,
    *,
    zc_threshold: float = 0.0,
    ssc_threshold: float = 0.0,
    wamp_threshold: float,
    chunk_frames: int = 256,
    psr_halfwidth_hz: float = 20.0,
    engine: str = "auto",
) -> np.ndarray:
    """Ten features per window and channel, shape ``(n_frames, n_chans, 10)``, float32.

    ``x`` is ``(n_times, n_chans)``; frame i covers samples ``[i*stride, i*stride + window)``
    and ``n_frames = 1 + (n_times - window) // stride`` (0 when ``n_times < window``). Features
    follow ``FEATURE_NAMES``; their definitions and thresholds are in the module docstring.

    Frames are processed ``chunk_frames`` at a time in preallocated buffers, so memory depends
    on ``chunk_frames x n_chans x window``, not on the recording length, and the result does
    not depend on ``chunk_frames`` (bit for bit). The default keeps a chunk's working set near
    L2 size for 16 channels x 50 ms at 2 kHz: 4096 frames there ran ~1.7x slower.
    ``wamp_threshold`` has no default because it is absolute: a value that suits volts is
    meaningless for microvolts or normalised signals. ``engine`` picks the numba kernels or the
    numpy path (see the module docstring; ``"auto"``: the kernels when numba is installed).
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must be (n_times, n_chans), got shape {x.shape}")
    if window < 2 or stride < 1 or chunk_frames < 1 or sfreq <= 0:
        raise ValueError(f"need window >= 2, stride >= 1, chunk_frames >= 1, sfreq > 0; got "
                         f"{window=}, {stride=}, {chunk_frames=}, {sfreq=}")
    if not min(zc_threshold, ssc_threshold, wamp_threshold, psr_halfwidth_hz) >= 0:
        raise ValueError(f"thresholds must be >= 0, got {zc_threshold=}, {ssc_threshold=}, "
                         f"{wamp_threshold=}, {psr_halfwidth_hz=}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    kernels = _kernels() if engine != "numpy" else None
    if engine == "numba" and kernels is None:
        raise ModuleNotFoundError("engine='numba' needs numba: pip install 'numba>=0.60' (or use engine='numpy')")
    n_times, n_chans = x.shape
    n_frames = 0 if n_times < window else 1 + (n_times - window) // stride
    out = np.empty((n_frames, n_chans, N_FEATURES), np.float32)
    if n_frames == 0 or n_chans == 0:
        return out
    if kernels is None:
        _numpy_features(x, sfreq, window, stride, zc_threshold, ssc_threshold, wamp_threshold, chunk_frames,
                        psr_halfwidth_hz, out)
        return out
    time_kernel, spectral_kernel = kernels
    thresholds = (np.float32(zc_threshold), np.float32(ssc_threshold), np.float32(wamp_threshold))
    half_bins = _psr_half_bins(sfreq, window, psr_halfwidth_hz)
    for f0 in range(0, n_frames, chunk_frames):
        count = min(chunk_frames, n_frames - f0)
        start = f0 * stride
        seg = np.ascontiguousarray(x[start:start + (count - 1) * stride + window], dtype=np.float32)
        feat = out[f0:f0 + count]
        time_kernel(seg, window, stride, *thresholds, feat)
        spectra = _window_spectra(seg, window, stride, count)
        spectral_kernel(spectra.reshape(len(spectra), -1), window, sfreq / window, half_bins,
                        feat.reshape(-1, N_FEATURES))
    return out


def _numpy_features(x: np.ndarray, sfreq: float, window: int, stride: int, zc_threshold: float,
                    ssc_threshold: float, wamp_threshold: float, chunk_frames: int, psr_halfwidth_hz: float,
                    out: np.ndarray) -> None:
    """The numpy path of :func:`window_features`: whole-chunk array operations in a :class:`_Workspace`."""
    n_times, n_chans = x.shape
    n_frames = out.shape[0]
    ws = _Workspace(min(chunk_frames, n_frames), n_chans, sfreq, window, stride, psr_halfwidth_hz)
    for f0 in range(0, n_frames, chunk_frames):
        count = min(chunk_frames, n_frames - f0)
        start, stop = f0 * stride, f0 * stride + (count - 1) * stride + window
        ext = x[max(start - 1, 0):min(stop + 1, n_times)]
        pad = (int(start == 0), int(stop == n_times))
        if any(pad):
            ext = np.pad(ext, (pad, (0, 0)), mode="edge")
        ext = np.asarray(ext, dtype=np.float32)
        feat = ws.feat[:, :count]
        ws.spectral_features(ext[1:-1], count, feat)
        ws.time_features(ext, count, feat, zc_threshold, ssc_threshold, wamp_threshold)
        np.copyto(out[f0:f0 + count], feat.transpose(1, 2, 0))
