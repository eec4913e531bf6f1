"""Muscle-state tokens in the token store: layout, training-only codebook, streaming, reports."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from aemg.errors import AemgError
from aemg.params import DEFAULTS
from aemg.store import open_group, open_tree
from aemg.tokenize.dataset import block_power, state_plan
from aemg.tokenize.features import window_features
from aemg.tokenize.stage import tokenize_one
from aemg.tokenize.state_reports import write_consistency_report, write_select_k_report
from aemg.tokenize.state_tokens import (
    StateParams,
    codebook_from,
    filtered_blocks,
    recording_sample,
    split_subjects,
    validate_states,
)
from aemg.tokenize.states import assign_states
from aemg.tokenize.synthetic_store import write_synthetic_store

STATES = {"max_train_rows": 4000, "report_max_rows": 1500, "select_k": [2, 5]}
TP = {**DEFAULTS["tokenize"], "recordings_per_task": 2, "states": STATES}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return write_synthetic_store(tmp_path_factory.mktemp("states") / "harmonized.zarr")


@pytest.fixture(scope="module")
def tokens(store: Path) -> tuple[Path, dict]:
    out = store.parent / "tokens.zarr"
    summary = tokenize_one(store, out, "synthetic", TP)
    return out, summary


def test_states_sit_beside_events_in_one_datatree(store, tokens):
    out, summary = tokens
    tree = open_tree(out)
    assert sorted(tree["synthetic"].children) == ["events", "states"]
    states = tree["synthetic/states"].to_dataset()
    harmonized = open_group(store, "synthetic")
    sp = StateParams.from_params(TP, 200.0)
    # 20-450 Hz clipped to 0.95 x Nyquist at 200 Hz; 50 ms / 25 ms = 10 / 5 samples
    assert states.attrs["band_hz"] == [20.0, 95.0] and (sp.window, sp.stride) == (10, 5)
    assert states["state"].dtype == np.int16 and states["state"].dims == ("frame", "channel")
    n_frames = 1 + (harmonized["n_times"].values - 10) // 5
    np.testing.assert_array_equal(states["n_frames"].values, n_frames)
    np.testing.assert_array_equal(states["frame_offset"].values, np.concatenate([[0], np.cumsum(n_frames)[:-1]]))
    assert states.sizes["frame"] == summary["frames"] == n_frames.sum()
    assert 0 <= states["state"].min() and states["state"].max() < 13 == states.attrs["k"]
    validate_states(states)


def test_states_are_the_stored_codebook_applied_to_each_frame(store, tokens):
    out, _ = tokens
    states = open_group(out, "synthetic/states")
    codebook = codebook_from(states)
    harmonized = open_group(store, "synthetic")
    rec = 4
    off, n = int(harmonized["offset"][rec]), int(harmonized["n_times"][rec])
    sp = StateParams.from_params(TP, 200.0)
    x = harmonized["emg"][off:off + n].values
    thr = {k: states.attrs[f"{k}_abs"] for k in ("zc_threshold", "ssc_threshold", "wamp_threshold")}
    (_, _, y), = filtered_blocks(lambda a, b: x[a:b], n, sp)  # one block: the whole recording
    feats = window_features(y, 200.0, 10, 5, psr_halfwidth_hz=20.0, **thr)
    f0, nf = int(states["frame_offset"][rec]), int(states["n_frames"][rec])
    np.testing.assert_array_equal(states["state"][f0:f0 + nf].values, assign_states(codebook, feats))


def test_rest_frames_get_low_states_and_contractions_high(tokens):
    states = open_group(tokens[0], "synthetic/states")
    level = states["state"].values.mean(axis=1)
    gesture = states["gesture"].values
    assert level[gesture == 0].mean() + 3 < level[gesture > 0].mean()


def test_codebook_is_fitted_on_training_subjects_only(tmp_path, store, tokens):
    states = open_group(tokens[0], "synthetic/states")
    heldout = states.attrs["heldout_subjects"]
    assert heldout and set(heldout).isdisjoint(states.attrs["train_subjects"])
    split = dict(zip(states["subject"].values.tolist(), states["split"].values.tolist(), strict=False))
    assert {s for s, v in split.items() if v == "heldout"} == set(heldout)
    # the held-out subject 10x louder: same split, same codebook, bit for bit
    loud = int(heldout[0].removeprefix("S"))  # synthetic subjects are S00, S01, ...
    other = write_synthetic_store(tmp_path / "loud.zarr", subject_gain={loud: 10.0})
    plan = state_plan(other, "synthetic", TP)
    assert plan.heldout == heldout
    np.testing.assert_array_equal(plan.codebook.centers, states["centers"].values)
    np.testing.assert_array_equal(plan.codebook.scale_mean, states["scale_mean"].values)
    # ... while the same change to a training subject moves the codebook
    trained = int(states.attrs["train_subjects"][0].removeprefix("S"))
    moved = state_plan(write_synthetic_store(tmp_path / "t.zarr", subject_gain={trained: 10.0}), "synthetic", TP)
    assert not np.allclose(moved.codebook.scale_mean, states["scale_mean"].values)


def test_split_rule():
    subjects = [f"s{i}" for i in range(10)]
    raw = {**TP["states"], "train_subjects_fraction": 0.8, "seed": 3, "train_subjects": {}}
    train, heldout = split_subjects(subjects * 2, "d", raw)
    assert len(train) == 8 and len(heldout) == 2 and sorted(train + heldout) == subjects
    assert split_subjects(subjects, "d", raw) == (train, heldout)  # seeded
    two = split_subjects(["a", "b"], "d", raw)
    assert len(two[0]) == len(two[1]) == 1  # a fraction below 1 always holds one subject out
    assert split_subjects(["a"], "d", raw) == (["a"], [])
    explicit = {**raw, "train_subjects": {"d": ["s1", "s2"]}}
    assert split_subjects(subjects, "d", explicit)[0] == ["s1", "s2"]
    assert split_subjects(subjects, "other", explicit) == (train, heldout)  # no list for it: the fraction
    assert split_subjects(subjects, "d", {**raw, "train_subjects": ["s3"]})[0] == ["s3"]
    with pytest.raises(AemgError, match="unknown subject"):
        split_subjects(subjects, "d", {**raw, "train_subjects": {"d": ["nobody"]}})


def test_bad_state_params_fail_loudly():
    with pytest.raises(AemgError, match="unknown parameter"):
        StateParams.from_params({"states": {"kk": 3}}, 200.0)
    with pytest.raises(AemgError, match="empty"):
        StateParams.from_params({"states": {"band": [100.0, 450.0]}}, 200.0)


def test_time_blocks_match_one_pass_and_memory_stays_flat():
    """A recording streamed in small time blocks gives the same states; memory does not grow
    with the recording's length."""
    rng = np.random.default_rng(0)
    n_chans = 8
    long = (rng.standard_normal((96_000, n_chans)) * np.repeat(rng.uniform(0.1, 3, (96, n_chans)), 1000, axis=0))
    long = long.astype(np.float32)
    gesture = np.zeros(len(long), np.int16)
    whole = StateParams.from_params({"states": {"block_samples": 10**7}}, 200.0)
    small = StateParams.from_params({"states": {"block_samples": 4000}}, 200.0)
    thr = {"zc_threshold": 0.0, "ssc_threshold": 0.0, "wamp_threshold": 0.5}
    (_, _, y_whole), = filtered_blocks(lambda a, b: long[a:b], len(long), whole)
    y_blocks = np.concatenate([y[:c * small.stride] if f0 + c < small.n_frames(len(long)) else y
                               for f0, c, y in filtered_blocks(lambda a, b: long[a:b], len(long), small)])
    assert y_blocks.shape == y_whole.shape
    np.testing.assert_allclose(y_blocks, y_whole, atol=1e-5 * float(y_whole.std()))

    def peak(n: int) -> int:
        tracemalloc.start()
        recording_sample(lambda a, b: long[a:b].copy(), lambda a, b: gesture[a:b].copy(), n, 0, 0.01, small, thr)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    assert peak(len(long)) < 1.3 * peak(len(long) // 4)


def test_one_task_per_block_of_recordings(store, tmp_path):
    calls: list[list[int]] = []

    def spy_map(fn, items):
        items = list(items)
        calls.append([len(i[0]) if isinstance(i, tuple) else len(i) for i in items])  # write jobs: (recs, writer)
        return map(fn, items)

    tokenize_one(store, tmp_path / "tokens.zarr", "synthetic", {**TP, "recordings_per_task": 4}, spy_map)
    # power (6 recordings), training sample (4 training recordings), event detection, tokens + states
    assert calls == [[4, 2], [4], [4, 2], [4, 2]]
    assert len(block_power(store, "synthetic", [0, 5], TP)) == 2


def test_states_table_contract_rejects_broken_groups(tokens):
    states = open_group(tokens[0], "synthetic/states").load()
    bad = states.copy()
    bad["state"] = bad["state"].where(bad["state"] != 0, 13)
    with pytest.raises(Exception, match=r"in_range|state"):
        validate_states(bad)
    shifted = states.copy()
    shifted["frame_offset"] = shifted["frame_offset"] + 1
    with pytest.raises(Exception, match="contiguous"):
        validate_states(shifted)


def test_select_k_and_consistency_reports(tmp_path, store, tokens):
    select = write_select_k_report(store, TP, tmp_path / "metrics" / "tokenize_select_k.json")
    saved = json.loads((tmp_path / "metrics" / "tokenize_select_k.json").read_text())
    (entry,) = saved["datasets"]
    assert [r["k"] for r in entry["rows"]] == [2, 3, 4, 5] and entry["pnmi_best_k"] == select["datasets"][0]["pnmi_best_k"]
    sse = [r["sse"] for r in entry["rows"]]
    assert np.all(np.diff(sse) < 0) and all(0 <= r["pnmi"] <= 1 for r in entry["rows"])

    report = write_consistency_report(store, TP, tmp_path / "metrics" / "tokenize_consistency.json")
    (entry,) = report["datasets"]
    stored = open_group(tokens[0], "synthetic/states")
    assert [r["subject"] for r in entry["rows"]] == stored.attrs["heldout_subjects"]
    row = entry["rows"][0]
    assert -1 <= row["kappa"] <= 1 and row["overlap"] <= row["overlap_pm1"] <= 1 and row["n"] > 100
    assert json.loads((tmp_path / "metrics" / "tokenize_consistency.json").read_text())["report"] == "consistency"
