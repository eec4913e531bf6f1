"""The README's promises that code can check: dataset table, commands, parameters file."""

from __future__ import annotations

import yaml

from aemg.datasets.table import render_readme
from aemg.params import DEFAULTS

from conftest import REPO


def test_readme_dataset_table_matches_registry():
    text = (REPO / "README.md").read_text()
    assert render_readme(text) == text, "run: python -m aemg.datasets.table --write README.md"


def test_readme_first_screen_has_the_two_commands():
    first_screen = "\n".join((REPO / "README.md").read_text().splitlines()[:25])
    assert "make demo" in first_screen and "make test" in first_screen


def test_params_yaml_equals_embedded_defaults():
    assert yaml.safe_load((REPO / "params.yaml").read_text()) == DEFAULTS
