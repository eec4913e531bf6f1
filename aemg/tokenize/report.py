"""``aemg tokenize --report``: each detector on synthetic ground truth and on real labels."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from aemg.store import StoreLike, list_groups, open_group, recording_table_from
from aemg.tokenize.dataset import recording_floor_samples
from aemg.tokenize.events import DETECTORS, EventParams, detect, recording_floor_summary, subject_floors
from aemg.tokenize.quality import detection_scores, label_agreement
from aemg.tokenize.synthetic import synthetic_recording

SNRS_DB = (0.0, 6.0, 12.0, 20.0)


def _median(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.median(finite)) if finite else float("nan")


def synthetic_report(tp: dict[str, Any], seeds: range = range(4), sfreq: float = 200.0) -> list[dict[str, Any]]:
    """Per detector and SNR: precision, recall, F1 and median onset error, pooled over seeds."""
    rows = []
    base = EventParams.from_params(tp, sfreq)
    for detector in DETECTORS:
        p = replace(base, detector=detector)
        for snr in SNRS_DB:
            scores = []
            for seed in seeds:
                rec = synthetic_recording(seed, sfreq=sfreq, snr_db=snr)
                scores.append(detection_scores(rec.events, detect(rec.emg, p), sfreq))
            rows.append(
                {
                    "detector": detector,
                    "snr_db": snr,
                    **{k: float(np.nanmean([s[k] for s in scores])) for k in ("precision", "recall", "f1")},
                    "median_onset_error_s": _median([s["median_onset_error_s"] for s in scores]),
                }
            )
    return rows


def real_report(store: StoreLike, tp: dict[str, Any], datasets: list[str] | None = None) -> list[dict[str, Any]]:
    """Per dataset and detector: share of gesture segments with an event, events per rest minute."""
    rows = []
    for dataset in datasets or list_groups(store):
        ds = open_group(store, dataset)
        table = recording_table_from(ds)
        sfreq = float(ds.attrs["sfreq"])
        emg, gesture = ds["emg"].values, ds["gesture"].values
        base = EventParams.from_params(tp, sfreq)
        spans = [slice(row.offset, row.offset + row.n_times) for row in table.itertuples()]
        for detector in DETECTORS:
            p = replace(base, detector=detector)
            floors = {}
            if p.subject_floor:
                take = recording_floor_samples(table, p)
                summaries = [(subject, recording_floor_summary(lambda a, b, x=emg, o=span.start: x[o + a:o + b],
                                                               int(n), emg.shape[1], p))
                             for subject, span, n in zip(table.subject, spans, take, strict=True) if n > 0]
                floors = subject_floors(summaries, p.floor_quantile)
            totals = {"gesture_segments": 0, "gesture_segments_with_event": 0, "rest_minutes": 0.0, "rest_event_onsets": 0}
            for subject, span in zip(table.subject, spans, strict=True):
                agreement = label_agreement(gesture[span], detect(emg[span], p, floors.get(subject)), sfreq)
                for key in totals:
                    totals[key] += agreement[key]
            rows.append(
                {
                    "dataset": dataset,
                    "detector": detector,
                    "floor_scope": p.floor_scope if detector == "hysteresis" else None,
                    "gesture_segments": totals["gesture_segments"],
                    "fraction_gesture_segments_with_event": totals["gesture_segments_with_event"]
                    / max(totals["gesture_segments"], 1),
                    "rest_events_per_minute": totals["rest_event_onsets"] / totals["rest_minutes"]
                    if totals["rest_minutes"]
                    else float("nan"),
                }
            )
    return rows


def write_report(store: StoreLike, tp: dict[str, Any], out: Path, datasets: list[str] | None = None) -> dict[str, Any]:
    report = {"synthetic": synthetic_report(tp), "real": real_report(store, tp, datasets)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    return report
