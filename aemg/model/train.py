"""Pre-training: stage 1 (VQ tokenizer) then stage 2 (masked-token model), with exact resume.

Checkpoints (``out_dir/vq.pt``, ``out_dir/mtm.pt``) are plain dicts of tensors, numbers and
strings, saved atomically after every epoch and loaded with ``torch.load(weights_only=True)``:
``{"config", "data_hash", "heldout_hash", "stage", "state_dict", "optimizer", "epoch",
"complete", "rng", "history"}`` (+ ``"most_frequent_code"`` in mtm.pt).

Randomness: :func:`aemg.runtime.deterministic` (``cfg.seed``: python, numpy, torch, and
deterministic kernels) at the start; data order of epoch e of stage s comes from
``np.random.default_rng([seed, s, e])``, the electrode rotations (``cfg.rotation_deg``) of
stage s from ``default_rng([seed, s + 2, e])``; masks, dropout, k-means and dead-code restarts
use the global torch RNG, whose state (CPU and CUDA) is saved each epoch and restored on
resume; the MTM is initialised from ``seed + 1``; held-out masks use a private generator.
The CPU thread count is an argument (params ``pretrain.num_threads``), never the machine's
load, and is saved in the checkpoints. On CPU, an interrupted run resumed with
``resume=True`` ends with weights identical (``torch.equal``) to an uninterrupted one. On
CUDA the deterministic kernels make two runs on the same GPU model repeat; across GPU models
or library versions the last bits may differ.

Budget: with ``budget_s``, stage 1 may spend ``budget_s * epochs_vq / (epochs_vq + epochs_mtm)``
seconds and stage 2 what is left of ``budget_s``; an epoch starts only while the stage's time
so far plus its mean epoch time fits its share (the first epoch always runs). The stop is
recorded (``budget`` in the result, ``budget_left_s`` per epoch in the history, ``budget_stopped``
in the checkpoints). Where the stop falls depends on the machine's speed, so budget-stopped runs
are neither reproducible across machines nor exactly resumable: a resumed run keeps a
budget-stopped stage as it is and goes on with the next one.

Data parallel: inside a ``torch.distributed`` process group (``torchrun``, see
:mod:`aemg.model.distributed` and :mod:`aemg.model.train_cli`) both models train wrapped in
``DistributedDataParallel``, each rank on its shard of every global batch (``batch_size`` stays
the global batch, so the step count matches one process); only rank 0 writes checkpoints and
shows progress; checkpoints keep every rank's RNG state (``rng_ranks``), so a run resumed with
the same number of ranks also continues exactly (CPU); the run ends by checking that all ranks
hold bitwise-equal weights.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from aemg.model.config import ModelConfig, ModelConfigError
from aemg.model.data import (
    TokenSet,
    collate_sentences,
    content_hash,
    plan_sentence_batches,
    rotate_batch,
    rotate_positions,
    rotation_angles,
    sentence_batches,
)
from aemg.model.distributed import World, current
from aemg.model.mtm import MaskedTokenModel, masked_token_loss, pool_channels, random_mask
from aemg.model.tokenizer import Tokenizer
from aemg.model.vq import codebook_stats
from aemg.runtime import cpu_threads, deterministic, resolve_threads

VQ_FILE = "vq.pt"
MTM_FILE = "mtm.pt"
_EVAL_SEED = 20_240_611
_KMEANS_SAMPLE = 16_384


# --------------------------------------------------------------------------- helpers
def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """CUDA when available (and not overridden), else CPU."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def _elapsed(t0: float, device: torch.device) -> float:
    """Seconds since ``t0`` once queued CUDA work has finished (kernels run asynchronously, so
    the clock alone would stop before the last steps ran and overstate throughput)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def _lr_at(cfg: ModelConfig, progress: float) -> float:
    """Linear warm-up over warmup_frac, then cosine decay from lr to lr/10."""
    w = cfg.warmup_frac
    if w > 0 and progress < w:
        return cfg.lr * max(progress / w, 1e-3)
    p = (progress - w) / max(1e-9, 1 - w)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def _optimizer(model: torch.nn.Module, cfg: ModelConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95),
    )


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    state["cuda"] = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())  # map_location may have moved it
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _save(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def weights_fingerprint(state_dicts: Sequence[dict[str, torch.Tensor]]) -> str:
    """sha256 over the names and bytes of every tensor: equal fingerprints mean bitwise-equal
    weights (used to prove that data-parallel ranks did not drift apart)."""
    h = hashlib.sha256()
    for sd in state_dicts:
        for name, t in sd.items():
            h.update(name.encode() + b"\0")
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with a one-line error naming the fix."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no checkpoint. Fix: run `aemg pretrain` (aemg.model.pretrain) first.")
    return torch.load(path, map_location=map_location, weights_only=True)


def _check_resume(ck: dict[str, Any], path: Path, cfg: ModelConfig, data_hash: str, heldout_hash: str) -> None:
    saved = ck["config"]
    now = asdict(cfg)
    diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if diff:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in diff)
        raise ModelConfigError(
            f"{path}: cannot resume, config differs ({detail}). Fix: use the same config or resume=False."
        )
    if ck["data_hash"] != data_hash or ck.get("heldout_hash") != heldout_hash:
        raise ModelConfigError(
            f"{path}: cannot resume, the training/held-out tokens differ from the checkpoint's "
            f"(data_hash {ck['data_hash'][:12]} vs {data_hash[:12]}). Fix: resume=False."
        )


def _check_inputs(train: Sequence[TokenSet], heldout: Sequence[TokenSet], cfg: ModelConfig) -> None:
    if not train or sum(ts.n_events for ts in train) == 0:
        raise ValueError("pretrain: no training events. Fix: pass at least one non-empty TokenSet.")
    if not heldout or sum(ts.n_events for ts in heldout) == 0:
        raise ValueError("pretrain: no held-out events. Fix: hold out at least one subject's TokenSet.")
    for ts in [*train, *heldout]:
        if ts.n_times != cfg.n_times:
            raise ModelConfigError(
                f"{ts.dataset}: tokens have n_times={ts.n_times}, config has n_times={cfg.n_times}. "
                f"Fix: set n_times={ts.n_times} or re-tokenize."
            )
        if cfg.spatial_conditioning == "slot16" and ts.n_chans > 16:
            raise ModelConfigError(
                f"{ts.dataset}: n_chans={ts.n_chans} > 16 with spatial_conditioning='slot16'. "
                f"Fix: use spatial_conditioning='position'."
            )
        ts.chunks(cfg.max_patches)  # validates n_chans <= max_patches
    seen = {(ts.dataset, s) for ts in train for s in np.unique(ts.subject)}
    both = sorted({(ts.dataset, s) for ts in heldout for s in np.unique(ts.subject)} & seen)
    if both:
        raise ValueError(
            f"pretrain: subjects in both train and held-out: {both[:5]}{' ...' if len(both) > 5 else ''}. "
            f"Fix: split by subject."
        )


def _flat_patches(token_sets: Sequence[TokenSet], device: torch.device) -> dict[str, torch.Tensor]:
    """All (event, channel) patches of the token sets, flattened, with their conditioning."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("patches", "positions", "channel", "onset", "order")}
    for ts in token_sets:
        n, c = ts.n_events, ts.n_chans
        parts["patches"].append(ts.tokens.reshape(n * c, ts.n_times))
        parts["positions"].append(np.tile(ts.positions, (n, 1)))
        parts["channel"].append(np.tile(np.arange(c, dtype=np.int64), n))
        parts["onset"].append(np.repeat(ts.onset, c))
        parts["order"].append(np.repeat(ts.order, c))
    return {k: torch.from_numpy(np.concatenate(v)).to(device) for k, v in parts.items()}


