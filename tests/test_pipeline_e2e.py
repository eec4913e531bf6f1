"""Every stage end to end on a small real slice, downloaded through the loopback mirror."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from aemg.model.stage import model_dir as stage_model_dir
from aemg.store import open_group, open_tree
from aemg.vocabulary import GESTURES

from conftest import SLICE_SUBJECTS, write_params

DATASETS = ["myo-armband-cote-allard", "unibo-inail"]


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, mirror, prefect_harness):
    import os

    from aemg.flows.pipeline import pipeline_flow

    root = tmp_path_factory.mktemp("pipeline")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        params = write_params(root, DATASETS)
        result = pipeline_flow(params_path=str(params), mirror=mirror)
    finally:
        os.chdir(cwd)
    return root, result


def test_raw_files_are_the_verified_originals(pipeline_run, shared_data):
    root, _ = pipeline_run
    original = shared_data / "unibo-inail" / "data" / "user_2_day_1_posture_1.mat"
    copy = root / "data" / "raw" / "unibo-inail" / "data" / "user_2_day_1_posture_1.mat"
    assert copy.read_bytes() == original.read_bytes()


def test_harmonized_store_opens_with_plain_xarray(pipeline_run):
    root, _ = pipeline_run
    tree = open_tree(root / "data" / "harmonized.zarr")
    assert sorted(tree.children) == sorted(DATASETS)
    myo = tree["myo-armband-cote-allard"].to_dataset()
    assert myo.sizes["channel"] == 8
    assert myo.attrs["sfreq"] == 200.0
    assert sorted(set(myo["subject"].values.tolist())) == sorted(SLICE_SUBJECTS["myo-armband-cote-allard"])
    assert myo.sizes["recording"] == 3 * 28  # 28 gesture files per subject
    # recordings are contiguous ragged slices of emg
    assert int(myo["offset"][-1] + myo["n_times"][-1]) == myo.sizes["sample"]
    # the myo label comes from the file index: classe_<i>.dat is gesture i % 7
    files = np.array(myo["source_file"].values.tolist())
    first = int(np.flatnonzero(np.char.endswith(files, "classe_11.dat"))[0])
    span = slice(int(myo["offset"][first]), int(myo["offset"][first] + myo["n_times"][first]))
    # 11 % 7 = 4: the Myo set's "wrist extension", shared code 4
    assert set(np.unique(myo["gesture"][span].values)) == {GESTURES["wrist_extension"]}
    unibo = tree["unibo-inail"].to_dataset()
    assert unibo.attrs["signal"] == "envelope" and unibo.sizes["channel"] == 4


def test_token_store_events_index_the_signal(pipeline_run):
    root, _ = pipeline_run
    tokens = open_tree(root / "data" / "tokens.zarr")
    events = tokens["myo-armband-cote-allard/events"].to_dataset()
    harmonized = open_group(root / "data" / "harmonized.zarr", "myo-armband-cote-allard")
    assert events.sizes["event"] > 100
    start, stop, rec = events["start"].values, events["stop"].values, events["recording"].values
    assert np.all(start < stop) and np.all(stop <= harmonized["n_times"].values[rec])
    assert events["token"].shape[1:] == (8, 50)
    # gesture at the event equals the majority label of the indexed samples
    i = 7
    offset = int(harmonized["offset"].values[rec[i]])
    labels = harmonized["gesture"].values[offset + start[i] : offset + stop[i]]
    assert int(events["gesture"].values[i]) == int(np.bincount(labels - labels.min()).argmax() + labels.min())


def test_models_metrics_and_leak_free_manifest(pipeline_run):
    root, result = pipeline_run
    for dataset in DATASETS:
        model_dir = stage_model_dir(root / "models", dataset, 0)
        assert (model_dir / "vq.pt").exists() and (model_dir / "mtm.pt").exists()
        manifest = json.loads((model_dir / "manifest.json").read_text())
        assert dataset not in manifest["subjects_seen"]  # leave-one-dataset-out
    summary = json.loads((root / "metrics" / "loso.json").read_text())
    scores = pd.read_csv(root / "metrics" / "loso_scores.csv", dtype={"subject": str})
    for dataset in DATASETS:
        assert set(summary[dataset]) == {"lda", "aemg_probe", "aemg_probe_fixedwin"}
        per = scores[scores.dataset == dataset]
        assert sorted(per.subject.unique()) == sorted(SLICE_SUBJECTS[dataset])
        # one row per subject x method x protocol (strict zero-shot and unlabelled target), one seed
        assert len(per) == 3 * 3 * 2 and set(per.protocol) == {"zero_shot", "unlabelled_target"}
        assert "unlabelled_target" in summary[dataset]["aemg_probe"]
        fixed = json.loads((stage_model_dir(root / "models-fixedwin", dataset, 0) / "manifest.json").read_text())
        assert fixed["tokens"] == "fixed_window" and dataset not in fixed["subjects_seen"]
    myo = scores[(scores.dataset == "myo-armband-cote-allard") & (scores.method == "lda")]
    assert myo.accuracy.mean() > 1.5 / 7  # well above chance for 7 gestures
    assert "lda" in result["tables"][0][1]
    assert (root / "reports" / "README.md").exists() and any(p.endswith(".png") for p in result["reports"])
    levers = pd.read_csv(root / "metrics" / "levers_scores.csv", dtype={"subject": str})
    assert set(levers.lever) == {"mean_pool"} and set(levers.method) == {"aemg_probe"}
    assert len(levers) == 3 * len(DATASETS)  # strict zero-shot, one seed
    ablation = (root / "reports" / "ablation.md").read_text()
    assert "mean_pool" in ablation and "target_adaptation: none -> unlabelled" in ablation
    pretrain = json.loads((root / "metrics" / "pretrain.json").read_text())
    assert 0 < pretrain["codebook_usage"] <= 1
