"""Myo armband, both parts, on REAL bytes (../shared/data/myo-armband-cote-allard): 40 people, rounds as sessions."""

from __future__ import annotations

import numpy as np
import pytest

from aemg.datasets.registry import get_spec
from aemg.harmonize.dataset import recording_table_from
from aemg.harmonize.recording import harmonize_file
from aemg.harmonize.stage import harmonize_one
from aemg.params import DEFAULTS
from aemg.store import open_group


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


def test_store_holds_part_subjects_and_round_sessions_in_plain_unicode(spec, shared_data, tmp_path):
    """What the cross-session protocol reads: per recording, subject with its part and session = round name."""
    store = tmp_path / "h.zarr"
    harmonize_one(spec, shared_data / spec.id, store, dict(DEFAULTS["harmonize"]), subjects=["eval-Female1"])
    ds = open_group(store, spec.id)
    assert ds["subject"].dtype.kind == "U" and ds["session"].dtype.kind == "U"
    table = recording_table_from(ds)
    assert set(table["subject"]) == {"eval-Female1"} and len(table) == 3 * 28
    assert table.groupby("session").size().to_dict() == {"Test0": 28, "Test1": 28, "training0": 28}
    assert sorted(set(table["repetition"])) == [0, 1, 2, 3]
    meta = ds[["session", "n_times"]].compute()
    one_round = meta.where(meta.session == "Test1", drop=True)  # plain xarray idiom on the store's strings
    assert one_round.sizes["recording"] == 28