def _parallel(model: torch.nn.Module, device: torch.device, world: World) -> torch.nn.Module:
    """``model`` itself in one process, else its DDP wrapper (same parameters, synced gradients).

    Buffers (the VQ codebook) are synced once here from rank 0 and then kept equal by the
    quantizer itself, so DDP need not broadcast them before every forward.
    """
    if not world.parallel:
        return model
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), disable=not enabled,
    )


class _Budget:
    """Stops after ``max_epochs`` epochs (both stages together) in this call."""

    def __init__(self, max_epochs: int | None):
        self.left = max_epochs

    def take(self) -> bool:
        if self.left is None:
            return True
        if self.left <= 0:
            return False
        self.left -= 1
        return True


class _Clock:
    """Wall-time shares of ``budget_s`` per stage (see the module docstring); unbounded
    without a budget. Counts the time of this call only."""

    def __init__(self, budget_s: float | None, cfg: ModelConfig, world: World, device: torch.device):
        self.total = float(budget_s) if budget_s else None
        n = cfg.epochs_vq + cfg.epochs_mtm
        self.shares = {"vq": (self.total or 0.0) * cfg.epochs_vq / max(1, n)}
        self.epochs: dict[str, list[float]] = {"vq": [], "mtm": []}
        self.world, self.device = world, device

    def left(self, stage: str) -> float:
        """Seconds of the stage's share not yet spent (stage 2 gets what stage 1 left)."""
        share = self.shares["vq"] if stage == "vq" else (self.total or 0.0) - sum(self.epochs["vq"])
        return share - sum(self.epochs[stage])

    def fits(self, stage: str) -> bool:
        """Whether one more epoch (at this stage's mean epoch time) fits its share; the first
        epoch always does. Rank 0 decides for every rank, so that they stop together."""
        spent = self.epochs[stage]
        if self.total is None or not spent:
            return True
        ok = torch.tensor([int(self.left(stage) >= sum(spent) / len(spent))], device=self.device)
        return bool(self.world.from_main(ok).item())


