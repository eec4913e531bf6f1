"""The model sees how strong a patch is, and a probe can see on which electrode.

Both exist because a scale-blind, mean-pooled embedding scored 0.48 LOSO accuracy on Myo where
LDA on amplitude features scored 0.89: the spatial amplitude pattern is what tells gestures apart.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aemg.model import MaskedTokenModel, ModelConfig, collate_sentences, embed_tokens, make_synthetic_tokenset
from aemg.model.layers import PatchEmbed
from aemg.model.mtm import pool_events

TINY = ModelConfig(width=32, depth=1, heads=2, conv_channels=8, codebook_size=32, code_dim=16)


@pytest.mark.parametrize("amplitude", [True, False])
def test_patch_embedding_sees_scale_only_with_the_amplitude_embedding(amplitude):
    torch.manual_seed(0)
    embed = PatchEmbed(50, 8, 32, amplitude=amplitude).eval()
    with torch.no_grad():  # without conv biases the GroupNorm'd front-end is exactly scale-blind
        embed.conv1.bias.zero_()
        embed.conv2.bias.zero_()
    x = torch.randn(6, 50)
    with torch.no_grad():
        diff = (embed(3.0 * x) - embed(x)).abs().max().item()
    if amplitude:
        assert diff > 1e-2
    else:
        assert diff < 1e-4


def test_flat_patch_embeds_to_finite_values():
    embed = PatchEmbed(50, 8, 32).eval()
    with torch.no_grad():
        assert torch.isfinite(embed(torch.zeros(2, 50))).all()


@pytest.fixture(scope="module")
def model_and_batch():
    torch.manual_seed(0)
    ts = make_synthetic_tokenset(n_events=60, n_chans=4, n_subjects=1, seed=3)
    model = MaskedTokenModel(TINY).eval()
    chunks = ts.chunks(TINY.max_patches)
    batch = collate_sentences([ts], [(0, c) for c in chunks[:3]]).to("cpu")
    return ts, model, batch


def test_channel_pooling_keeps_each_channel_and_mean_pooling_averages_them(model_and_batch):
    ts, model, batch = model_and_batch
    with torch.no_grad():
        h = model.encode(batch).float()
    per_channel = pool_events(h, batch, ts.n_chans)
    mean = pool_events(h, batch)
    B, E = batch.event_index.shape
    assert per_channel.shape == (B, E, ts.n_chans * TINY.width)
    b, slot = 1, 2  # an event of the second sequence
    for c in range(ts.n_chans):
        where = (batch.event[b] == slot) & (batch.channel[b] == c) & ~batch.padding[b]
        assert where.sum() == 1
        torch.testing.assert_close(per_channel[b, slot, c * TINY.width:(c + 1) * TINY.width], h[b][where][0])
    torch.testing.assert_close(mean[b, slot], per_channel[b, slot].view(ts.n_chans, -1).mean(0))
    padded_events = batch.event_index < 0
    assert (per_channel[padded_events] == 0).all()


def test_embed_tokens_channel_pool_is_in_tokenset_order(model_and_batch):
    ts, model, _ = model_and_batch
    full = embed_tokens(model, ts, pool="channels")
    assert full.shape == (ts.n_events, ts.n_chans * TINY.width)
    # the events of one whole sentence, embedded on their own, get the same rows
    idx = np.flatnonzero(ts.sentence == ts.sentence[7])
    assert len(idx) > 1
    part = embed_tokens(model, ts.select(idx), pool="channels")
    np.testing.assert_allclose(part, full[idx], atol=1e-5)
    with pytest.raises(ValueError, match="pool='max'"):
        embed_tokens(model, ts, pool="max")
