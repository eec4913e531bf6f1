"""MATLAB readers on NinaPro DB4, CapgMyo DB-a and Ozdemir (mcs-emg) structures, v5 and v7.3.

No real file of these datasets is here: fixtures reproduce the documented variables and shapes.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from aemg.datasets.download import download
from aemg.datasets.registry import get_spec
from aemg.errors import DatasetError
from aemg.harmonize.readers import READERS
from aemg.harmonize.recording import harmonize_file, map_gestures
from aemg.params import DEFAULTS
from aemg.vocabulary import GESTURES, UNLABELLED

from fixtures.builders import capgmyo_mat, mat73, mcs_mat, ninapro_mat


def _read(spec, root, relpath):
    fields = spec.match(relpath)
    assert fields is not None, relpath
    return READERS[spec.format](root / relpath, spec, fields, relpath)


def _protocol(n_rest: int, moves: list[int], n_move: int = 50) -> np.ndarray:
    parts = [np.zeros(n_rest)]
    for m in moves:
        parts += [np.full(n_move, m), np.zeros(n_rest)]
    return np.concatenate(parts).astype(int)


# ------------------------------------------------------------------ NinaPro DB4
def test_ninapro_exercise_labels_shift_to_one_numbering(tmp_path):
    spec = get_spec("ninapro-db4")
    rel = "s3/S3_E2_A1.mat"
    emg = ninapro_mat(tmp_path / rel, subject=3, exercise=2, labels=_protocol(30, [1, 6, 7, 13]))
    raw = _read(spec, tmp_path, rel)
    assert raw.emg.shape == (len(emg), 12) and raw.sfreq == 2000.0
    np.testing.assert_allclose(raw.emg, emg)
    assert sorted(np.unique(raw.labels)) == [0, 13, 18, 19, 25]  # E2 local 1, 6, 7, 13 -> 13, 18, 19, 25
    shared = set(np.unique(map_gestures(spec, raw.labels, rel)))
    assert shared == {GESTURES[n] for n in ("rest", "thumb_up", "hand_close", "point_index", "wrist_flexion")}


def test_ninapro_finger_movements_and_grasps_have_their_own_names(tmp_path):
    spec = get_spec("ninapro-db4")
    rel = "s1/S1_E1_A1.mat"
    ninapro_mat(tmp_path / rel, subject=1, exercise=1, labels=_protocol(10, [1, 12]))
    shared = map_gestures(spec, _read(spec, tmp_path, rel).labels, rel)
    assert set(np.unique(shared)) == {GESTURES[n] for n in ("rest", "index_flexion", "thumb_extension")}
    rel = "s1/S1_E3_A1.mat"  # E3 local 1 and 23: first and last grasp
    ninapro_mat(tmp_path / rel, subject=1, exercise=3, labels=_protocol(10, [1, 23]))
    shared = map_gestures(spec, _read(spec, tmp_path, rel).labels, rel)
    assert set(np.unique(shared)) == {GESTURES[n] for n in ("rest", "large_diameter_grasp", "cut_something")}
    assert UNLABELLED not in {GESTURES[name] for code, name in spec.gestures.items()}  # every movement named


@pytest.mark.parametrize(
    ("subject", "exercise", "labels", "message"),
    [
        (1, 2, _protocol(10, [13, 29]), "already numbered across exercises"),
        (2, 2, _protocol(10, [1]), "variable 'subject'"),
        (1, 3, _protocol(10, [1]), "variable 'exercise'"),
    ],
)
def test_ninapro_inconsistent_file_fails(tmp_path, subject, exercise, labels, message):
    spec = get_spec("ninapro-db4")
    rel = "s1/S1_E2_A1.mat"
    ninapro_mat(tmp_path / rel, subject=subject, exercise=exercise, labels=labels)
    with pytest.raises(DatasetError, match=message):
        _read(spec, tmp_path, rel)


def test_ninapro_label_track_length_mismatch_fails_unless_tolerated(tmp_path):
    import scipy.io

    spec = get_spec("ninapro-db4")
    rel = "s1/S1_E1_A1.mat"
    ninapro_mat(tmp_path / rel, subject=1, exercise=1, labels=_protocol(10, [1]))
    mat = scipy.io.loadmat(tmp_path / rel)
    mat["restimulus"] = mat["restimulus"][:-3]
    scipy.io.savemat(tmp_path / rel, {k: v for k, v in mat.items() if not k.startswith("__")})
    with pytest.raises(DatasetError, match="label length"):
        _read(spec, tmp_path, rel)
    tolerant = dataclasses.replace(spec, reader_options={**spec.reader_options, "max_length_mismatch": 5})
    raw = _read(tolerant, tmp_path, rel)
    assert len(raw.emg) == len(raw.labels) == len(mat["restimulus"])


# ------------------------------------------------------------------ CapgMyo DB-a
def test_capgmyo_trial_reads_128_channels_and_name_label(tmp_path):
    spec = get_spec("capgmyo-dba")
    rel = "dba-s4/004-006-010.mat"  # the official layout: dba-s4.zip unpacked
    data = capgmyo_mat(tmp_path / rel, subject=4, gesture=6, trial=10)
    raw = _read(spec, tmp_path, rel)
    assert raw.emg.shape == (1000, 128) and raw.sfreq == 1000.0
    np.testing.assert_allclose(raw.emg, data)
    assert set(np.unique(map_gestures(spec, raw.labels, rel))) == {GESTURES["hand_close"]}
    [rec] = harmonize_file(spec, tmp_path, rel, dict(DEFAULTS["harmonize"]))
    assert rec.emg.shape == (200, 128) and rec.subject == "4" and rec.repetition == 10
    assert np.abs(rec.emg).max() < 2.5e-3  # normalized units scaled to volts


def test_capgmyo_file_contradicting_its_name_fails(tmp_path):
    spec = get_spec("capgmyo-dba")
    rel = "dba-s4/004-006-010.mat"
    capgmyo_mat(tmp_path / rel, subject=4, gesture=7, trial=10)
    with pytest.raises(DatasetError, match="variable 'gesture'"):
        _read(spec, tmp_path, rel)


def test_capgmyo_structure_as_matlab_v73(tmp_path):
    spec = get_spec("capgmyo-dba")
    rel = "dba-s1/001-001-001.mat"
    data = np.random.default_rng(0).uniform(-1, 1, (1000, 128))
    mat73(tmp_path / rel, {"data": data, "gesture": np.array([[1.0]]), "subject": np.array([[1.0]]), "trial": np.array([[1.0]])})
    raw = _read(spec, tmp_path, rel)
    np.testing.assert_allclose(raw.emg, data)  # stored transposed, read back (n_times, 128)
    assert set(np.unique(raw.labels)) == {1}


def test_capgmyo_official_layout_and_the_older_one_are_both_accepted(tmp_path):
    """Fixtures after the evidence: figshare's dba-s<N>.zip unpack to dba-s<N>/; an earlier copy has dba-preprocessed-<sss>/."""
    spec = get_spec("capgmyo-dba")
    assert spec.licence == "CC0-1.0" and "dba-s1.zip" in spec.manual_instructions
    assert len(spec.data_files()) == 1440 and {spec.match(f)["subject"] for f in spec.data_files()} == {
        str(s) for s in range(1, 19)}
    raw = tmp_path / "raw"
    official, older = "dba-s12/012-003-002.mat", "dba-preprocessed-012/012-003-002.mat"
    capgmyo_mat(raw / spec.id / "dba-s3/003-001-001.mat", subject=3, gesture=1, trial=1)
    capgmyo_mat(raw / spec.id / older, subject=12, gesture=3, trial=2)
    root = download(spec, raw, files=["dba-s3/003-001-001.mat", official], lock=tmp_path / "lock.yaml")
    assert (root / official).read_bytes() == (root / older).read_bytes() and (root / older).exists()
    [rec] = harmonize_file(spec, root, official, dict(DEFAULTS["harmonize"]))
    assert (rec.subject, rec.repetition) == ("12", 2)
    with pytest.raises(DatasetError, match=r"1 file\(s\) are missing: dba-s5/005-001-001\.mat"):
        download(spec, raw, files=["dba-s5/005-001-001.mat"], lock=tmp_path / "lock.yaml")


