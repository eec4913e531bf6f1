"""WFDB reader on GrabMyo-shaped fixtures (built by wfdb.wrsamp in the real headers' signal order; the real records are tested in test_real_grabmyo.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import wfdb

from aemg.datasets.registry import get_spec
from aemg.errors import DatasetError
from aemg.harmonize.readers import READERS
from aemg.harmonize.recording import harmonize_file, map_gestures
from aemg.params import DEFAULTS
from aemg.vocabulary import GESTURES

from fixtures.builders import GRABMYO_SIGNALS, grabmyo_record

REL = "Session2/session2_participant7/session2_participant7_gesture16_trial3.hea"


def _read(spec, root: Path, relpath: str):
    fields = spec.match(relpath)
    assert fields is not None, relpath
    return READERS[spec.format](root / relpath, spec, fields, relpath)


@pytest.fixture(scope="module")
def spec():
    return get_spec("grabmyo")


def test_grabmyo_record_reads_named_channels_in_mv(tmp_path, spec):
    written = grabmyo_record(tmp_path, REL)
    raw = _read(spec, tmp_path, REL)
    keep = [GRABMYO_SIGNALS.index(name) for name in spec.ch_names]
    assert raw.emg.shape == (10240, 28) and raw.sfreq == 2048.0
    assert not {"U1", "U2", "U3", "U4"} & set(spec.ch_names)
    np.testing.assert_allclose(raw.emg, written[:, keep], atol=1e-6)
    assert set(np.unique(raw.labels)) == {16}
    assert set(np.unique(map_gestures(spec, raw.labels, REL))) == {GESTURES["hand_close"]}
    assert spec.match(REL) == {"session": "2", "subject": "7", "gesture": "16", "repetition": "3"}


def test_grabmyo_harmonized_to_volts_and_shared_labels(tmp_path, spec):
    grabmyo_record(tmp_path, REL, n_times=4096)
    [rec] = harmonize_file(spec, tmp_path, REL, dict(DEFAULTS["harmonize"]))
    assert rec.emg.shape[1] == 28 and rec.subject == "7" and rec.session == "2" and rec.repetition == 3
    assert np.all(rec.gesture == GESTURES["hand_close"])
    assert np.abs(rec.emg).max() < 1e-3  # 0.05 mV noise expressed in volts


@pytest.mark.parametrize(
    ("change", "message"),
    [({"units": ["uV"] * 32}, "header units"), ({"fs": 1000}, "fs=1000"), ({"sig_name": [f"X{i}" for i in range(32)]}, "lacks channels")],
)
def test_grabmyo_header_disagreeing_with_spec_fails(tmp_path, spec, change, message):
    path = tmp_path / REL
    path.parent.mkdir(parents=True)
    args = {"fs": 2048, "units": ["mV"] * 32, "sig_name": GRABMYO_SIGNALS} | change
    wfdb.wrsamp(path.stem, p_signal=np.zeros((100, 32)), fmt=["16"] * 32, adc_gain=[100.0] * 32, baseline=[0] * 32,
                write_dir=str(path.parent), **args)
    with pytest.raises(DatasetError, match=message):
        _read(spec, tmp_path, REL)


def test_truncated_signal_file_fails(tmp_path, spec):
    grabmyo_record(tmp_path, REL, n_times=1000)
    dat = (tmp_path / REL).with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[: dat.stat().st_size // 2])
    with pytest.raises(DatasetError, match=r"WFDB|fewer"):
        _read(spec, tmp_path, REL)


def test_labels_from_annotation_file(tmp_path, spec):
    grabmyo_record(tmp_path, REL, n_times=1000)
    record = str((tmp_path / REL).with_suffix(""))
    wfdb.wrann(Path(record).name, "atr", sample=np.array([100, 600]), symbol=['"', '"'], aux_note=["17", "16"],
               write_dir=str(tmp_path / REL).rsplit("/", 1)[0])
    annotated = dataclasses.replace(spec, reader_options={"annotation": "atr", "label_before_first_annotation": 17})
    raw = _read(annotated, tmp_path, REL)
    assert list(raw.labels[[0, 99, 100, 599, 600, 999]]) == [17, 17, 17, 17, 16, 16]
