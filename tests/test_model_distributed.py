"""Data-parallel pre-training under torchrun (2 gloo ranks): one set of weights, and the entry point
writes what `aemg pretrain` writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from aemg.model.distributed import World
from aemg.model.stage import model_dir
from aemg.model.train import weights_fingerprint

from conftest import REPO, write_params, write_token_store

WORKER = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    from aemg.model import ModelConfig, make_synthetic_tokenset, pretrain
    from aemg.model import distributed

    out = Path(sys.argv[1])
    world, device = distributed.init_from_env("cpu")
    train = make_synthetic_tokenset(n_events=600, n_chans=8, n_subjects=3, seed=0)
    held = make_synthetic_tokenset(n_events=150, n_chans=8, n_subjects=1, subject_offset=3, seed=1)
    cfg = ModelConfig(width=32, depth=1, heads=2, conv_channels=8, codebook_size=32, code_dim=16,
                      batch_size=500, epochs_vq=2, epochs_mtm=2, dead_code_threshold=3, dropout=0.1)
    kw = dict(device=device, progress=False, num_threads=1)
    m = pretrain([train], [held], cfg, out / "model", **kw)
    pretrain([train], [held], cfg, out / "parts", max_epochs=3, **kw)  # stops after mtm epoch 1
    resumed = pretrain([train], [held], cfg, out / "parts", resume=True, **kw)
    (out / f"rank{world.rank}.json").write_text(json.dumps(
        {"rank": world.rank, "size": world.size, "weights": m["weights_sha256"],
         "resumed": resumed["weights_sha256"],
         "accuracy": m["masked_token_accuracy"], "vq_steps": m["history"]["vq"]["steps"]}))
    distributed.shutdown()
''')


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Two CPU ranks (gloo) of ``args``, as ``torchrun --standalone --nproc_per_node=2``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args],
                          capture_output=True, text=True, timeout=300, env=env, cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def test_two_ranks_train_one_model(tmp_path):
    (tmp_path / "worker.py").write_text(WORKER)
    _torchrun([str(tmp_path / "worker.py"), str(tmp_path)], tmp_path)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["size"] for r in ranks] == [2, 2]
    # both ranks hold bitwise the same weights (pretrain also checks this itself) ...
    assert ranks[0]["weights"] == ranks[1]["weights"]
    assert ranks[0]["accuracy"] == ranks[1]["accuracy"]
    # ... and they are the ones rank 0 saved: 600 events x 8 channels = 4800 patches,
    # 500 per global batch -> 10 steps per epoch, as in one process
    assert ranks[0]["vq_steps"] == [10, 10]
    cks = [torch.load(tmp_path / "model" / f, weights_only=True) for f in ("vq.pt", "mtm.pt")]
    assert all(ck["complete"] for ck in cks)
    assert weights_fingerprint([ck["state_dict"] for ck in cks]) == ranks[0]["weights"]
    assert len(cks[1]["rng_ranks"]) == 2  # each rank's RNG state (masks, dropout) ...
    assert ranks[0]["resumed"] == ranks[0]["weights"]  # ... so an interrupted run resumes exactly
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["mtm.pt", "vq.pt"]


def test_shard_splits_a_batch_and_weights_the_loss():
    batch = list(range(5))
    assert World(0, 1).shard(batch) == (batch, 1.0)
    (a, wa), (b, wb) = World(0, 2).shard(batch), World(1, 2).shard(batch)
    assert sorted(a + b) == batch
    # weights make the mean over ranks of weighted rank means the mean over the global batch
    assert (wa * sum(a) / len(a) + wb * sum(b) / len(b)) / 2 == sum(batch) / len(batch)
    # a rank left without data gets a placeholder it must not learn from
    assert World(1, 2).shard([7]) == ([7], 0.0)


def test_torchrun_entry_point_writes_what_aemg_pretrain_writes(tmp_path):
    datasets = ["alpha", "beta"]
    write_token_store(tmp_path / "data" / "tokens.zarr", datasets)
    write_params(tmp_path, datasets)
    proc = _torchrun(["-m", "aemg.model.train_cli", "--params", "params.yaml"], tmp_path)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])  # printed once, by rank 0
    assert 0 < summary["codebook_usage"] <= 1 and summary["masked_token_accuracy"] >= 0
    metrics = json.loads((tmp_path / "metrics" / "pretrain.json").read_text())
    assert sorted(metrics["models"]) == datasets and metrics["seeds"] == [0]
    for d in datasets:
        out = model_dir(tmp_path / "models", d, 0)
        assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "mtm.pt", "vq.pt"]
        seen = json.loads((out / "manifest.json").read_text())["subjects_seen"]
        assert list(seen) == [x for x in datasets if x != d]  # leave-one-dataset-out
        for stage in ("vq", "mtm"):
            rows = json.loads((tmp_path / "metrics" / "pretrain_history" / stage / d / "seed0.json").read_text())
            assert [r["epoch"] for r in rows] == [1] and rows[0]["stage"] == stage