# --------------------------------------------------------------------------- stage 1
@torch.no_grad()
def _eval_vq(model: Tokenizer, flat: dict[str, torch.Tensor], device: torch.device, bs: int) -> dict[str, float]:
    model.eval()
    n = flat["patches"].shape[0]
    sq_err = torch.zeros((), dtype=torch.float64, device=device)
    idx_all = []
    for s in range(0, n, bs):
        sl = slice(s, s + bs)
        with _autocast(device):
            out = model(flat["patches"][sl], flat["positions"][sl], flat["channel"][sl],
                        flat["onset"][sl], flat["order"][sl])
        sq_err += ((out.reconstruction.float() - flat["patches"][sl]) ** 2).sum(dtype=torch.float64)
        idx_all.append(out.indices)
    x = flat["patches"].double()
    var_sum = ((x - x.mean()) ** 2).sum()
    usage, perplexity = codebook_stats(torch.cat(idx_all), model.cfg.codebook_size)
    return {"reconstruction_error": float(sq_err / var_sum.clamp(min=1e-12)),
            "codebook_usage": usage, "codebook_perplexity": perplexity}


def _train_vq_epoch(model, opt, flat, cfg, epoch, device, bar, world: World | None = None) -> dict[str, float]:
    """One epoch of stage 1; under DDP every rank takes its shard of each global batch."""
    world = world or current()
    model.train()
    n = flat["patches"].shape[0]
    perm = torch.from_numpy(np.random.default_rng([cfg.seed, 1, epoch]).permutation(n)).to(device)
    turn = (torch.from_numpy(rotation_angles(n, cfg.rotation_deg, np.random.default_rng([cfg.seed, 3, epoch])))
            .to(device) if cfg.rotation_deg else None)  # one angle per patch: stage 1 encodes patches alone
    n_steps = math.ceil(n / cfg.batch_size)
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    t0 = time.perf_counter()
    for step in range(n_steps):
        idx, weight = world.shard(perm[step * cfg.batch_size:(step + 1) * cfg.batch_size])
        lr = _lr_at(cfg, (epoch + step / n_steps) / max(1, cfg.epochs_vq))
        for g in opt.param_groups:
            g["lr"] = lr
        positions = flat["positions"][idx] if turn is None else rotate_positions(flat["positions"][idx], turn[idx])
        with _autocast(device):
            out = model(flat["patches"][idx], positions, flat["channel"][idx],
                        flat["onset"][idx], flat["order"][idx])
        opt.zero_grad(set_to_none=True)
        (out.loss * weight).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        n_mine = len(idx) if weight else 0
        totals += torch.stack([out.loss.detach(), out.recon_loss.detach(), out.vq_loss.detach()]).double() * n_mine
        if bar is not None and (step % 10 == 0 or step == n_steps - 1):
            rate = min(n, (step + 1) * cfg.batch_size) / (time.perf_counter() - t0)
            bar[0].update(bar[1], completed=step + 1, loss=f"{float(out.loss.detach()):.4f}", rate=f"{rate:,.0f} tok/s")
    seconds = _elapsed(t0, device)
    tot = (world.sum(totals) / n).tolist()
    return {"train_loss": tot[0], "train_recon": tot[1], "train_commit": tot[2],
            "seconds": seconds, "steps": n_steps, "tokens_per_s": n / seconds}


