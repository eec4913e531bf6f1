"""Movement quality by DTW on muscle-state tokens: synthetic executions with a known deviation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from aemg.evaluate.quality import dtw, load_states_file, quality_from_specs, quality_score, score_from_dtw

K = 13


def execution(n: int = 80, peak: tuple[int, ...] = (12, 6, 3), under: dict[int, int] | None = None,
              compensation: dict[int, int] | None = None) -> np.ndarray:
    """Token sequence (time, 3 muscles) of one repetition: each muscle rises from rest to its
    peak token and back. ``under``: muscle -> tokens of under-activation at the peak;
    ``compensation``: muscle -> extra tokens of activation throughout the movement."""
    t = np.linspace(0, np.pi, n)
    bell = np.sin(t) ** 2
    out = []
    for m, p in enumerate(peak):
        p = p - (under or {}).get(m, 0)
        seq = np.round(bell * p) + (compensation or {}).get(m, 0) * (bell > 0.1)
        out.append(np.clip(seq, 0, K - 1))
    return np.stack(out, axis=1).astype(int)


def test_identical_executions_score_maximum():
    ref = execution()
    q = quality_score(ref, ref.copy(), k=K, channel_names=["biceps", "deltoid", "triceps"])
    assert q["overall"] == 100.0
    assert q["per_muscle"] == {"biceps": 100.0, "deltoid": 100.0, "triceps": 100.0}
    assert q["dtw_distance"] == 0.0 and q["path_length"] == len(ref)


def test_timing_differences_are_absorbed_by_dtw():
    ref = execution(80)
    slower = execution(120)  # same movement, 1.5x slower
    q = quality_score(ref, slower, k=K)
    assert q["overall"] > 98.0


@pytest.mark.parametrize("muscle", [0, 1])
def test_score_falls_monotonically_as_underactivation_grows(muscle):
    ref = execution()
    scores = [quality_score(ref, execution(under={muscle: d}), k=K) for d in range(0, 6)]
    overall = [s["overall"] for s in scores]
    per = [s["per_muscle"][f"ch{muscle}"] for s in scores]
    assert overall[0] == 100.0
    assert all(b < a for a, b in itertools.pairwise(overall)), overall
    assert all(b < a for a, b in itertools.pairwise(per)), per
    untouched = 2
    assert all(s["per_muscle"][f"ch{untouched}"] == 100.0 for s in scores)  # only that muscle deviates


def test_compensatory_activation_is_located_in_its_muscle():
    ref = execution()
    q = quality_score(ref, execution(compensation={1: 4}), k=K, primary=[1])
    assert q["per_muscle"]["ch1"] < q["per_muscle"]["ch0"] == 100.0
    assert q["primary"] < q["overall"] < 100.0  # the primary-muscle view is the more sensitive


def test_score_formula_and_bounds():
    # one muscle, rest against maximal contraction all along: the worst possible execution
    a, b = np.zeros((10, 1)), np.full((10, 1), K - 1)
    r = dtw(a, b)
    assert r.distance == 10 * (K - 1) and r.path_length == 10
    assert quality_score(a, b, k=K)["overall"] == 0.0
    assert score_from_dtw(6.0, 4, 3.0) == pytest.approx(50.0)  # (1 - 6 / (3·4)) · 100
    with pytest.raises(ValueError, match="outside"):
        quality_score(a, b + 1, k=K)


def test_dtw_matches_a_direct_recursion():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, K, (7, 2)), rng.integers(0, K, (11, 2))
    D = np.full((8, 12), np.inf)
    D[0, 0] = 0
    for i in range(1, 8):
        for j in range(1, 12):
            D[i, j] = np.abs(a[i - 1] - b[j - 1]).sum() + min(D[i - 1, j], D[i, j - 1], D[i - 1, j - 1])
    r = dtw(a, b)
    assert r.distance == D[7, 11]
    assert tuple(r.path[0]) == (0, 0) and tuple(r.path[-1]) == (6, 10)
    steps = np.diff(r.path, axis=0)
    assert ((steps >= 0) & (steps <= 1)).all() and (steps.sum(axis=1) >= 1).all()
    assert sum(np.abs(a[i] - b[j]).sum() for i, j in r.path) == r.distance


def test_quality_from_token_files(tmp_path):
    ref, cand = execution(), execution(under={0: 3})
    np.save(tmp_path / "ref.npy", ref)
    np.savetxt(tmp_path / "cand.csv", cand, delimiter=",", fmt="%d")
    q = quality_from_specs(str(tmp_path / "ref.npy"), str(tmp_path / "cand.csv"), k=K)
    assert q == quality_score(ref, load_states_file(tmp_path / "cand.csv"), k=K) and q["overall"] < 100
