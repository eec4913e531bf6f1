"""Synthetic, separable trials with subjects, sentences and a chronology, for tests and demos.

Class ``c`` puts a narrow-band oscillation on channel ``c % n_chans`` (its frequency also
depends on the class) over white noise of the same scale on every channel, so the classes
differ in waveform *shape* as well as in which channel carries it; each subject scales its
channels by its own gains (the inter-subject variability LOSO has to survive).
"""

from __future__ import annotations

import numpy as np

from aemg.evaluate.trials import Trials


def make_synthetic_trials(
    n_subjects: int = 4,
    n_classes: int = 3,
    trials_per_class: int = 12,
    n_chans: int = 4,
    n_times: int = 50,
    sfreq: float = 200.0,
    events_per_sentence: int = 3,
    sentences_per_contraction: int = 2,
    noise: float = 0.5,
    seed: int = 0,
    dataset: str = "synthetic",
) -> Trials:
    rng = np.random.default_rng(seed)
    t = np.arange(n_times) / sfreq
    tokens, gesture, subject, order = [], [], [], []
    for s in range(n_subjects):
        gains = rng.uniform(0.6, 1.6, n_chans)
        for rep in range(trials_per_class):
            for c in range(n_classes):
                x = noise * rng.standard_normal((n_chans, n_times))
                freq = 12.0 + 9.0 * c
                x[c % n_chans] += 1.5 * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
                tokens.append((x * gains[:, None]).astype(np.float32))
                gesture.append(c)
                subject.append(f"S{s:02d}")
                order.append(rep % events_per_sentence)
    n = len(gesture)
    sentence_arr = _class_sentences(np.array(subject), np.array(gesture), np.array(order))
    contraction = _contractions(np.array(subject), np.array(gesture), sentence_arr, sentences_per_contraction)
    angle = np.linspace(0, 2 * np.pi, n_chans, endpoint=False)
    positions = np.stack([np.cos(angle), np.sin(angle), np.full(n_chans, 0.5)], axis=1).astype(np.float32)
    return Trials(
        dataset=dataset,
        tokens=np.stack(tokens),
        gesture=np.array(gesture, dtype=np.int16),
        subject=np.array(subject),
        event_index=np.arange(n),
        sentence=sentence_arr,
        contraction=contraction,
        order=np.array(order, dtype=np.int64),
        onset=(np.array(order) * n_times / sfreq).astype(np.float32),
        recording=np.zeros(n, np.int64),
        start=np.arange(n, dtype=np.int64) * n_times,
        chrono=np.arange(n, dtype=np.int64),
        positions=positions,
        sfreq=sfreq,
    )


def _class_sentences(subject: np.ndarray, gesture: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Consecutive events of one subject and class form a sentence, a new one at order 0."""
    out = np.zeros(len(gesture), np.int64)
    current: dict[tuple[str, int], int] = {}
    next_id = 0
    for i, (s, g, o) in enumerate(zip(subject.tolist(), gesture.tolist(), order.tolist(), strict=True)):
        if o == 0 or (s, g) not in current:
            current[(s, g)] = next_id
            next_id += 1
        out[i] = current[(s, g)]
    return out


def _contractions(subject: np.ndarray, gesture: np.ndarray, sentence: np.ndarray, per: int) -> np.ndarray:
    """Every ``per`` consecutive sentences of one subject and class are one long contraction."""
    out = np.zeros(len(sentence), np.int64)
    seen: dict[tuple[str, int], list[int]] = {}
    ids: dict[tuple[str, int, int], int] = {}
    for i, (s, g, sen) in enumerate(zip(subject.tolist(), gesture.tolist(), sentence.tolist(), strict=True)):
        order = seen.setdefault((s, g), [])
        if sen not in order:
            order.append(sen)
        key = (s, g, order.index(sen) // per)
        out[i] = ids.setdefault(key, len(ids))
    return out
