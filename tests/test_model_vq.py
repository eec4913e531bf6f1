"""Stage-1 quantizer and tokenizer: gradient path, eval-mode lookup, EMA, restarts, stats."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from aemg.model import ModelConfig, Tokenizer, VectorQuantizer, codebook_stats

TINY = ModelConfig(width=32, depth=2, heads=2, conv_channels=8, codebook_size=16, code_dim=8, n_times=50)


def _patch_inputs(n: int = 64, n_times: int = 50, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_times, generator=g)
    ang = torch.rand(n, generator=g) * 2 * math.pi
    pos = torch.stack([ang.cos(), ang.sin(), torch.rand(n, generator=g)], dim=1)
    chan = torch.randint(0, 8, (n,), generator=g)
    onset = torch.rand(n, generator=g) * 3
    order = torch.randint(0, 20, (n,), generator=g)
    return x, pos, chan, onset, order


def test_reconstruction_gradient_reaches_encoder_through_quantizer():
    torch.manual_seed(0)
    model = Tokenizer(TINY).train()
    out = model(*_patch_inputs())
    out.recon_loss.backward()  # reconstruction only: no commitment term
    for name, p in [("conv1", model.embed.conv1.weight), ("enc_out", model.encoder[-1].weight)]:
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_spectral_target_trains():
    torch.manual_seed(0)
    model = Tokenizer(ModelConfig(**{**TINY.to_dict(), "spectral_target": True})).train()
    out = model(*_patch_inputs())
    assert out.spectral_loss > 0
    out.loss.backward()
    assert model.embed.conv1.weight.grad.abs().sum() > 0


def test_eval_quantized_equals_codebook_lookup():
    torch.manual_seed(0)
    vq = VectorQuantizer(16, 8, decay=0.9)
    vq.train()
    vq(torch.randn(256, 8))  # k-means init + one EMA step
    vq.eval()
    z = torch.randn(3, 40, 8)
    q, idx, loss = vq(z)
    assert q.shape == z.shape and idx.shape == z.shape[:-1]
    assert torch.equal(q, vq.codebook[idx])
    assert torch.equal(q, vq.lookup(idx))
    assert torch.isfinite(loss)
    # nearest code by cosine similarity
    sims = F.normalize(z, dim=-1) @ vq.codebook.T
    assert torch.equal(idx, sims.argmax(dim=-1))


def test_train_mode_straight_through_and_normalised_codes():
    torch.manual_seed(0)
    vq = VectorQuantizer(16, 8, decay=0.9).train()
    z = torch.randn(128, 8, requires_grad=True)
    q, _, _ = vq(z)
    assert bool(vq.initted)
    q.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    torch.testing.assert_close(vq.codebook.norm(dim=-1), torch.ones(16))


def test_kmeans_init_finds_clusters():
    torch.manual_seed(0)
    centres = F.normalize(torch.randn(4, 8), dim=-1)
    z = (centres.repeat_interleave(64, 0) + 0.01 * torch.randn(256, 8))
    vq = VectorQuantizer(4, 8).train()
    vq.init_codebook(z)
    sims = vq.codebook @ centres.T
    assert (sims.max(dim=0).values > 0.99).all()  # every true centre has a code


def test_dead_codes_are_restarted_from_batch():
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 4, decay=0.5, dead_code_threshold=2).train()
    vq.init_codebook(torch.randn(64, 4))
    # a batch that all maps to one direction leaves the other codes unused
    z = F.normalize(torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(32, 1) + 0.01 * torch.randn(32, 4), dim=-1)
    before = vq.codebook.clone()
    for _ in range(3):
        vq(z)
    changed = ~torch.isclose(before, vq.codebook).all(dim=1)
    assert changed.sum() >= 6
    # restarted codes are batch vectors: all now point along the first axis
    assert (vq.codebook[changed][:, 0] > 0.95).all()
    assert int(vq.unused_steps.max()) < 2


def test_usage_and_perplexity():
    usage, ppl = codebook_stats(torch.tensor([0, 0, 1, 1]), 4)
    assert usage == 0.5 and ppl == pytest.approx(2.0)
    vq = VectorQuantizer(8, 4).eval()
    vq(torch.randn(100, 4))
    assert 0 < vq.usage_fraction() <= 1 and 1 <= vq.perplexity() <= 8
    vq.reset_usage()
    assert vq.usage_fraction() == 0.0
