"""``build_report`` writes every figure whose inputs exist, from metrics and small stores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from aemg.errors import AemgError
from aemg.evaluate.loso import run_folds, write_metrics
from aemg.evaluate.methods import MethodContext, get_methods
from aemg.evaluate.report import build_report
from aemg.evaluate.run import compute_features
from aemg.evaluate.synthetic import make_synthetic_trials
from aemg.model.stage import model_dir
from aemg.params import DEFAULTS
from aemg.store import open_group, publish_group

DS = "synthetic"
TINY = {"width": 16, "depth": 1, "heads": 2, "conv_channels": 4, "codebook_size": 8, "code_dim": 4,
        "epochs_vq": 0, "epochs_mtm": 0, "batch_size": 256}  # untrained weights draw the same figures


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


def _stores(root: Path, trials) -> None:
    """A harmonized group (one recording per subject: the trials end to end) and its events."""
    n, c, t = trials.tokens.shape
    subjects = trials.subjects
    emg, gesture, offset, n_times, recording, start = [], [], [], [], np.zeros(n, np.int64), np.zeros(n, np.int64)
    pos = 0
    for r, s in enumerate(subjects):
        idx = np.flatnonzero(trials.subject == s)
        offset.append(pos)
        n_times.append(len(idx) * t)
        for j, i in enumerate(idx):
            emg.append(trials.tokens[i].T)
            gesture.append(np.full(t, trials.gesture[i], np.int16))
            recording[i], start[i] = r, j * t
        pos += len(idx) * t
    chans = np.array([f"c{i}" for i in range(c)], dtype=object)
    h = xr.Dataset(
        {"emg": (("sample", "channel"), np.concatenate(emg)), "gesture": (("sample",), np.concatenate(gesture)),
         "offset": (("recording",), np.array(offset)), "n_times": (("recording",), np.array(n_times)),
         "subject": (("recording",), np.array(subjects, dtype=object))},
        coords={"channel": chans, "angle_deg": ("channel", np.linspace(0, 270, c)), "distance": ("channel", np.full(c, 0.5))},
        attrs={"sfreq": trials.sfreq},
    )
    publish_group(root / "harmonized.zarr", DS, h)
    ev = xr.Dataset(
        {"recording": (("event",), recording), "start": (("event",), start), "stop": (("event",), start + t),
         "gesture": (("event",), trials.gesture), "sentence": (("event",), trials.sentence),
         "order": (("event",), trials.order), "time_in_sentence_s": (("event",), trials.onset),
         "subject": (("event",), trials.subject.astype(object)), "token": (("event", "channel", "time"), trials.tokens)},
        coords={"channel": chans, "angle_deg": ("channel", np.linspace(0, 270, c)), "distance": ("channel", np.full(c, 0.5))},
        attrs={"sfreq": trials.sfreq},
    )
    publish_group(root / "tokens.zarr", DS, xr.DataTree.from_dict({"events": ev}))


def test_report_figures_and_readme(tmp_path):
    from aemg.model import make_synthetic_tokenset, preset, pretrain

    trials = make_synthetic_trials(n_subjects=3, n_classes=3, trials_per_class=8, seed=4, noise=0.3)
    methods = get_methods(["lda", "svm"])
    feats = compute_features(trials, {"hudgins"}, {}, None)
    res = run_folds(trials, methods, feats, MethodContext(trials=trials), few_shot_methods=["lda"], fractions=[0.1, 0.4])
    rows = res.rows + [dict(r, method="aemg_probe") for r in res.rows if r["method"] == "svm" and r["fraction"] == 0]
    # a second seed and the unlabelled-target protocol: figures average seeds and keep strict zero-shot
    rows += [dict(r, seed=1) for r in rows if r["method"] == "aemg_probe"]
    rows += [dict(r, protocol="unlabelled_target") for r in rows if r["fraction"] == 0]
    preds = res.predictions + [dict(p, method="aemg_probe") for p in res.predictions if p["method"] == "svm"]
    preds += [dict(p, seed=1) for p in preds if p["method"] == "aemg_probe"]
    write_metrics(rows, tmp_path / "metrics", few_shot_zero=res.few_shot_zero, predictions=preds, folds={DS: res.folds})
    _stores(tmp_path / "data", trials)
    model = model_dir(tmp_path / "models", DS, DEFAULTS["pretrain"]["seeds"][0])
    other = make_synthetic_tokenset(n_events=120, n_chans=trials.n_chans, n_subjects=2, dataset="other")
    held = make_synthetic_tokenset(n_events=30, n_chans=trials.n_chans, n_subjects=1, dataset="other", seed=1, subject_offset=2)
    pretrain([other], [held], preset("cpu-small", **TINY), model, progress=False)
    (model / "manifest.json").write_text(json.dumps({"subjects_seen": {"other": ["S01", "S02"]}}))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"paths": {
        "harmonized": str(tmp_path / "data" / "harmonized.zarr"), "tokens": str(tmp_path / "data" / "tokens.zarr"),
        "models": str(tmp_path / "models"), "metrics": str(tmp_path / "metrics"), "reports": str(tmp_path / "reports"),
    }}))

    written = build_report(params)
    names = {p.name for p in written}
    assert names == {"per_subject_accuracy.png", f"confusion_{DS}.png", "few_shot.png", f"event_raster_{DS}.png",
                     f"codebook_prototypes_{DS}.png", f"muscle_states_{DS}.png", "ablation.md", "README.md"}
    for p in written:
        assert p.parent == tmp_path / "reports" and p.stat().st_size > (500 if p.suffix == ".md" else 1000)
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    readme = (tmp_path / "reports" / "README.md").read_text()
    assert "aemg_probe" in readme and "Wilcoxon" in readme and "![few_shot](few_shot.png)" in readme
    assert "## Levers" in readme and "target_adaptation: none -> unlabelled" in readme


def test_report_needs_metrics(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"paths": {"metrics": str(tmp_path / "none")}}))
    with pytest.raises(AemgError, match="run `aemg evaluate` first"):
        build_report(params)


def test_fixed_window_tokens_cover_every_recording(tmp_path):
    """The ablation's tokens: consecutive windows of every recording, no event detection."""
    from aemg.evaluate.ablation import fixed_window_tokenset
    from aemg.params import DEFAULTS

    trials = make_synthetic_trials(n_subjects=3, n_classes=3, trials_per_class=5, seed=5)
    _stores(tmp_path, trials)
    tp = DEFAULTS["tokenize"]
    ts = fixed_window_tokenset(tmp_path / "harmonized.zarr", DS, tp)
    h = open_group(tmp_path / "harmonized.zarr", DS)
    T = tp["token_len"]
    assert ts.n_events == int(sum(-(-n // T) for n in h["n_times"].values))
    assert sorted(set(ts.subject)) == trials.subjects
    emg = h["emg"].values[: int(h["n_times"].values[0])].astype(np.float64)
    first = (emg[:T] - emg[:T].mean(axis=0)).T  # de-meaned (raw EMG), then one scale per channel
    scale = np.linalg.norm(first, axis=1) / np.linalg.norm(ts.tokens[0], axis=1)
    np.testing.assert_allclose(ts.tokens[0] * scale[:, None], first, rtol=1e-4, atol=1e-6)
    for s in set(ts.subject):  # each subject scaled by its own tokens, as pre-training reads events
        rms = np.sqrt((ts.tokens[ts.subject == s].astype(np.float64) ** 2).mean(axis=(0, 2)))
        np.testing.assert_allclose(rms, 1.0, rtol=1e-4)
    _, sizes = np.unique(ts.sentence, return_counts=True)
    assert sizes.max() <= tp["max_order"] and ts.order.max() == tp["max_order"] - 1
