"""The shared gesture vocabulary every dataset's labels are mapped onto.

Codes are stable integers stored as int16 in the harmonized store; -1 means "no label"
(pauses, transitions, the UCI set's class 0), which is *not* rest.
"""

from __future__ import annotations

UNLABELLED = -1

GESTURES: dict[str, int] = {
    "rest": 0,
    "hand_close": 1,
    "hand_open": 2,
    "wrist_flexion": 3,
    "wrist_extension": 4,
    "radial_deviation": 5,
    "ulnar_deviation": 6,
    "pinch_2finger": 7,
    "pinch_3finger": 8,
    "point_index": 9,
    "hand_raise": 10,
    "hand_lower": 11,
    "wrist_pronation": 12,
    "wrist_supination": 13,
    "thumb_up": 14,
    "unlabelled": UNLABELLED,
}

CODE_TO_NAME: dict[int, str] = {code: name for name, code in GESTURES.items()}


def gesture_code(name: str, *, where: str) -> int:
    """Code of a vocabulary name; an unknown name fails with the list of valid ones."""
    try:
        return GESTURES[name]
    except KeyError:
        raise ValueError(
            f"{where}: unknown gesture name {name!r}. Shared vocabulary: {', '.join(GESTURES)}"
        ) from None