# --------------------------------------------------------------------------- stage 2
@torch.no_grad()
def compute_codes(model: Tokenizer, token_sets: Sequence[TokenSet], device: torch.device | str | None = None,
                  batch_size: int = 8192) -> list[np.ndarray]:
    """Frozen stage-1 code of every patch: one int64 array (n_events, n_chans) per TokenSet."""
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    for ts in token_sets:
        x = torch.from_numpy(ts.tokens.reshape(-1, ts.n_times))
        codes = []
        for s in range(0, x.shape[0], batch_size):
            with _autocast(device):
                codes.append(model.tokenize(x[s:s + batch_size].to(device)).cpu())
        flat = torch.cat(codes) if codes else torch.zeros(0, dtype=torch.long)
        out.append(flat.numpy().astype(np.int64).reshape(ts.n_events, ts.n_chans))
    model.train(was_training)
    return out


@torch.no_grad()
def _eval_mtm(model, token_sets, codes, cfg, device, most_frequent) -> dict[str, float]:
    model.eval()
    gen = torch.Generator().manual_seed(_EVAL_SEED)
    loss_sum, correct, base, total = 0.0, 0, 0, 0
    for batch in sentence_batches(token_sets, cfg.max_patches, cfg.batch_size, codes=codes):
        batch = batch.to(device)
        mask = random_mask(batch.padding.cpu(), cfg.mask_ratio, generator=gen).to(device)
        with _autocast(device):
            loss, n_correct, n = model.loss(batch, mask)
        loss_sum += float(loss) * int(n)
        correct += int(n_correct)
        total += int(n)
        base += int((batch.codes[mask & ~batch.padding] == most_frequent).sum())
    total = max(total, 1)
    return {"masked_token_loss": loss_sum / total, "masked_token_accuracy": correct / total,
            "masked_token_baseline_accuracy": base / total}


