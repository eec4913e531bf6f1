"""Token arrays handed to the model, their content hash, and sentence batching.

The caller reads the token store and builds one :class:`TokenSet` per dataset (or per split);
this module never touches the store. A *patch* is one (event, channel) pair: a length-``n_times``
vector. Stage 1 works on single patches; stage 2 sees a sentence as the sequence of its
patches, event-major (event 0 channel 0, event 0 channel 1, ...).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

import numpy as np
import torch

from aemg.model.config import ModelConfigError

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


@dataclass
class TokenSet:
    """Contraction-event tokens of one dataset (or one split of it).

    tokens: float32 (n_events, n_chans, n_times), divided per subject by a channel RMS when read
      (the store keeps them unscaled; :func:`aemg.model.store_io.load_tokenset` scales by each
      subject's own rows, evaluation per fold).
    positions: float32 (n_chans, 3) = (cos angle, sin angle, distance along the forearm 0..1).
    sentence: int64 (n_events,) sentence (contraction) id; events of a sentence need not be
      contiguous.
    order: int64 (n_events,) order of the event in its sentence (0..14 in AEMG).
    onset: float32 (n_events,) seconds since the start of the sentence.
    subject: str (n_events,) subject id (splits must be by subject).
    dataset: dataset id.
    """

    tokens: np.ndarray
    positions: np.ndarray
    sentence: np.ndarray
    order: np.ndarray
    onset: np.ndarray
    subject: np.ndarray
    dataset: str
    _chunks: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.tokens = np.ascontiguousarray(self.tokens, dtype=np.float32)
        self.positions = np.ascontiguousarray(self.positions, dtype=np.float32)
        self.sentence = np.ascontiguousarray(self.sentence, dtype=np.int64)
        self.order = np.ascontiguousarray(self.order, dtype=np.int64)
        self.onset = np.ascontiguousarray(self.onset, dtype=np.float32)
        self.subject = np.asarray(self.subject).astype(str)
        if self.tokens.ndim != 3:
            raise ValueError(
                f"{self.dataset}: tokens must be (n_events, n_chans, n_times), got shape {self.tokens.shape}"
            )
        n_events, n_chans, _ = self.tokens.shape
        if self.positions.shape != (n_chans, 3):
            raise ValueError(
                f"{self.dataset}: positions must be (n_chans, 3) = ({n_chans}, 3), got {self.positions.shape}"
            )
        for name in ("sentence", "order", "onset", "subject"):
            arr = getattr(self, name)
            if arr.shape != (n_events,):
                raise ValueError(f"{self.dataset}: {name} must have shape ({n_events},), got {arr.shape}")
        if n_events and self.order.min() < 0:
            raise ValueError(f"{self.dataset}: order must be >= 0, got min {self.order.min()}")
        if not np.isfinite(self.tokens).all():
            raise ValueError(f"{self.dataset}: tokens contain NaN or inf")

    @property
    def n_events(self) -> int:
        return self.tokens.shape[0]

    @property
    def n_chans(self) -> int:
        return self.tokens.shape[1]

    @property
    def n_times(self) -> int:
        return self.tokens.shape[2]

    def select(self, index: np.ndarray) -> TokenSet:
        """A new TokenSet with the events picked by a boolean mask or an index array."""
        return TokenSet(
            tokens=self.tokens[index], positions=self.positions, sentence=self.sentence[index],
            order=self.order[index], onset=self.onset[index], subject=self.subject[index],
            dataset=self.dataset,
        )

    def chunks(self, max_patches: int = 256) -> list[np.ndarray]:
        """Event indices of each sequence (see :func:`sentence_chunks`), cached per max_patches."""
        if max_patches not in self._chunks:
            self._chunks[max_patches] = sentence_chunks(self, max_patches)
        return self._chunks[max_patches]


def content_hash(token_sets: Sequence[TokenSet]) -> str:
    """sha256 over every array (shape, dtype and bytes) and name of the token sets, in order."""
    h = hashlib.sha256()
    for ts in token_sets:
        h.update(b"dataset\0" + ts.dataset.encode() + b"\0")
        for name in ("tokens", "positions", "sentence", "order", "onset"):
            arr = np.ascontiguousarray(getattr(ts, name))
            h.update(f"{name}:{arr.dtype.str}:{arr.shape}\0".encode())
            h.update(arr.tobytes())
        h.update(b"subject\0" + "\x1f".join(ts.subject.tolist()).encode() + b"\0")
    return h.hexdigest()


def sentence_chunks(ts: TokenSet, max_patches: int = 256) -> list[np.ndarray]:
    """Group events into sentences ordered by ``order`` and cut them to <= max_patches patches.

    Each returned array holds event indices of one sequence; every event appears exactly once.
    A sequence has at most ``max(1, max_patches // n_chans)`` events.
    """
    if ts.n_chans > max_patches:
        raise ModelConfigError(
            f"{ts.dataset}: one event has n_chans={ts.n_chans} patches, more than "
            f"max_patches={max_patches}. Fix: raise max_patches to at least {ts.n_chans}."
        )
    if ts.n_events == 0:
        return []
    per_seq = max(1, max_patches // ts.n_chans)
    idx = np.lexsort((np.arange(ts.n_events), ts.order, ts.sentence))
    sent = ts.sentence[idx]
    bounds = np.flatnonzero(np.diff(sent)) + 1
    out: list[np.ndarray] = []
    for group in np.split(idx, bounds):
        for start in range(0, len(group), per_seq):
            out.append(group[start:start + per_seq])
    return out


@dataclass
class SentenceBatch:
    """Padded batch of patch sequences. L = longest sequence in patches, E = most events.

    patches (B, L, T) float32; positions (B, L, 3) float32; channel (B, L) int64;
    onset (B, L) float32; order (B, L) int64; event (B, L) int64 index of the patch's event
    within its sequence (-1 on padding); padding (B, L) bool, True where padded;
    codes (B, L) int64 stage-1 code of each patch (-1 on padding) or None;
    event_index (B, E) int64 event index in its TokenSet (-1 on padding);
    set_index (B,) int64 which TokenSet each sequence comes from.
    """

    patches: np.ndarray | torch.Tensor
    positions: np.ndarray | torch.Tensor
    channel: np.ndarray | torch.Tensor
    onset: np.ndarray | torch.Tensor
    order: np.ndarray | torch.Tensor
    event: np.ndarray | torch.Tensor
    padding: np.ndarray | torch.Tensor
    event_index: np.ndarray | torch.Tensor
    set_index: np.ndarray | torch.Tensor
    codes: np.ndarray | torch.Tensor | None = None

    _FIELDS = ("patches", "positions", "channel", "onset", "order", "event", "padding",
               "event_index", "set_index", "codes")

    @property
    def n_patches(self) -> int:
        """Number of real (non-padding) patches."""
        return int((~self.padding).sum())

    def to(self, device: str | torch.device) -> SentenceBatch:
        """Torch tensors on ``device`` (from numpy without copy where possible)."""
        out = {}
        for name in self._FIELDS:
            v = getattr(self, name)
            if v is None:
                out[name] = None
            else:
                t = torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                out[name] = t.to(device, non_blocking=True)
        return SentenceBatch(**out)


def collate_sentences(
    token_sets: Sequence[TokenSet],
    items: Sequence[tuple[int, np.ndarray]],
    codes: Sequence[np.ndarray] | None = None,
    pad_to: int | None = None,
) -> SentenceBatch:
    """Pad a list of ``(set_index, event_indices)`` sequences into a :class:`SentenceBatch`.

    ``codes[s]`` is an int array (n_events, n_chans) of stage-1 codes for token set ``s``.
    ``pad_to`` forces a minimum padded length L (padding must not change any output).
    """
    lengths = [len(ev) * token_sets[s].n_chans for s, ev in items]
    L = max([*lengths, pad_to or 0])
    E = max(len(ev) for _, ev in items)
    B = len(items)
    T = token_sets[items[0][0]].n_times
    patches = np.zeros((B, L, T), np.float32)
    positions = np.zeros((B, L, 3), np.float32)
    channel = np.zeros((B, L), np.int64)
    onset = np.zeros((B, L), np.float32)
    order = np.zeros((B, L), np.int64)
    event = np.full((B, L), -1, np.int64)
    padding = np.ones((B, L), bool)
    event_index = np.full((B, E), -1, np.int64)
    set_index = np.zeros(B, np.int64)
    out_codes = np.full((B, L), -1, np.int64) if codes is not None else None
    for b, (s, ev) in enumerate(items):
        ts = token_sets[s]
        if ts.n_times != T:
            raise ValueError(f"{ts.dataset}: n_times={ts.n_times} differs from {T} in the same batch")
        n_e, C = len(ev), ts.n_chans
        n = n_e * C
        patches[b, :n] = ts.tokens[ev].reshape(n, T)
        positions[b, :n] = np.tile(ts.positions, (n_e, 1))
        channel[b, :n] = np.tile(np.arange(C), n_e)
        onset[b, :n] = np.repeat(ts.onset[ev], C)
        order[b, :n] = np.repeat(ts.order[ev], C)
        event[b, :n] = np.repeat(np.arange(n_e), C)
        padding[b, :n] = False
        event_index[b, :n_e] = ev
        set_index[b] = s
        if out_codes is not None:
            out_codes[b, :n] = codes[s][ev].reshape(n)
    return SentenceBatch(patches, positions, channel, onset, order, event, padding,
                         event_index, set_index, out_codes)


def rotation_angles(n: int, max_deg: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` angles in degrees drawn from U(-max_deg, max_deg) (zeros when ``max_deg`` is 0,
    without touching ``rng``)."""
    if not max_deg:
        return np.zeros(n)
    return rng.uniform(-max_deg, max_deg, n)


def rotate_positions(positions: ArrayT, delta_deg: np.ndarray | torch.Tensor) -> ArrayT:
    """Electrode positions ``(..., 3)`` = (cos, sin, distance) turned by ``delta_deg`` about the
    limb axis; ``delta_deg`` broadcasts against ``positions[..., 0]``.

    Circumferential arrays are worn rotated from person to person: turning every electrode of
    a sentence by one angle simulates that. The distance is kept, and a channel of unknown
    position ((0, 0) in the angle columns) stays unknown.
    """
    if isinstance(positions, torch.Tensor):
        rad = torch.deg2rad(torch.as_tensor(delta_deg, dtype=torch.float64, device=positions.device))
        c, s = torch.cos(rad).to(positions.dtype), torch.sin(rad).to(positions.dtype)
    else:
        rad = np.deg2rad(np.asarray(delta_deg, dtype=np.float64))
        c, s = np.cos(rad).astype(positions.dtype), np.sin(rad).astype(positions.dtype)
    x, y = positions[..., 0], positions[..., 1]
    out = positions * 1  # a copy of the same type
    out[..., 0] = x * c - y * s
    out[..., 1] = x * s + y * c
    return out


def rotate_batch(batch: SentenceBatch, delta_deg: np.ndarray) -> SentenceBatch:
    """``batch`` with every patch of sequence ``b`` turned by ``delta_deg[b]`` degrees (see
    :func:`rotate_positions`); training-time augmentation only, signal untouched."""
    return replace(batch, positions=rotate_positions(batch.positions, np.asarray(delta_deg)[:, None]))


def plan_sentence_batches(
    token_sets: Sequence[TokenSet],
    max_patches: int = 256,
    batch_size: int = 2048,
    rng: np.random.Generator | None = None,
) -> list[list[tuple[int, np.ndarray]]]:
    """Pack sequences into batches of ``(set_index, event_indices)`` items (see
    :func:`sentence_batches`)."""
    items = [(s, ev) for s, ts in enumerate(token_sets) for ev in ts.chunks(max_patches)]
    if not items:
        return []
    lengths = np.array([len(ev) * token_sets[s].n_chans for s, ev in items])
    if rng is not None:
        perm = rng.permutation(len(items))
        window = max(1, 64 * max(1, batch_size // max(1, int(lengths.mean()))))
        order: list[int] = []
        for start in range(0, len(perm), window):
            w = perm[start:start + window]
            order.extend(w[np.argsort(-lengths[w], kind="stable")].tolist())
    else:
        order = list(range(len(items)))
    batches: list[list[int]] = []
    cur: list[int] = []
    cur_max = 0
    for i in order:
        new_max = max(cur_max, int(lengths[i]))
        if cur and new_max * (len(cur) + 1) > batch_size:
            batches.append(cur)
            cur, new_max = [], int(lengths[i])
        cur.append(i)
        cur_max = new_max
    if cur:
        batches.append(cur)
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return [[items[i] for i in b] for b in batches]


def sentence_batches(
    token_sets: TokenSet | Sequence[TokenSet],
    max_patches: int = 256,
    batch_size: int = 2048,
    codes: Sequence[np.ndarray] | None = None,
    rng: np.random.Generator | None = None,
) -> Iterator[SentenceBatch]:
    """Yield padded sentence batches over one or more TokenSets.

    Sentences are cut into sequences of <= ``max_patches`` patches (:func:`sentence_chunks`)
    and packed so that ``n_sequences * longest_sequence <= batch_size`` patches (at least one
    sequence per batch). Without ``rng`` the order is deterministic (dataset, sentence); with
    it, sequences are shuffled, bucketed by length inside windows of the shuffled order (to
    keep padding small) and the batches shuffled again.
    """
    if isinstance(token_sets, TokenSet):
        token_sets = [token_sets]
    for items in plan_sentence_batches(token_sets, max_patches, batch_size, rng):
        yield collate_sentences(token_sets, items, codes=codes)
