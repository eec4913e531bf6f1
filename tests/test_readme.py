"""The README's promises that code can check: dataset table, commands, parameters file."""

from __future__ import annotations

import re
import warnings

import yaml

from aemg.datasets.table import render_readme
from aemg.params import DEFAULTS
from aemg.tokenize.stage import tokenize_one
from aemg.tokenize.synthetic_store import write_synthetic_store

from conftest import REPO


def test_readme_dataset_table_matches_registry():
    text = (REPO / "README.md").read_text()
    assert render_readme(text) == text, "run: python -m aemg.datasets.table --write README.md"


def test_readme_first_screen_has_the_two_commands():
    first_screen = "\n".join((REPO / "README.md").read_text().splitlines()[:25])
    assert "make demo" in first_screen and "make test" in first_screen


def test_params_yaml_equals_embedded_defaults():
    assert yaml.safe_load((REPO / "params.yaml").read_text()) == DEFAULTS


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_every_readme_python_block_runs_on_a_small_store(tmp_path, monkeypatch):
    """Every ```python block of README.md, in order and in one namespace, against a small SYNTHETIC store.

    The store has the README's dataset id and real subject ids, harmonized then tokenized by the
    pipeline's own stage code, so a documented query that breaks (a dtype, a renamed variable) fails here.
    """
    myo = "myo-armband-cote-allard"
    data = tmp_path / "data"
    write_synthetic_store(data / "harmonized.zarr", dataset=myo, subjects=["pre-Female0", "pre-Female1", "pre-Male0"])
    tp = {**DEFAULTS["tokenize"], "states": {"max_train_rows": 4000, "report_max_rows": 1500, "select_k": [2, 5]}}
    tokenize_one(data / "harmonized.zarr", data / "tokens.zarr", myo, tp)
    monkeypatch.chdir(tmp_path)
    blocks = _python_blocks((REPO / "README.md").read_text())
    assert len(blocks) >= 2
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a documented idiom that warns (e.g. groupby on a non-coordinate) fails
        for block in blocks:
            exec(compile(block, "README.md", "exec"), namespace)  # the README's own code
    fist = namespace["fist"]
    assert fist.sizes["event"] > 0 and set(fist["subject"].values.tolist()) == {"pre-Female0"}
    assert set(fist["gesture"].values.tolist()) == {1}