def _train_mtm_epoch(model, opt, token_sets, codes, cfg, epoch, device, bar, world: World | None = None) -> dict[str, float]:
    """One epoch of stage 2; under DDP every rank takes its shard of the sequences of each
    global batch, and its loss is weighted by its share of the masked patches."""
    world = world or current()
    model.train()
    plan = plan_sentence_batches(token_sets, cfg.max_patches, cfg.batch_size,
                                 rng=np.random.default_rng([cfg.seed, 2, epoch]))
    turn_rng = np.random.default_rng([cfg.seed, 4, epoch])
    n_steps = len(plan)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    n_masked = torch.zeros((), dtype=torch.long, device=device)
    n_patches = torch.zeros((), dtype=torch.long, device=device)
    t0 = time.perf_counter()
    if bar is not None:
        bar[0].update(bar[1], total=n_steps)
    for step, items in enumerate(plan):
        mine, weight = world.shard(items)
        keep = int(weight > 0)  # 0 where this rank only holds a placeholder sequence
        turns = rotation_angles(len(items), cfg.rotation_deg, turn_rng)  # drawn for the global batch
        batch = collate_sentences(token_sets, mine, codes=codes)
        if cfg.rotation_deg:
            batch = rotate_batch(batch, world.shard(turns)[0])
        n_patches += batch.n_patches * keep
        batch = batch.to(device)
        lr = _lr_at(cfg, (epoch + step / n_steps) / max(1, cfg.epochs_mtm))
        for g in opt.param_groups:
            g["lr"] = lr
        mask = random_mask(batch.padding, cfg.mask_ratio)
        with _autocast(device):
            loss, n_correct, n = masked_token_loss(model, batch, mask)
        n, n_correct = n * keep, n_correct * keep
        share = world.size * n / world.sum(n.clone()).clamp(min=1) if world.parallel else 1.0
        opt.zero_grad(set_to_none=True)
        (loss * share).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss_sum += loss.detach().double() * n
        correct += n_correct
        n_masked += n
        if bar is not None and (step % 10 == 0 or step == n_steps - 1):
            rate = int(n_patches) * world.size / (time.perf_counter() - t0)
            bar[0].update(bar[1], completed=step + 1, loss=f"{float(loss.detach()):.4f}", rate=f"{rate:,.0f} tok/s")
    seconds = _elapsed(t0, device)
    m = max(int(world.sum(n_masked)), 1)
    return {"train_loss": float(world.sum(loss_sum)) / m, "train_accuracy": int(world.sum(correct)) / m,
            "seconds": seconds, "steps": n_steps, "tokens_per_s": int(world.sum(n_patches)) / seconds}


def _append(history: dict[str, list], epoch: int, *parts: dict[str, float]) -> None:
    history.setdefault("epoch", []).append(epoch + 1)
    for part in parts:
        for k, v in part.items():
            history.setdefault(k, []).append(float(v))