# ------------------------------------------------------------------ mcs-emg (Ozdemir et al.)
def test_mcs_labels_follow_the_authors_timetable(tmp_path):
    spec = get_spec("mcs-emg")
    rel = "sEMG-dataset/raw/mat/7_raw.mat"
    data = mcs_mat(tmp_path / rel, subject=7)
    raw = _read(spec, tmp_path, rel)
    assert raw.emg.shape == (1_280_000, 4) and raw.sfreq == 2000.0
    np.testing.assert_allclose(raw.emg[:5], data[:5])

    def at(seconds: float) -> int:
        return int(raw.labels[int(seconds * 2000)])

    assert at(2) == -1 and at(4.01) == 0 and at(9.99) == 0 and at(10.01) == -1  # rest cue 4-10 s, gap 10-14 s
    assert at(14.5) == 1 and at(4 + 50 + 3) == 5 and at(4 + 90 + 5.9) == 9 and at(110) == -1  # 30 s rest after cycle 1
    assert at(540 + 20 + 1) == 2 and at(639.9) == -1
    counts = dict(zip(*np.unique(raw.labels, return_counts=True), strict=True))
    assert all(counts[c] == 5 * 6 * 2000 for c in range(10))
    shared = map_gestures(spec, raw.labels, rel)
    assert shared[(57 * 2000)] == GESTURES["hand_close"] and shared[0] == UNLABELLED


@pytest.mark.parametrize(("subject_in_file", "n_times", "message"), [(8, 1_280_000, "variable 'iD'"), (7, 1_000_000, "protocol needs")])
def test_mcs_inconsistent_file_fails(tmp_path, subject_in_file, n_times, message):
    spec = get_spec("mcs-emg")
    rel = "sEMG-dataset/raw/mat/7_raw.mat"
    mcs_mat(tmp_path / rel, subject=subject_in_file, n_times=n_times)
    with pytest.raises(DatasetError, match=message):
        _read(spec, tmp_path, rel)


def test_expected_text_variable_in_v73(tmp_path):
    spec = get_spec("mcs-emg")
    short = dataclasses.replace(
        spec,
        reader_options={**spec.reader_options, "protocol_labels": {"block_starts_s": [0], "period_s": 1, "duration_s": 1, "codes": [0]}},
    )
    rel = "sEMG-dataset/raw/mat/2_raw.mat"
    as_chars = np.array([[ord(c) for c in "mV"]], dtype=np.uint16)
    mat73(tmp_path / rel, {"data": np.zeros((4000, 4)), "fs": np.array([[2000.0]]), "iD": np.array([[2.0]]), "units": as_chars})
    assert _read(short, tmp_path, rel).emg.shape == (4000, 4)
    mat73(tmp_path / rel, {"data": np.zeros((4000, 4)), "fs": np.array([[1000.0]]), "iD": np.array([[2.0]]), "units": as_chars})
    with pytest.raises(DatasetError, match="variable 'fs'"):
        _read(short, tmp_path, rel)
