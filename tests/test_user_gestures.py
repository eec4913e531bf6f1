"""A YAML-only dataset with gesture names of its own (fixtures: user specs copied from a built-in one)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import aemg.cli
from aemg.datasets.registry import BUILTIN_DIR, all_specs, user_vocabulary_path
from aemg.errors import DatasetError
from aemg.harmonize.recording import map_gestures
from aemg.vocabulary import GESTURES, USER_CODE_BASE, user_gestures


def _user_spec(workdir, dataset_id: str, declared: list[str], gestures: dict[int, str]):
    spec = yaml.safe_load((BUILTIN_DIR / "unibo-inail.yaml").read_text())
    spec.update(id=dataset_id, user_gestures=declared, gestures={**spec["gestures"], **gestures})
    directory = workdir / "datasets.d"
    directory.mkdir(exist_ok=True)
    (directory / f"{dataset_id}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def test_declared_names_get_stable_codes_beyond_the_shared_range(workdir):
    _user_spec(workdir, "grips-a", ["power_grip", "chuck_grip"], {7: "power_grip", 8: "chuck_grip"})
    spec = all_specs()["grips-a"]
    codes = user_gestures(user_vocabulary_path())
    assert codes == {"power_grip": USER_CODE_BASE, "chuck_grip": USER_CODE_BASE + 1}
    assert user_vocabulary_path().parent == workdir and min(codes.values()) > max(GESTURES.values())
    shared = map_gestures(spec, np.array([7, 8, 7]), "x")
    assert shared.tolist() == [USER_CODE_BASE, USER_CODE_BASE + 1, USER_CODE_BASE]

    # a second spec shares chuck_grip and adds its own; nothing is renumbered
    _user_spec(workdir, "grips-b", ["hook_grip", "chuck_grip"], {7: "hook_grip", 8: "chuck_grip"})
    all_specs()
    assert user_gestures(user_vocabulary_path()) == {**codes, "hook_grip": USER_CODE_BASE + 2}

    result = CliRunner().invoke(aemg.cli.app, ["datasets", "--gestures", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["power_grip"] == {"name": "power_grip", "code": str(USER_CODE_BASE), "vocabulary": "user",
                                  "datasets": "grips-a"}
    assert rows["chuck_grip"]["datasets"] == "grips-a grips-b" and rows["hand_close"]["vocabulary"] == "shared"


@pytest.mark.parametrize(
    ("declared", "gestures", "message"),
    [([], {7: "power_grip"}, "declared under 'user_gestures'"), (["hand_close"], {7: "hand_close"}, "already in the shared")],
)
def test_undeclared_or_shared_names_are_refused(workdir, declared, gestures, message):
    _user_spec(workdir, "grips-bad", declared, gestures)
    with pytest.raises(DatasetError, match=message):
        all_specs()
