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

REL = "S3/2.txt"


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