# --------------------------------------------------------------------------- public API
def pretrain(
    train: list[TokenSet],
    heldout: list[TokenSet],
    cfg: ModelConfig,
    out_dir: Path,
    device: str | None = None,
    resume: bool = False,
    progress: bool = True,
    *,
    max_epochs: int | None = None,
    num_threads: int | None = None,
    budget_s: float | None = None,
) -> dict:
    """Train stage 1 (VQ tokenizer) then stage 2 (masked-token model); see module docstring.

    train / heldout: TokenSets split by subject (a subject in both raises).
    out_dir: receives ``vq.pt`` and ``mtm.pt``, rewritten after every epoch.
    device: "cuda", "cpu", ... or None for CUDA when available (bf16 autocast on CUDA).
    resume: continue from the checkpoints in out_dir (same config and data required);
      without it, training starts from scratch and overwrites them.
    max_epochs: stop after this many epochs (both stages together) in this call, e.g. for
      time-boxed jobs; a later ``resume=True`` call carries on. The result then has
      ``complete=False``.
    num_threads: torch CPU threads per process (params ``pretrain.num_threads``; the
      ``AEMG_NUM_THREADS`` environment variable overrides it, see :mod:`aemg.runtime`);
      default: the count saved in the checkpoint when resuming (the thread count changes the
      last bits of CPU results, so exact resume keeps it), else 1. Ignored on CUDA.
    budget_s: wall-time budget of this call in seconds (None or 0: none); see the module
      docstring. The result's ``budget`` says which stages it stopped and after how many epochs.

    Returns held-out ``codebook_usage``, ``codebook_perplexity``, ``reconstruction_error``
    (MSE / variance of the held-out patches), ``masked_token_accuracy``,
    ``masked_token_baseline_accuracy`` (always the most frequent training code),
    ``masked_token_loss``, bookkeeping, and ``history`` = {"vq": {...}, "mtm": {...}} of
    per-epoch lists (train loss, held-out metrics, seconds, tokens_per_s) for plots.
    """
    t_start = time.perf_counter()
    train, heldout = list(train), list(heldout)
    _check_inputs(train, heldout, cfg)
    dev = resolve_device(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_hash, heldout_hash = content_hash(train), content_hash(heldout)
    vq_path, mtm_path = out_dir / VQ_FILE, out_dir / MTM_FILE
    budget = _Budget(max_epochs)
    world = current()
    progress = progress and world.is_main
    if num_threads is None and resume and vq_path.exists():
        num_threads = load_checkpoint(vq_path).get("num_threads")
    num_threads = resolve_threads(num_threads or 1)
    clock = _Clock(budget_s, cfg, world, dev)
    stopped: dict[str, bool] = {"vq": False, "mtm": False}
    result: dict[str, Any] = {
        "device": str(dev), "data_hash": data_hash, "heldout_hash": heldout_hash,
        "n_train_events": sum(ts.n_events for ts in train),
        "n_train_patches": sum(ts.n_events * ts.n_chans for ts in train),
        "n_heldout_events": sum(ts.n_events for ts in heldout),
        "config": asdict(cfg), "num_threads": num_threads if dev.type == "cpu" else None,
        "world_size": world.size,
    }

    def budget_report() -> dict[str, Any]:
        return {"budget_s": clock.total, "stopped": [k for k, v in stopped.items() if v],
                "epochs_vq": len(vq_hist.get("epoch", [])), "epochs_mtm": len(mtm_hist.get("epoch", []))}

    def base_ck(stage: str, model, opt, epoch: int, complete: bool, history: dict) -> dict[str, Any]:
        rng = world.gather(_rng_state())  # a collective: every rank builds every checkpoint
        return {"config": asdict(cfg), "data_hash": data_hash, "heldout_hash": heldout_hash, "stage": stage,
                "state_dict": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                "complete": complete, "rng": rng[0], "rng_ranks": rng, "history": history,
                "num_threads": num_threads, "budget_stopped": stopped[stage]}

    def save(path: Path, ck: dict[str, Any]) -> None:
        if world.is_main:
            _save(path, ck)

    def restore(ck: dict[str, Any], model, opt) -> tuple[int, dict]:
        model.load_state_dict(ck["state_dict"])
        opt.load_state_dict(ck["optimizer"])
        ranks = ck.get("rng_ranks", [])
        _set_rng_state(ranks[world.rank] if len(ranks) == world.size else ck["rng"])
        stopped[ck["stage"]] = bool(ck.get("budget_stopped", False))
        return int(ck["epoch"]), ck["history"]

    vq_hist: dict[str, list] = {}
    mtm_hist: dict[str, list] = {}
    with cpu_threads(num_threads) if dev.type == "cpu" else nullcontext(), _progress(progress) as bars:
        deterministic(cfg.seed)
        # ---------------- stage 1
        vq_model = Tokenizer(cfg).to(dev)
        vq_opt = _optimizer(vq_model, cfg)
        start = 0
        loaded_vq = resume and vq_path.exists()
        if loaded_vq:
            ck = load_checkpoint(vq_path, dev)
            _check_resume(ck, vq_path, cfg, data_hash, heldout_hash)
            start, vq_hist = restore(ck, vq_model, vq_opt)
        elif world.is_main:
            mtm_path.unlink(missing_ok=True)  # a stale stage-2 checkpoint must not be resumed
        train_flat = _flat_patches(train, dev)
        held_flat = _flat_patches(heldout, dev)
        if not loaded_vq and cfg.epochs_vq > 0:
            sample = torch.randperm(train_flat["patches"].shape[0], device=dev)[:_KMEANS_SAMPLE]
            vq_model.eval()
            with torch.no_grad(), _autocast(dev):
                z = vq_model.encode(train_flat["patches"][sample])
            vq_model.vq.init_codebook(z)
        vq_train = _parallel(vq_model, dev, world)
        vq_eval: dict[str, float] | None = None
        for epoch in range(start, cfg.epochs_vq):
            if stopped["vq"]:
                break
            if not budget.take():
                return {**result, "complete": False, "history": {"vq": vq_hist, "mtm": {}},
                        "budget": budget_report(), "wall_time_s": time.perf_counter() - t_start}
            if not clock.fits("vq"):
                stopped["vq"] = True
                save(vq_path, base_ck("vq", vq_model, vq_opt, epoch, False, vq_hist))
                break
            t_epoch = time.perf_counter()
            n_steps = math.ceil(train_flat["patches"].shape[0] / cfg.batch_size)
            task = bars.add_task(f"vq  {epoch + 1}/{cfg.epochs_vq}", total=n_steps, loss="-", rate="")
            stats = _train_vq_epoch(vq_train, vq_opt, train_flat, cfg, epoch, dev, (bars, task), world)
            vq_eval = _eval_vq(vq_model, held_flat, dev, max(cfg.batch_size, 8192))
            clock.epochs["vq"].append(_elapsed(t_epoch, dev))
            _append(vq_hist, epoch, stats, {f"heldout_{k}": v for k, v in vq_eval.items()},
                    {"budget_left_s": clock.left("vq")} if clock.total else {})
            save(vq_path, base_ck("vq", vq_model, vq_opt, epoch + 1, epoch + 1 == cfg.epochs_vq, vq_hist))
        if cfg.epochs_vq == 0 and not loaded_vq:
            save(vq_path, base_ck("vq", vq_model, vq_opt, 0, True, vq_hist))
        if vq_eval is None:
            vq_eval = _eval_vq(vq_model, held_flat, dev, max(cfg.batch_size, 8192))
        del train_flat, held_flat, vq_train
        result.update(vq_eval)

        # ---------------- stage 2
        vq_model.eval()
        for p in vq_model.parameters():
            p.requires_grad_(False)
        train_codes = compute_codes(vq_model, train, dev)
        held_codes = compute_codes(vq_model, heldout, dev)
        freq = np.bincount(np.concatenate([c.ravel() for c in train_codes]), minlength=cfg.codebook_size)
        most_frequent = int(freq.argmax())
        torch.manual_seed(cfg.seed + 1)
        mtm = MaskedTokenModel(cfg).to(dev)
        mtm_opt = _optimizer(mtm, cfg)
        start = 0
        loaded_mtm = loaded_vq and mtm_path.exists()  # without a resumed vq.pt, mtm.pt was removed
        if loaded_mtm:
            ck = load_checkpoint(mtm_path, dev)
            _check_resume(ck, mtm_path, cfg, data_hash, heldout_hash)
            start, mtm_hist = restore(ck, mtm, mtm_opt)
        mtm_train = _parallel(mtm, dev, world)
        mtm_eval: dict[str, float] | None = None

        def mtm_ck(epoch: int) -> dict[str, Any]:
            ck = base_ck("mtm", mtm, mtm_opt, epoch, epoch == cfg.epochs_mtm, mtm_hist)
            ck["most_frequent_code"] = most_frequent
            return ck

        for epoch in range(start, cfg.epochs_mtm):
            if stopped["mtm"]:
                break
            if not budget.take():
                return {**result, "complete": False, "history": {"vq": vq_hist, "mtm": mtm_hist},
                        "budget": budget_report(), "wall_time_s": time.perf_counter() - t_start}
            if not clock.fits("mtm"):
                stopped["mtm"] = True
                save(mtm_path, mtm_ck(epoch))
                break
            t_epoch = time.perf_counter()
            task = bars.add_task(f"mtm {epoch + 1}/{cfg.epochs_mtm}", total=None, loss="-", rate="")
            stats = _train_mtm_epoch(mtm_train, mtm_opt, train, train_codes, cfg, epoch, dev, (bars, task), world)
            mtm_eval = _eval_mtm(mtm, heldout, held_codes, cfg, dev, most_frequent)
            clock.epochs["mtm"].append(_elapsed(t_epoch, dev))
            _append(mtm_hist, epoch, stats, {f"heldout_{k}": v for k, v in mtm_eval.items()},
                    {"budget_left_s": clock.left("mtm")} if clock.total else {})
            save(mtm_path, mtm_ck(epoch + 1))
        if not loaded_mtm and cfg.epochs_mtm == 0:
            save(mtm_path, mtm_ck(start))
        if mtm_eval is None:
            mtm_eval = _eval_mtm(mtm, heldout, held_codes, cfg, dev, most_frequent)
        result.update(mtm_eval)
    fingerprint = weights_fingerprint([vq_model.state_dict(), mtm.state_dict()])
    if len(set(world.gather(fingerprint))) > 1:
        raise RuntimeError(
            "pretrain: data-parallel ranks ended with different weights. Fix: this is a bug in "
            "aemg.model's DDP path; train with one process (no torchrun) meanwhile."
        )
    result.update({"most_frequent_code": most_frequent, "complete": True, "weights_sha256": fingerprint,
                   "history": {"vq": vq_hist, "mtm": mtm_hist}, "budget": budget_report(),
                   "wall_time_s": time.perf_counter() - t_start})
    return result


def load_model(out_dir: str | Path, device: str | None = None) -> tuple[Tokenizer, MaskedTokenModel, ModelConfig]:
    """(stage-1 tokenizer, stage-2 masked-token model, config) from out_dir, in eval mode."""
    dev = resolve_device(device)
    out_dir = Path(out_dir)
    vq_ck = load_checkpoint(out_dir / VQ_FILE, dev)
    mtm_ck = load_checkpoint(out_dir / MTM_FILE, dev)
    cfg = ModelConfig.from_dict(vq_ck["config"])
    if mtm_ck["config"] != vq_ck["config"] or mtm_ck["data_hash"] != vq_ck["data_hash"]:
        raise ModelConfigError(
            f"{out_dir}: {VQ_FILE} and {MTM_FILE} come from different runs. Fix: re-run pretrain."
        )
    vq_model = Tokenizer(cfg).to(dev)
    vq_model.load_state_dict(vq_ck["state_dict"])
    mtm = MaskedTokenModel(cfg).to(dev)
    mtm.load_state_dict(mtm_ck["state_dict"])
    vq_model.eval()
    mtm.eval()
    return vq_model, mtm, cfg


@torch.no_grad()
def embed_tokens(
    out_dir_or_models: str | Path | MaskedTokenModel | tuple,
    tokenset: TokenSet,
    device: str | None = None,
    batch_size: int | None = None,
    pool: str = "mean",
) -> np.ndarray:
    """Per-event embeddings float32, in the TokenSet's event order: (n_events, width) with
    ``pool="mean"``, (n_events, n_chans * width) with ``pool="channels"`` (channel-major).

    ``out_dir_or_models``: a pretrain out_dir, a ``load_model`` tuple, or a MaskedTokenModel.
    """
    channels = pool_channels(pool, tokenset.n_chans)
    if isinstance(out_dir_or_models, (str, Path)):
        _, mtm, cfg = load_model(out_dir_or_models, device)
    elif isinstance(out_dir_or_models, tuple):
        mtm, cfg = out_dir_or_models[1], out_dir_or_models[2]
    elif isinstance(out_dir_or_models, MaskedTokenModel):
        mtm, cfg = out_dir_or_models, out_dir_or_models.cfg
    else:
        raise TypeError(
            f"embed_tokens: expected an out_dir, a load_model() tuple or a MaskedTokenModel, "
            f"got {type(out_dir_or_models).__name__}"
        )
    dev = next(mtm.parameters()).device
    if tokenset.n_times != cfg.n_times:
        raise ModelConfigError(
            f"{tokenset.dataset}: tokens have n_times={tokenset.n_times}, model expects {cfg.n_times}."
        )
    was_training = mtm.training
    mtm.eval()
    n_features = cfg.width * (channels or 1)
    out = np.zeros((tokenset.n_events, n_features), np.float32)
    for batch in sentence_batches(tokenset, cfg.max_patches, batch_size or max(cfg.batch_size, 4096)):
        tb = batch.to(dev)
        with _autocast(dev):
            emb = mtm.embed(tb, channels).float().cpu().numpy()
        idx = batch.event_index
        out[idx[idx >= 0]] = emb[idx >= 0]
    mtm.train(was_training)
    return out


__all__ = ["compute_codes", "embed_tokens", "load_checkpoint", "load_model", "pretrain", "resolve_device"]
