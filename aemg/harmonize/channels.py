"""Which channels a dataset group stores: the electrodes as recorded, or AEMG's virtual ring.

AEMG's release feeds every dataset to one model as 16 virtual channels, "by repeating or
averaging" the device's electrodes. Here that view is explicit and positional: virtual channel
``k`` sits at ``k * 360/16`` degrees around the forearm (the spec's shared frame); it is the mean
of the electrodes whose nearest slot it is, or, for a slot no electrode falls into, the mean of
the electrodes nearest to it in angle (one electrode repeated, or two equidistant neighbours
averaged). Electrodes without a position cannot be placed and are left out, by name, in the
group's attributes. The view is a fixed linear map, so it commutes with the (linear,
per-channel) resampling and filtering and is applied before them, on fewer channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aemg.datasets.spec import DatasetSpec
from aemg.errors import DatasetError

_TIE_DEG = 1e-6


@dataclass(frozen=True)
class ChannelView:
    """Stored channels of a dataset; ``weights`` (n_out, n_chans) maps electrodes onto them."""

    names: tuple[str, ...]
    angle_deg: np.ndarray
    distance: np.ndarray
    muscle: tuple[str, ...]
    weights: np.ndarray | None  # None: the electrodes as recorded
    sources: tuple[tuple[str, ...], ...]
    unplaced: tuple[str, ...] = ()

    @property
    def n_chans(self) -> int:
        return len(self.names)

    def apply(self, emg: np.ndarray) -> np.ndarray:
        """(n_times, n_electrodes) -> (n_times, n_out)."""
        return emg if self.weights is None else emg @ self.weights.T

    def quality(self, bits: np.ndarray) -> np.ndarray:
        """A virtual channel carries every flag of the electrodes it is made of."""
        if self.weights is None:
            return bits
        return np.array([np.bitwise_or.reduce(bits[w > 0]) for w in self.weights], dtype=np.uint8)


def _circular_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = np.abs(a[:, None] - b[None, :]) % 360.0
    return np.minimum(d, 360.0 - d)


def channel_view(spec: DatasetSpec, virtual_channels: int | None) -> ChannelView:
    """The electrodes of ``spec`` (``virtual_channels`` None) or their ``virtual_channels``-slot ring."""
    angle = np.array([c.angle_deg for c in spec.channels], dtype=np.float64)
    distance = np.array([c.distance for c in spec.channels], dtype=np.float64)
    if virtual_channels is None:
        return ChannelView(
            names=tuple(spec.ch_names), angle_deg=angle, distance=distance,
            muscle=tuple(c.muscle for c in spec.channels), weights=None,
            sources=tuple((n,) for n in spec.ch_names),
        )
    n_out = int(virtual_channels)
    placed = np.flatnonzero(np.isfinite(angle))
    if n_out < 1 or placed.size == 0:
        raise DatasetError(
            spec.id,
            f"cannot map {spec.n_chans} electrodes onto {n_out} virtual channels: "
            + ("no electrode has an angle_deg" if placed.size == 0 else "the count must be positive"),
            fix="give the spec's channels an angle_deg, or set harmonize.virtual_channels: null",
        )
    slots = np.arange(n_out) * (360.0 / n_out)
    dist = _circular_distance(angle[placed], slots)  # (placed, slots)
    nearest_slot = np.argmin(dist, axis=1)
    weights = np.zeros((n_out, spec.n_chans))
    for k in range(n_out):
        members = placed[nearest_slot == k]
        if members.size == 0:  # an empty slot repeats (or averages) its nearest electrode(s)
            members = placed[dist[:, k] <= dist[:, k].min() + _TIE_DEG]
        weights[k, members] = 1.0 / members.size
    sources = tuple(tuple(spec.ch_names[j] for j in np.flatnonzero(w)) for w in weights)
    muscles = [c.muscle for c in spec.channels]
    return ChannelView(
        names=tuple(f"v{k + 1:02d}" for k in range(n_out)),
        angle_deg=slots,
        distance=np.array([np.nanmean(distance[w > 0]) if np.isfinite(distance[w > 0]).any() else np.nan
                           for w in weights]),
        muscle=tuple("+".join(dict.fromkeys(m for j in np.flatnonzero(w) if (m := muscles[j]))) for w in weights),
        weights=weights,
        sources=sources,
        unplaced=tuple(spec.ch_names[j] for j in np.flatnonzero(~np.isfinite(angle))),
    )
