"""JSON reader on EMG-EPN-612-shaped user files (no real EPN file here: fixtures built from the documented layout and the notebook evidence of issue 12)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from aemg.datasets.registry import get_spec
from aemg.errors import DatasetError
from aemg.harmonize.dataset import recording_table_from
from aemg.harmonize.readers import READERS
from aemg.harmonize.recording import harmonize_file, map_gestures
from aemg.harmonize.stage import harmonize_one
from aemg.params import DEFAULTS
from aemg.store import open_group
from aemg.vocabulary import GESTURES, UNLABELLED

from fixtures.builders import epn_user_json

TRAIN = "trainingJSON/user1/user1.json"
TEST = "testingJSON/user1/user1.json"


@pytest.fixture(scope="module")
def spec():
    return get_spec("emg-epn-612")


def _read(spec, root, relpath):
    return READERS[spec.format](root / relpath, spec, spec.match(relpath), relpath)


def test_training_user_concatenates_samples_with_ground_truth(tmp_path, spec):
    data = epn_user_json(tmp_path / TRAIN, n_per_block=3, n_times=40)
    raw = _read(spec, tmp_path, TRAIN)
    assert raw.emg.shape == (6 * 40, 8) and raw.sfreq == 200.0
    first = data["trainingSamples"]["idx_1"]["emg"]
    np.testing.assert_array_equal(raw.emg[:40], np.column_stack([first[f"ch{c}"] for c in range(1, 9)]))
    shared = map_gestures(spec, raw.labels, TRAIN)
    assert np.all(shared[:40] == GESTURES["rest"])  # idx_1 noGesture: whole sample
    fist = shared[40:80]  # idx_2 fist: gesture only inside groundTruth
    assert np.all(fist[10:30] == GESTURES["hand_close"]) and np.all(fist[:10] == UNLABELLED) and np.all(fist[30:] == UNLABELLED)
    assert np.all(shared[90:110] == GESTURES["wrist_flexion"])  # idx_3 waveIn


def test_subjects_of_the_two_splits_are_distinct(spec):
    assert spec.match(TRAIN)["subject"] != spec.match(TEST)["subject"]
    assert len({spec.match(f)["subject"] for f in spec.data_files()}) == spec.n_subjects == 612


def test_withheld_test_labels_read_as_unlabelled(tmp_path, spec):
    epn_user_json(tmp_path / TEST, n_per_block=2, with_test_labels=False, n_times=30)
    raw = _read(spec, tmp_path, TEST)
    shared = map_gestures(spec, raw.labels, TEST)
    assert raw.emg.shape == (4 * 30, 8) and np.all(shared[60:] == UNLABELLED)


def test_samples_in_numeric_key_order(tmp_path, spec):
    data = epn_user_json(tmp_path / TRAIN, n_per_block=11, n_times=5)
    raw = _read(spec, tmp_path, TRAIN)
    tenth = data["trainingSamples"]["idx_10"]["emg"]["ch1"]
    np.testing.assert_array_equal(raw.emg[9 * 5 : 10 * 5, 0], tenth)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d["trainingSamples"]["idx_1"].update(gestureName="wave"), "not in reader_options.label_names"),
        (lambda d: d["trainingSamples"]["idx_2"]["emg"]["ch3"].pop(), "lengths"),
        (lambda d: d["trainingSamples"]["idx_2"]["emg"].pop("ch8"), "lacks channels"),
        (lambda d: d.pop("testingSamples"), "no sample block"),
        (lambda d: d["trainingSamples"]["idx_2"]["groundTruth"].pop(), "groundTruth has"),
    ],
)
def test_malformed_user_file_fails(tmp_path, spec, damage, message):
    data = epn_user_json(tmp_path / TRAIN, n_per_block=2, n_times=40)
    damage(data)
    (tmp_path / TRAIN).write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=message):
        _read(spec, tmp_path, TRAIN)


def test_not_json_fails(tmp_path, spec):
    (tmp_path / TRAIN).parent.mkdir(parents=True)
    (tmp_path / TRAIN).write_text('{"trainingSamples": ')
    with pytest.raises(DatasetError, match="not valid JSON"):
        _read(spec, tmp_path, TRAIN)


def test_each_repetition_is_its_own_recording(tmp_path, spec):
    """A user file holds many 5 s repetitions: each is a recording (session = block, repetition = idx),
    filtered on its own, never across the join with the next one."""
    epn_user_json(tmp_path / "raw" / TRAIN, n_per_block=3, n_times=400)
    raw = _read(spec, tmp_path / "raw", TRAIN)
    assert [(s.start, s.stop, s.session, s.repetition) for s in raw.segments] == [
        (i * 400, (i + 1) * 400, block, k) for i, (block, k) in enumerate(
            [("trainingSamples", k) for k in (1, 2, 3)] + [("testingSamples", k) for k in (1, 2, 3)])
    ]
    hp = dict(DEFAULTS["harmonize"])
    recordings = harmonize_file(spec, tmp_path / "raw", TRAIN, hp)
    assert len(recordings) == 6 and all(len(r.emg) == 400 for r in recordings)
    alone = {**spec.reader_options, "blocks": ["testingSamples"]}  # the same repetition read without neighbours
    second_block = harmonize_file(replace(spec, reader_options=alone), tmp_path / "raw", TRAIN, hp)
    np.testing.assert_array_equal(recordings[3].emg, second_block[0].emg)
    assert recordings[1].gesture[200] == GESTURES["hand_close"]  # idx_2: fist inside its groundTruth
    harmonize_one(spec, tmp_path / "raw", tmp_path / "h.zarr", hp, subjects=[spec.match(TRAIN)["subject"]])
    table = recording_table_from(open_group(tmp_path / "h.zarr", spec.id))
    assert table["session"].tolist() == ["trainingSamples"] * 3 + ["testingSamples"] * 3
    assert table["repetition"].tolist() == [1, 2, 3, 1, 2, 3] and set(table["source_file"]) == {TRAIN}
    assert table["offset"].tolist() == [0, 400, 800, 1200, 1600, 2000]


def test_real_shaped_testing_user_harmonizes_without_error(tmp_path, spec):
    """Fixture after the evidence (saved outputs of a notebook that opened the real testingJSON/user1/user1.json):
    idx_1 ... idx_150 per block, 992-1000 samples each at 200 Hz, testingSamples with neither gestureName nor
    groundTruth. Such samples are unlabelled recordings, kept; training gestures are labelled only inside groundTruth."""
    epn_user_json(tmp_path / TEST, n_per_block=150, with_test_labels=False, n_times=992)
    recs = harmonize_file(spec, tmp_path, TEST, dict(DEFAULTS["harmonize"]))
    assert len(recs) == 300 and [r.repetition for r in recs[:3]] == [1, 2, 3] and recs[-1].repetition == 150
    training, testing = recs[:150], recs[150:]
    assert {r.session for r in training} == {"trainingSamples"} and {r.session for r in testing} == {"testingSamples"}
    assert all(np.all(r.gesture == UNLABELLED) for r in testing)
    fist = training[1].gesture  # idx_2: fist, its contraction span only
    assert set(np.unique(fist).tolist()) == {UNLABELLED, GESTURES["hand_close"]}
    assert np.all(training[0].gesture == GESTURES["rest"])  # idx_1: noGesture, no groundTruth = rest
