"""How good is an event detector? Scores against known events and against gesture labels."""

from __future__ import annotations

from typing import Any

import numpy as np


def match_events(
    truth: list[tuple[int, int]], detected: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Greedy one-to-one pairs (truth index, detection index) of overlapping events.

    Each true event takes the unused detection with the largest overlap, so a detector that
    splits one contraction in two earns one true positive and one false positive.
    """
    pairs, used = [], set()
    for i, (a, b) in enumerate(truth):
        overlaps = [(min(b, d) - max(a, c), j) for j, (c, d) in enumerate(detected) if j not in used]
        best = max(overlaps, default=(0, -1))
        if best[0] > 0:
            pairs.append((i, best[1]))
            used.add(best[1])
    return pairs


def detection_scores(
    truth: list[tuple[int, int]], detected: list[tuple[int, int]], sfreq: float
) -> dict[str, float]:
    pairs = match_events(truth, detected)
    tp = len(pairs)
    precision = tp / len(detected) if detected else 0.0
    recall = tp / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    onset_errors = [abs(detected[j][0] - truth[i][0]) / sfreq for i, j in pairs]
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "median_onset_error_s": float(np.median(onset_errors)) if onset_errors else float("nan"),
        "n_true": len(truth),
        "n_detected": len(detected),
    }


def label_segments(gesture: np.ndarray) -> list[tuple[int, int, int]]:
    """Runs of a constant label: (start, stop, label)."""
    if len(gesture) == 0:
        return []
    change = np.flatnonzero(np.diff(gesture)) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [len(gesture)]])
    return [(int(a), int(b), int(gesture[a])) for a, b in zip(starts, stops, strict=True)]


def label_agreement(
    gesture: np.ndarray, detected: list[tuple[int, int]], sfreq: float, rest_code: int = 0
) -> dict[str, Any]:
    """Share of labelled gesture segments holding an event, and event onsets per rest minute."""
    segments = label_segments(gesture)
    gestures = [(a, b) for a, b, g in segments if g > rest_code]
    rests = [(a, b) for a, b, g in segments if g == rest_code]
    onsets = np.array([a for a, _ in detected], dtype=np.int64)
    hit = sum(any(min(b, d) > max(a, c) for c, d in detected) for a, b in gestures)
    rest_onsets = sum(int(((onsets >= a) & (onsets < b)).sum()) for a, b in rests)
    rest_minutes = sum(b - a for a, b in rests) / sfreq / 60
    return {
        "gesture_segments": len(gestures),
        "gesture_segments_with_event": hit,
        "rest_minutes": rest_minutes,
        "rest_event_onsets": rest_onsets,
    }
