"""A seeded synthetic dataset in the harmonized store's layout, for tests and benchmarks.

Each recording is :func:`aemg.tokenize.synthetic.synthetic_recording` (band-limited noise with
known contraction bursts) with a per-subject gain; samples inside a burst carry a gesture code
(1..n_gestures, one per burst), the rest is labelled rest (0). The group has every variable and
attribute the tokenizer reads from a real harmonized group. A recording listed in
``always_active`` contracts from its first to its last sample, well above rest and labelled
with one gesture, as a Myo single-gesture file does: it has no rest of its own.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TypeVar

import numpy as np
import pandas as pd
import xarray as xr

from aemg.schemas import RecordingTable, harmonized_schema
from aemg.store import StoreLike, publish_group, text_array
from aemg.tokenize.synthetic import synthetic_recording

S = TypeVar("S", bound=StoreLike)


def synthetic_group(
    *,
    dataset: str = "synthetic",
    n_subjects: int = 3,
    recordings_per_subject: int = 2,
    duration_s: float = 20.0,
    sfreq: float = 200.0,
    n_chans: int = 4,
    n_gestures: int = 3,
    seed: int = 0,
    subject_gain: dict[int, float] | None = None,
    always_active: Collection[tuple[int, int]] = (),
    subjects: Sequence[str] | None = None,
) -> xr.Dataset:
    """The group as an in-memory Dataset (recordings end to end along ``sample``).

    ``subjects`` names the subjects (default ``n_subjects`` of them, ``S00``, ``S01``...), e.g. as a real dataset's ids.
    """
    names = list(subjects) if subjects is not None else [f"S{s:02d}" for s in range(n_subjects)]
    emg, gesture, rows = [], [], []
    offset = 0
    for s in range(len(names)):
        gain = (subject_gain or {}).get(s, 1.0 + 0.25 * s)
        for r in range(recordings_per_subject):
            rec_seed = seed * 10_000 + s * 100 + r
            active = (s, r) in always_active
            rec = synthetic_recording(rec_seed, sfreq=sfreq, n_chans=n_chans, duration_s=duration_s,
                                      snr_db=0.0 if active else 15.0)
            labels = np.zeros(len(rec.emg), np.int16)
            codes = np.random.default_rng(rec_seed).integers(1, n_gestures + 1, size=len(rec.events))
            for (a, b), code in zip(rec.events, codes, strict=True):
                labels[a:b] = code
            if active:  # 0 dB bursts on a floor 6x (15.6 dB) above rest: never at rest, gesture 1
                labels[:] = 1
            emg.append(rec.emg * np.float32(gain * (6.0 if active else 1.0)))
            gesture.append(labels)
            rows.append({"offset": offset, "n_times": len(labels), "subject": names[s], "session": "1",
                         "repetition": r, "source_file": f"{names[s]}/rec{r}.bin", "source_sha256": f"{rec_seed:064x}"})
            offset += len(labels)
    table = RecordingTable.validate(pd.DataFrame(rows).astype({"offset": np.int64, "n_times": np.int64,
                                                               "repetition": np.int64}))
    ds = xr.Dataset(
        {
            "emg": (("sample", "channel"), np.concatenate(emg)),
            "gesture": (("sample",), np.concatenate(gesture)),
            "quality": (("recording", "channel"), np.zeros((len(table), n_chans), np.uint8)),
            **{c: (("recording",), text_array(table[c]) if table[c].dtype == object else table[c].to_numpy())
               for c in table.columns},
        },
        coords={
            "channel": np.array([f"ch{i}" for i in range(n_chans)], dtype=object),
            "angle_deg": ("channel", np.linspace(0, 360, n_chans, endpoint=False)),
            "distance": ("channel", np.zeros(n_chans)),
            "muscle": ("channel", np.array(["forearm"] * n_chans, dtype=object)),
        },
        attrs={"dataset": dataset, "sfreq": float(sfreq), "native_sfreq": float(sfreq), "units": "V",
               "signal": "emg", "title": "synthetic", "params_hash": "synthetic"},
    )
    harmonized_schema(n_chans).validate(ds)
    return ds


def write_synthetic_store(store: S, chunk_samples: int = 262_144, **kwargs: object) -> S:
    """Publish :func:`synthetic_group` as ``store/<dataset>``; returns ``store`` as given (a folder,
    or an ``s3://`` URL, which a Path would fold)."""
    ds = synthetic_group(**kwargs)  # type: ignore[arg-type]
    n = min(chunk_samples, ds.sizes["sample"])
    encoding = {"emg": {"chunks": (n, ds.sizes["channel"])}, "gesture": {"chunks": (n,)}}
    publish_group(store, ds.attrs["dataset"], ds, encoding=encoding)
    return store
