"""Same code + same params = byte-identical metrics, on an idle machine and beside a busy process.

A tiny pre-training and a tiny LOSO evaluation (lda, aemg_probe, transformer_scratch) run twice,
each in a fresh interpreter; the second run shares the CPUs with a process that burns one core.
The thread count must come from params (2 here, so that choosing it from the load, as
``auto_num_threads`` did, would have picked 1 in the busy run): each run records the counts it
trained and evaluated with, and they must equal the params' in both runs.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aemg.errors import AemgError
from aemg.runtime import resolve_threads

from conftest import REPO, TINY_MODEL

THREADS = 2

SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import torch
    from aemg.evaluate.loso import write_metrics
    from aemg.evaluate.run import evaluate_trials
    from aemg.evaluate.synthetic import make_synthetic_trials
    from aemg.model import make_synthetic_tokenset
    from aemg.model.stage import model_dir, train_model
    from aemg.params import DEFAULTS
    from aemg.runtime import cpu_threads, resolve_threads

    out, tiny, threads = Path(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
    pp = {**DEFAULTS["pretrain"], "overrides": tiny, "num_threads": threads,
          "augment": {"rotation_deg": 30.0}}
    train = make_synthetic_tokenset(n_events=480, n_chans=4, n_subjects=3, seed=0, dataset="other")
    held = make_synthetic_tokenset(n_events=120, n_chans=4, n_subjects=1, subject_offset=3, seed=1, dataset="other")
    directory = model_dir(out / "models", "synthetic", 0)
    pre = train_model([train], [held], pp, 0, directory, progress=False)
    seen = sorted(set(train.subject) | set(held.subject))
    (directory / "manifest.json").write_text(json.dumps({"subjects_seen": {"other": seen}}))

    trials = make_synthetic_trials(n_subjects=3, n_classes=3, trials_per_class=6, n_chans=4, seed=2)
    ep = {**DEFAULTS["evaluate"], "methods": ["lda", "aemg_probe", "transformer_scratch"], "grid": None,
          "few_shot_methods": [], "transformer_epochs": 1, "num_threads": threads}
    with cpu_threads(resolve_threads(ep["num_threads"])):
        eval_threads = torch.get_num_threads()
        res = evaluate_trials(trials, ep, directory)
    write_metrics(res["rows"], out / "metrics", predictions=res["predictions"])
    keep = ("codebook_usage", "reconstruction_error", "masked_token_accuracy", "weights_sha256", "num_threads")
    (out / "metrics" / "pretrain.json").write_text(json.dumps({k: pre[k] for k in keep}, sort_keys=True))
    (out / "threads.json").write_text(json.dumps({"pretrain": pre["num_threads"], "evaluate": eval_threads}))
""")

METRIC_FILES = ("pretrain.json", "loso.json", "loso_scores.csv", "loso_predictions.csv.gz")


def _content(path: Path) -> bytes:
    """The file's bytes; for .gz the decompressed ones (the gzip header stamps the write time)."""
    return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()


def _run(out: Path) -> dict[str, int]:
    env = {k: v for k, v in os.environ.items() if k != "AEMG_NUM_THREADS"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(out), json.dumps(TINY_MODEL), str(THREADS)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "threads.json").read_text())


def test_metrics_are_byte_identical_beside_a_busy_process(tmp_path):
    idle = _run(tmp_path / "idle")
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy = _run(tmp_path / "busy")
    finally:
        burner.kill()
        burner.wait()
    assert idle == busy == {"pretrain": THREADS, "evaluate": THREADS}  # from params, not from the load
    for name in METRIC_FILES:
        a, b = (tmp_path / run / "metrics" / name for run in ("idle", "busy"))
        assert _content(a) == _content(b), name
    rows = (tmp_path / "idle" / "metrics" / "loso_scores.csv").read_text()
    assert all(m in rows for m in ("lda", "aemg_probe", "transformer_scratch"))


def test_thread_count_comes_from_params_or_env_only(monkeypatch):
    monkeypatch.delenv("AEMG_NUM_THREADS", raising=False)
    assert resolve_threads(3) == 3
    monkeypatch.setenv("AEMG_NUM_THREADS", "2")
    assert resolve_threads(1) == 2  # the documented override
    monkeypatch.setenv("AEMG_NUM_THREADS", "many")
    with pytest.raises(AemgError, match="AEMG_NUM_THREADS"):
        resolve_threads(1)
    monkeypatch.delenv("AEMG_NUM_THREADS")
    with pytest.raises(AemgError, match="num_threads"):
        resolve_threads(None)
    readers = [p for p in (REPO / "aemg").rglob("*.py") if "loadavg" in p.read_text()]
    assert readers == []  # nothing in the package looks at the machine's load
