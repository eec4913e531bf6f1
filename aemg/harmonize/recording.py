"""Harmonize one file: read, check, convert units, map channels, resample, filter, flag."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aemg.datasets.registry import gesture_codes
from aemg.datasets.spec import DatasetSpec
from aemg.errors import DatasetError
from aemg.harmonize import signal as sig
from aemg.harmonize.channels import ChannelView, channel_view
from aemg.harmonize.readers import READERS, RawRecording, Segment
from aemg.vocabulary import GESTURES


@dataclass
class HarmonizedRecording:
    relpath: str
    subject: str
    session: str
    repetition: int
    emg: np.ndarray  # float32 (n_times, n_chans) at the target rate
    gesture: np.ndarray  # int16 shared vocabulary codes
    quality: np.ndarray  # uint8 (n_chans,) bit mask, see signal.QUALITY_FLAGS
    native_n_times: int


def map_gestures(spec: DatasetSpec, native: np.ndarray, relpath: str) -> np.ndarray:
    """Native label codes to shared codes; a code the spec does not know is an error."""
    codes = np.unique(native)
    unknown = [int(c) for c in codes if int(c) not in spec.gestures]
    if unknown:
        raise DatasetError(
            spec.id,
            f"unknown gesture code(s) {unknown}; the spec maps {sorted(spec.gestures)}",
            file=relpath,
            fix="add the code to the spec's 'gestures' map",
        )
    vocabulary = gesture_codes() if spec.user_gestures else GESTURES
    lut = {code: vocabulary[name] for code, name in spec.gestures.items()}
    out = np.empty(native.shape, dtype=np.int16)
    for code in codes:
        out[native == code] = lut[int(code)]
    return out


def read_file(spec: DatasetSpec, path: Path, fields: dict[str, str], relpath: str) -> RawRecording:
    """Run the format's reader; whatever it raises comes back as a DatasetError naming the file."""
    try:
        raw = READERS[spec.format](path, spec, fields, relpath)
    except DatasetError:
        raise
    except Exception as exc:  # a reader bug or a malformed file the reader did not foresee
        text = str(exc).strip()
        reason = text.splitlines()[0] if text else ""
        raise DatasetError(
            spec.id, f"cannot read as {spec.format} ({type(exc).__name__}: {reason})", file=relpath
        ) from exc
    if raw.emg.ndim != 2 or raw.labels.ndim != 1:
        raise DatasetError(
            spec.id, f"reader returned emg {raw.emg.shape} and labels {raw.labels.shape}; "
            "expected (n_times, n_chans) and (n_times,)", file=relpath,
        )
    return raw


def harmonize_file(spec: DatasetSpec, root: Path, relpath: str, hp: dict[str, Any]) -> list[HarmonizedRecording]:
    """The recordings of one file (one, or one per segment the reader found), harmonized."""
    fields = spec.match(relpath)
    if fields is None:
        raise DatasetError(spec.id, "file name does not match the spec's pattern", file=relpath)
    path = root / relpath
    if not path.exists():
        raise DatasetError(spec.id, "file missing; run `aemg download` first", file=relpath)
    if path.stat().st_size == 0:
        raise DatasetError(
            spec.id, "empty file (0 bytes)", file=relpath,
            fix="download it again; if the source's copy is empty, leave its subject out (params.yaml 'subjects')",
        )
    raw = read_file(spec, path, fields, relpath)
    n_times, n_chans = raw.emg.shape
    if n_times == 0:
        raise DatasetError(spec.id, "no samples", file=relpath)
    if n_chans != spec.n_chans:
        raise DatasetError(spec.id, f"{n_chans=} but the spec lists {spec.n_chans} channels", file=relpath)
    if raw.labels.shape != (n_times,):
        raise DatasetError(
            spec.id, f"label length {raw.labels.shape[0]} does not match signal length {n_times}", file=relpath
        )
    finite = np.isfinite(raw.emg)
    if not finite.all():
        if hp["nan_policy"] == "raise":
            bad = [spec.ch_names[i] for i in np.flatnonzero(~finite.all(axis=0))]
            rows = np.flatnonzero(~finite.all(axis=1))
            raise DatasetError(
                spec.id,
                f"{int((~finite).sum())} NaN/Inf sample(s) in channels {bad}, first at sample {int(rows[0])}",
                file=relpath,
                fix="set harmonize.nan_policy: flag in params.yaml to zero-fill and flag them",
            )
        raw.emg = np.where(finite, raw.emg, 0.0)
    gesture = map_gestures(spec, raw.labels, relpath)
    view = channel_view(spec, hp["virtual_channels"])
    repetition = int(fields.get("repetition", fields.get("index", 0)) or 0) // int(
        spec.reader_options.get("gesture_from_index_modulo", 1)
    )
    segments = raw.segments or (Segment(0, n_times, fields.get("session", ""), repetition),)
    return [
        HarmonizedRecording(
            relpath=relpath,
            subject=fields["subject"],
            session=seg.session,
            repetition=seg.repetition,
            native_n_times=seg.stop - seg.start,
            **_harmonize_rows(spec, view, raw, gesture, ~finite[seg.start:seg.stop].all(axis=0), seg, hp),
        )
        for seg in segments
    ]


def _harmonize_rows(
    spec: DatasetSpec, view: ChannelView, raw: RawRecording, gesture: np.ndarray, nonfinite: np.ndarray,
    seg: Segment, hp: dict[str, Any],
) -> dict[str, np.ndarray]:
    """One recording's rows: flag, convert units, map channels, resample, filter."""
    emg = raw.emg[seg.start:seg.stop]
    quality = view.quality(sig.quality_mask(emg, spec.reader_options.get("valid_range"), nonfinite))
    emg = view.apply(emg * (spec.scale_to_volts or 1.0))
    target = float(hp["sfreq"])
    if spec.signal == "emg":
        emg = emg - emg.mean(axis=0)
    emg = sig.resample(emg, raw.sfreq, target)
    if spec.signal == "emg":
        emg = sig.condition(emg, target, tuple(hp["bandpass"]), int(hp["filter_order"]), hp["notch_hz"], float(hp["notch_q"]))
    return {
        "emg": emg.astype(np.float32),
        "gesture": sig.resample_labels(gesture[seg.start:seg.stop], raw.sfreq, target, len(emg)).astype(np.int16),
        "quality": quality,
    }
