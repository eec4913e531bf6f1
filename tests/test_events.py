"""Contraction-event detection: index rows, detector quality floors, real-label agreement."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from aemg.params import DEFAULTS
from aemg.tokenize.events import EventParams, detect, tokens_from_events
from aemg.tokenize.quality import detection_scores, label_agreement, match_events
from aemg.tokenize.report import synthetic_report
from aemg.tokenize.synthetic import synthetic_recording

SFREQ = 200.0


def params(**tokenize):
    return EventParams.from_params({**DEFAULTS["tokenize"], **tokenize}, SFREQ)


def test_synthetic_truth_is_where_the_power_is():
    rec = synthetic_recording(3, snr_db=20)
    power = (rec.emg.astype(np.float64) ** 2).sum(axis=1)
    inside = np.zeros(len(power), bool)
    for a, b in rec.events:
        inside[a:b] = True
    assert len(rec.events) >= 10
    assert power[inside].mean() > 20 * power[~inside].mean()


@pytest.mark.parametrize("detector", ["aemg_energy", "hysteresis"])
def test_detected_events_are_half_open_rows_inside_the_signal(detector):
    rec = synthetic_recording(0, snr_db=12)
    events = detect(rec.emg, params(detector=detector))
    assert events and all(0 <= a < b <= len(rec.emg) for a, b in events)
    assert all(b1 <= a2 for (_, b1), (a2, _) in itertools.pairwise(events))


def test_detector_quality_floors():
    rows = {(r["detector"], r["snr_db"]): r for r in synthetic_report(DEFAULTS["tokenize"])}
    # AEMG's threshold (mean + 0.5 sd of the first 10 %) finds every contraction but also noise
    assert rows[("aemg_energy", 12.0)]["recall"] >= 0.95
    assert rows[("aemg_energy", 12.0)]["precision"] >= 0.25
    # hysteresis on a noise floor: near-perfect from 6 dB, onsets within a window
    for snr in (6.0, 12.0, 20.0):
        assert rows[("hysteresis", snr)]["f1"] >= 0.9
        assert rows[("hysteresis", snr)]["median_onset_error_s"] <= 0.25
    assert rows[("hysteresis", 12.0)]["f1"] > rows[("aemg_energy", 12.0)]["f1"]


def test_match_events_is_one_to_one():
    truth = [(0, 100), (200, 300)]
    # the first true event takes the detection it overlaps most; the split-off part is a false positive
    assert match_events(truth, [(10, 40), (50, 90), (210, 260)]) == [(0, 1), (1, 2)]
    scores = detection_scores(truth, [(10, 40), (50, 90), (210, 260)], SFREQ)
    assert scores["recall"] == 1.0 and scores["precision"] == pytest.approx(2 / 3)


def test_label_agreement_counts_segments_and_rest_onsets():
    gesture = np.array([0] * 100 + [3] * 100 + [0] * 100 + [5] * 100 + [-1] * 50, dtype=np.int16)
    agreement = label_agreement(gesture, [(120, 180), (20, 40), (250, 260)], SFREQ)
    assert agreement["gesture_segments"] == 2 and agreement["gesture_segments_with_event"] == 1
    assert agreement["rest_event_onsets"] == 2
    assert agreement["rest_minutes"] == pytest.approx(200 / SFREQ / 60)


def test_tokens_take_dominant_channel_from_unscaled_samples():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 4)).astype(np.float32)
    x[100:200, 2] *= 50  # channel 2 carries the contraction
    gesture = np.full(400, 4, np.int16)
    tok = tokens_from_events(x, gesture, [(100, 200)], params(), True)
    assert list(tok["dominant_channel"]) == [2, 2]
    assert tok["token"].shape == (2, 4, 50) and list(tok["order"]) == [0, 1]
    assert np.array_equal(tok["start"], [100, 150]) and np.all(tok["gesture"] == 4)


def test_sentence_order_capped_by_patch_budget():
    x = np.ones((2000, 64), np.float32)
    tok = tokens_from_events(x, np.zeros(2000, np.int16), [(0, 2000)], params(), True)
    assert tok["order"].max() == 256 // 64 - 1  # 64 channels x 4 orders = 256 patches
    assert np.bincount(tok["sentence"]).max() == 4
