"""Myo armband, both parts, on REAL bytes (../shared/data/myo-armband-cote-allard): 40 people, rounds as sessions."""

from __future__ import annotations

import numpy as np
import pytest

from aemg.datasets.registry import get_spec
from aemg.harmonize.recording import harmonize_file
from aemg.params import DEFAULTS


@pytest.fixture(scope="module")
def spec():
    return get_spec("myo-armband-cote-allard")


def test_forty_people_and_the_parts_never_share_an_id(spec):
    subjects = {spec.match(f)["subject"] for f in spec.data_files()}
    assert len(subjects) == spec.n_subjects == 40
    assert {"pre-Male0", "eval-Male0", "pre-Female0", "eval-Female1", "eval-Male15"} <= subjects
    assert all(s.startswith(("pre-", "eval-")) for s in subjects)


def test_every_file_of_the_copy_is_listed_with_its_sha256(spec, shared_data):
    sums = dict(
        reversed(line.split()) for line in (shared_data / spec.id / "SHA256SUMS").read_text().splitlines()
    )
    assert dict(spec.files) == sums


def test_sessions_are_the_round_folders(spec):
    sessions = {}
    for f in spec.data_files():
        fields = spec.match(f)
        sessions.setdefault(fields["subject"], set()).add(fields["session"])
    assert sessions["pre-Female0"] == {"training0"}
    assert all(sessions[s] == {"training0", "Test0", "Test1"} for s in sessions if s.startswith("eval-"))


def test_evaluation_file_harmonizes_with_part_round_and_repetition(spec, shared_data):
    rel = "EvaluationDataset/Male0/Test1/classe_16.dat"
    [rec] = harmonize_file(spec, shared_data / spec.id, rel, dict(DEFAULTS["harmonize"]))
    assert (rec.subject, rec.session, rec.repetition) == ("eval-Male0", "Test1", 16 // 7)
    native = np.fromfile(shared_data / spec.id / rel, dtype="<i2").reshape(-1, 8)
    assert rec.native_n_times == len(native)
    assert np.all(rec.gesture == rec.gesture[0])
