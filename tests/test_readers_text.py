"""Headerless delimited text (Toro-Ossaba layout; no real file here: fixtures built in tests)."""

from __future__ import annotations

import numpy as np
import pytest

from aemg.datasets.registry import get_spec
from aemg.errors import DatasetError
from aemg.harmonize.readers import READERS
from aemg.harmonize.recording import map_gestures
from aemg.vocabulary import GESTURES

from fixtures.builders import toro_txt

REL = "subject 3/2.txt"  # the official folder name, with its space


def _read(spec, root, relpath):
    return READERS[spec.format](root / relpath, spec, spec.match(relpath), relpath)


def test_toro_gesture_file_reads_four_columns_without_header(tmp_path):
    spec = get_spec("toro-ossaba")
    data = toro_txt(tmp_path / REL, n_times=500)
    raw = _read(spec, tmp_path, REL)
    assert raw.emg.shape == (500, 4) and raw.sfreq == spec.sfreq
    np.testing.assert_allclose(raw.emg, data)  # first row is data, not a header
    assert set(np.unique(map_gestures(spec, raw.labels, REL))) == {GESTURES["pinch_2finger"]}


def test_toro_wrong_column_count_fails(tmp_path):
    spec = get_spec("toro-ossaba")
    path = tmp_path / REL
    path.parent.mkdir(parents=True)
    np.savetxt(path, np.zeros((10, 5)), delimiter="\t")
    with pytest.raises(DatasetError, match="wrong columns"):
        _read(spec, tmp_path, REL)


def test_toro_spec_follows_the_evidence():
    """Fixture-free: the spec reads the official `subject <n>/<gesture>.txt` folders at 1024 Hz (see its quirks)."""
    spec = get_spec("toro-ossaba")
    assert spec.sfreq == 1024
    assert spec.match("subject 8/4.txt") == {"subject": "8", "gesture": "4"}
    assert spec.data_files()[:2] == ["subject 1/0.txt", "subject 1/1.txt"] and len(spec.data_files()) == 40
    assert "data/raw/toro-ossaba/subject 1/0.txt" in spec.manual_instructions and "no renaming" in spec.manual_instructions
    assert any("1024 Hz" in q for q in spec.quirks)
