"""Trials = labelled contraction-event tokens; every method sees exactly the same ones.

Besides the token samples and labels, a trial keeps what the event-token Transformers need
(sentence, order, onset, electrode positions) and a chronological rank, so that few-shot
subsets can be drawn from a subject's *earliest* repetitions.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from aemg.errors import AemgError
from aemg.store import StoreLike, has_group, open_events, open_group


@dataclass
class Trials:
    dataset: str
    tokens: np.ndarray  # float32 (n, n_chans, T)
    gesture: np.ndarray  # int16 (n,)
    subject: np.ndarray  # str (n,)
    event_index: np.ndarray  # row in the token store's events table
    sentence: np.ndarray | None = None  # int64 (n,) sentence id (None: one sentence per trial)
    contraction: np.ndarray | None = None  # int64 (n,) detected contraction the trial was cut from (None: own)
    order: np.ndarray | None = None  # int64 (n,) order of the event in its sentence
    onset: np.ndarray | None = None  # float32 (n,) seconds since the sentence start
    recording: np.ndarray | None = None  # int64 (n,) recording index in the harmonized store
    start: np.ndarray | None = None  # int64 (n,) first sample in the recording
    chrono: np.ndarray | None = None  # int64 (n,) chronological rank within the dataset
    session: np.ndarray | None = None  # str (n,) recording session (None: one session "")
    positions: np.ndarray | None = None  # float32 (n_chans, 3): cos angle, sin angle, distance
    sfreq: float = 200.0
    channel_names: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)  # how the token store made the tokens (detector, floor, units)

    def __post_init__(self) -> None:
        n = len(self.gesture)
        self.subject = np.asarray(self.subject).astype(str)
        if self.tokens.shape[0] != n or self.subject.shape != (n,) or len(self.event_index) != n:
            raise ValueError(
                f"{self.dataset}: trial arrays disagree: tokens {self.tokens.shape}, gesture {n}, "
                f"subject {self.subject.shape}, event_index {len(self.event_index)}"
            )
        if self.sentence is None:
            self.sentence = np.arange(n, dtype=np.int64)
        if self.contraction is None:
            self.contraction = np.arange(n, dtype=np.int64)
        if self.order is None:
            self.order = np.zeros(n, np.int64)
        if self.onset is None:
            self.onset = np.zeros(n, np.float32)
        if self.recording is None:
            self.recording = np.zeros(n, np.int64)
        if self.start is None:
            self.start = np.arange(n, dtype=np.int64)
        if self.chrono is None:
            self.chrono = np.arange(n, dtype=np.int64)
        self.session = np.full(n, "") if self.session is None else np.asarray(self.session).astype(str)
        if self.positions is None:
            self.positions = np.zeros((self.n_chans, 3), np.float32)
        if not self.channel_names:
            self.channel_names = [f"ch{i}" for i in range(self.n_chans)]

    @property
    def subjects(self) -> list[str]:
        return sorted(set(self.subject.tolist()))

    @property
    def n_chans(self) -> int:
        return int(self.tokens.shape[1])

    @property
    def classes(self) -> np.ndarray:
        return np.unique(self.gesture)

    def __len__(self) -> int:
        return len(self.gesture)

    def with_tokens(self, tokens: np.ndarray) -> Trials:
        """The same trials with other token values (e.g. scaled for one fold)."""
        if tokens.shape != self.tokens.shape:
            raise ValueError(f"{self.dataset}: tokens {tokens.shape} do not match the trials {self.tokens.shape}")
        return replace(self, tokens=tokens)

    def select(self, rows: np.ndarray) -> Trials:
        """The trials at ``rows`` (every per-trial array cut alike)."""
        rows = np.asarray(rows)
        per_trial = {f.name: getattr(self, f.name)[rows] for f in fields(self)
                     if isinstance(getattr(self, f.name), np.ndarray) and f.name != "positions"}
        return replace(self, **per_trial)

    def tokenset(self, index: np.ndarray | None = None):
        """The trials (or rows ``index``) as the model's :class:`~aemg.model.TokenSet`."""
        from aemg.model.data import TokenSet

        rows = slice(None) if index is None else np.asarray(index)
        return TokenSet(
            tokens=self.tokens[rows], positions=self.positions, sentence=self.sentence[rows],
            order=self.order[rows], onset=self.onset[rows], subject=self.subject[rows], dataset=self.dataset,
        )


def _recording_columns(harmonized: StoreLike | None, dataset: str) -> dict[str, np.ndarray]:
    """``repetition`` and ``session`` per recording from the harmonized store, where it has them."""
    if harmonized is None or not has_group(harmonized, dataset):
        return {}
    ds = open_group(harmonized, dataset)
    out = {}
    if "repetition" in ds:
        out["repetition"] = np.asarray(ds["repetition"].values, dtype=np.int64)
    if "session" in ds:
        out["session"] = np.asarray(ds["session"].values.tolist(), dtype=object).astype(str)
    return out


def chronological_rank(recording: np.ndarray, start: np.ndarray, repetition: np.ndarray | None = None) -> np.ndarray:
    """Rank of each event in recording order: (repetition of its recording, recording, start).

    Recordings of one subject are stored in file-name order, which is not always the order of
    acquisition (Myo: ``classe_10`` sorts before ``classe_2``); the harmonized ``repetition``
    restores it where the reader knows it.
    """
    rep = np.zeros(len(recording), np.int64) if repetition is None else repetition[recording]
    keys = np.lexsort((start, recording, rep))
    rank = np.empty(len(recording), np.int64)
    rank[keys] = np.arange(len(recording))
    return rank


def load_trials(tokens_store: StoreLike, dataset: str, harmonized: StoreLike | None = None) -> Trials:
    """Labelled events of one dataset (unlabelled ones, gesture -1, are not trials)."""
    events = open_events(tokens_store, dataset)
    gesture = events["gesture"].values
    keep = np.flatnonzero(gesture >= 0)
    recording = events["recording"].values.astype(np.int64)[keep]
    start = events["start"].values.astype(np.int64)[keep]
    if "contraction" not in events:
        raise AemgError(f"{dataset}: the token store {tokens_store} predates contraction ids (few-shot splits need them); "
                        f"run `aemg tokenize {dataset}` again")
    per_recording = _recording_columns(harmonized, dataset)
    from aemg.model.store_io import electrode_positions

    return Trials(
        dataset=dataset,
        tokens=events["token"].values[keep],
        gesture=gesture[keep],
        subject=events["subject"].values.astype(object)[keep].astype(str),
        event_index=keep,
        sentence=events["sentence"].values.astype(np.int64)[keep],
        order=events["order"].values.astype(np.int64)[keep],
        onset=events["time_in_sentence_s"].values.astype(np.float32)[keep],
        recording=recording,
        start=start,
        contraction=events["contraction"].values.astype(np.int64)[keep],
        chrono=chronological_rank(recording, start, per_recording.get("repetition")),
        session=per_recording["session"][recording] if "session" in per_recording else None,
        positions=electrode_positions(events),
        sfreq=float(events.attrs.get("sfreq", 200.0)),
        channel_names=[str(c) for c in events["channel"].values.tolist()],
        provenance={k: plain_value(events.attrs[k]) for k in PROVENANCE if k in events.attrs},
    )


PROVENANCE = ("signal", "token_units", "token_demeaned", "detector", "floor_scope", "calibration_s")


def plain_value(value: Any) -> Any:
    """A numpy scalar as the Python value JSON writes (manifests, metrics)."""
    return value.item() if isinstance(value, np.generic) else value
