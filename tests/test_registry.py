"""The registry: every built-in spec loads, is self-consistent, and `aemg datasets` lists all ten."""

from __future__ import annotations

import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

from aemg.datasets.registry import all_specs
from aemg.harmonize.readers import READERS

ALL = {
    "uci-emg-gestures", "mcs-emg", "toro-ossaba", "emg-epn-612", "ninapro-db4", "grabmyo", "capgmyo-dba",
    "myo-armband-cote-allard", "flexemg", "unibo-inail",
}
# id -> (format, channels, native sfreq, subjects, access)
NEW = {
    "mcs-emg": ("mat-v5", 4, 2000, 40, "open"),
    "toro-ossaba": ("delimited-text", 4, 1024, 8, "manual"),
    "emg-epn-612": ("json-samples", 8, 200, 612, "manual"),
    "ninapro-db4": ("mat-v5", 12, 2000, 10, "manual"),
    "grabmyo": ("wfdb", 28, 2048, 43, "open"),
    "capgmyo-dba": ("mat-v5", 128, 1000, 18, "manual"),
}


@pytest.fixture(scope="module")
def specs():
    return all_specs()


def test_all_ten_builtin_specs_load(specs):
    assert ALL <= set(specs)
    for spec in specs.values():
        assert spec.format in READERS and spec.n_chans > 0 and spec.sfreq > 0 and spec.citation and spec.doi


@pytest.mark.parametrize("dataset", sorted(NEW))
def test_new_spec_is_self_consistent(specs, dataset):
    spec = specs[dataset]
    fmt, n_chans, sfreq, n_subjects, access = NEW[dataset]
    assert (spec.format, spec.n_chans, spec.sfreq, spec.n_subjects, spec.access) == (fmt, n_chans, sfreq, n_subjects, access)
    data = spec.data_files()
    assert data, "pattern matches no file"
    subjects = {spec.match(f)["subject"] for f in data}
    assert len(subjects) == spec.n_subjects, "the file list covers every subject"
    assert all(digest is None for digest in spec.files.values()), "unknown hashes stay null (pinned on download)"
    for channel in spec.channels:
        assert channel.distance != channel.distance or 0.0 <= channel.distance <= 1.0
    assert spec.quirks, "assumptions are written down"
    if spec.access == "manual":
        assert f"data/raw/{spec.id}/" in spec.manual_instructions and "http" in spec.manual_instructions
    else:
        assert spec.base_url or spec.archive


def test_file_name_fields_yield_mapped_gestures(specs):
    for dataset in NEW:
        spec = specs[dataset]
        for relpath in spec.data_files():
            gesture = spec.match(relpath).get("gesture")
            if gesture is not None:
                assert int(gesture) in spec.gestures, (dataset, relpath)


def test_grabmyo_lists_header_and_signal_of_every_record(specs):
    spec = specs["grabmyo"]
    headers = spec.data_files()
    assert len(headers) == 3 * 43 * 17 * 7
    assert all(re.sub(r"\.hea$", ".dat", h) in spec.files for h in headers)


def test_cli_datasets_lists_all_ten(monkeypatch):
    import aemg.cli

    monkeypatch.setattr(aemg.cli, "console", Console(width=1000, force_terminal=False))
    result = CliRunner().invoke(aemg.cli.app, ["datasets"])
    assert result.exit_code == 0, result.output
    for dataset in ALL:
        assert dataset in result.output


def test_vocabulary_codes_are_unique_and_every_name_is_used(specs):
    """New names are appended with new codes; a name no spec maps to would be dead vocabulary."""
    from aemg.vocabulary import GESTURES

    assert len(set(GESTURES.values())) == len(GESTURES)
    used = {name for spec in specs.values() for name in spec.gestures.values()}
    assert set(GESTURES) - used == set()
    assert specs["capgmyo-dba"].gestures[2] == specs["ninapro-db4"].gestures[14] == "index_middle_extension"
