"""GRABMyo reader and harmonization on REAL bytes: the five PhysioNet records in ../shared/data/grabmyo (participant 1)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import wfdb

from aemg.datasets.registry import get_spec
from aemg.harmonize.readers import READERS
from aemg.harmonize.recording import harmonize_file, map_gestures
from aemg.params import DEFAULTS
from aemg.vocabulary import GESTURES

RECORD = "Session1/session1_participant1/session1_participant1_gesture{}_trial1.hea"
# file-name gesture -> shared name, per the dataset's MotionSequence.txt (11 = extension, 12 = flexion)
REAL_ORDER = [f"F{i}" for i in range(1, 17)] + ["U1", *(f"W{i}" for i in range(1, 7)), "U2", "U3",
                                                *(f"W{i}" for i in range(7, 13)), "U4"]
REAL = {1: "lateral_grasp", 11: "wrist_extension", 12: "wrist_flexion", 15: "hand_open", 16: "hand_close"}


@pytest.fixture(scope="module")
def spec():
    return get_spec("grabmyo")


@pytest.fixture(scope="module")
def root(shared_data):
    return shared_data / "grabmyo"


def test_real_files_are_the_documented_bytes(root):
    for line in (root / "SHA256SUMS").read_text().splitlines():
        digest, rel = line.split()
        assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == digest, rel


@pytest.mark.parametrize("gesture", sorted(REAL))
def test_real_record_read_by_channel_name_in_mv(spec, root, gesture):
    rel = RECORD.format(gesture)
    fields = spec.match(rel)
    assert fields == {"session": "1", "subject": "1", "gesture": str(gesture), "repetition": "1"}
    raw = READERS[spec.format](root / rel, spec, fields, rel)
    header = wfdb.rdrecord(str((root / rel).with_suffix("")), physical=True)
    assert header.sig_name == REAL_ORDER  # the unused inputs sit BETWEEN the wrist channels: pick by name
    assert set(header.units) == {"mV"}
    keep = [header.sig_name.index(name) for name in spec.ch_names]
    assert raw.emg.shape == (10240, 28) and raw.sfreq == 2048.0
    np.testing.assert_array_equal(raw.emg, header.p_signal[:, keep])  # U1-U4 dropped, the rest by name
    assert 1e-4 < np.abs(raw.emg).std() < 5.0  # surface EMG in mV, not V nor uV
    assert set(map_gestures(spec, raw.labels, rel).tolist()) == {GESTURES[REAL[gesture]]}


def test_real_records_harmonize_to_volts_with_shared_labels(spec, root):
    hp = dict(DEFAULTS["harmonize"])
    for gesture, name in REAL.items():
        [rec] = harmonize_file(spec, root, RECORD.format(gesture), hp)
        assert (rec.subject, rec.session, rec.repetition) == ("1", "1", 1)
        assert rec.emg.shape == (round(10240 * hp["sfreq"] / 2048), 28)
        assert np.all(rec.gesture == GESTURES[name])
        assert 1e-7 < float(np.abs(rec.emg).std()) < 5e-3  # volts
    assert GESTURES["wrist_extension"] != GESTURES["wrist_flexion"]


def test_spec_settles_the_gesture_order_and_names_its_source(spec):
    assert spec.gestures[11] == "wrist_extension" and spec.gestures[12] == "wrist_flexion"
    assert spec.gestures[13] == "wrist_supination" and spec.gestures[14] == "wrist_pronation"
    assert any("MotionSequence.txt" in q for q in spec.quirks)
