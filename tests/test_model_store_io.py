"""Token store -> model input: subject-disjoint splits and sentence-preserving subsampling."""

from __future__ import annotations

import numpy as np

from aemg.model.data import TokenSet
from aemg.model.store_io import limit_patches, split_by_subject
from aemg.scaling import scale_by_own_subject
from aemg.store import publish_group


def tokenset(n_sentences: int = 40, per_sentence: int = 3, n_chans: int = 8) -> TokenSet:
    n = n_sentences * per_sentence
    rng = np.random.default_rng(0)
    return TokenSet(
        tokens=rng.standard_normal((n, n_chans, 50)).astype(np.float32),
        positions=np.zeros((n_chans, 3), np.float32),
        sentence=np.repeat(np.arange(n_sentences), per_sentence),
        order=np.tile(np.arange(per_sentence), n_sentences),
        onset=np.tile(np.arange(per_sentence) * 0.25, n_sentences).astype(np.float32),
        subject=np.repeat([f"s{i}" for i in range(10)], n // 10),
        dataset="synthetic",
    )


def test_split_by_subject_is_disjoint_and_complete():
    ts = tokenset()
    train, heldout = split_by_subject(ts, 0.2, seed=1)
    assert set(train.subject) & set(heldout.subject) == set()
    assert len(set(heldout.subject)) == 2 and len(train.tokens) + len(heldout.tokens) == len(ts.tokens)


def test_limit_patches_keeps_whole_sentences_within_budget():
    ts = tokenset()
    small = limit_patches(ts, max_patches=10 * 3 * 8, seed=0)
    assert small.tokens.shape[0] * 8 <= 10 * 3 * 8
    _, counts = np.unique(small.sentence, return_counts=True)
    assert np.all(counts == 3)  # no sentence cut in half
    assert limit_patches(ts, max_patches=10**9, seed=0) is ts


def _write_events(store, ts: TokenSet, chunk: int = 16) -> None:
    """A token-store events group holding ``ts``, chunked along ``event``."""
    import xarray as xr

    n_chans = ts.n_chans
    ds = xr.Dataset(
        {
            "token": (("event", "channel", "time"), ts.tokens),
            "sentence": ("event", ts.sentence),
            "order": ("event", ts.order),
            "time_in_sentence_s": ("event", ts.onset),
            "subject": ("event", ts.subject.astype(object)),
        },
        coords={"angle_deg": ("channel", np.linspace(0, 315, n_chans)), "distance": ("channel", np.zeros(n_chans))},
    )
    publish_group(store, ts.dataset, xr.DataTree.from_dict({"events": ds}),
                  encoding={"/events": {"token": {"chunks": (chunk, n_chans, ts.n_times)}}})


def test_pretraining_reads_only_its_rows_and_picks_what_the_in_memory_split_picks(tmp_path, monkeypatch):
    from aemg.model import store_io

    ts = tokenset(n_sentences=60)
    store = tmp_path / "tokens.zarr"
    _write_events(store, ts)
    budget = 12 * 3 * 8
    train, held = store_io.pretraining_sets(store, "synthetic", 0.2, budget, seed=3)
    mem_train, mem_held = split_by_subject(ts, 0.2, seed=3)
    mem_train, mem_held = limit_patches(mem_train, budget, 3), limit_patches(mem_held, budget // 4, 3)
    for got, want in ((train, mem_train), (held, mem_held)):
        # the same rows, each subject scaled by its own rows' channel RMS on reading
        np.testing.assert_array_equal(got.tokens, scale_by_own_subject(want.tokens, want.subject))
        np.testing.assert_array_equal(got.sentence, want.sentence)
        assert got.subject.tolist() == want.subject.tolist()
    # the token array is read through row selection, never whole
    import xarray as xr

    whole_reads = []
    real_values = xr.DataArray.values

    def spy(self):
        if self.name == "token" and self.sizes.get("event") == ts.n_events:
            whole_reads.append(True)
        return real_values.fget(self)

    monkeypatch.setattr(xr.DataArray, "values", property(spy))
    store_io.pretraining_sets(store, "synthetic", 0.2, budget, seed=3)
    assert whole_reads == [] and train.n_events * 8 <= budget
    store_io.load_tokenset(store, "synthetic")  # the spy sees a whole read when there is one
    assert whole_reads == [True]
