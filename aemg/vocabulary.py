"""The shared gesture vocabulary every dataset's labels are mapped onto.

Codes are stable integers stored as int16 in the harmonized store (new names are appended,
never renumbered); -1 means "no label" (pauses, transitions, the UCI set's class 0), which is
*not* rest. Tripod and tip pinch grasps are ``pinch_3finger`` and ``pinch_2finger``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import yaml
from filelock import FileLock

UNLABELLED = -1
# A user's own gesture names (declared by a spec in datasets.d/) get codes from here up; the shared
# vocabulary stays below, so the two can never collide whatever either one grows to (int16 store).
USER_CODE_BASE = 10_000

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
    # single-finger movements (NinaPro exercise 1)
    "index_flexion": 15,
    "index_extension": 16,
    "middle_flexion": 17,
    "middle_extension": 18,
    "ring_flexion": 19,
    "ring_extension": 20,
    "little_flexion": 21,
    "little_extension": 22,
    "thumb_adduction": 23,
    "thumb_abduction": 24,
    "thumb_flexion": 25,
    "thumb_extension": 26,
    # hand postures (NinaPro exercise 2, CapgMyo DB-a)
    "index_middle_extension": 27,  # index and middle extended, the others flexed
    "ring_little_flexion": 28,  # ring and little flexed, the others extended
    "thumb_opposition": 29,  # thumb opposing the base of the little finger
    "fingers_adduction": 30,  # extended fingers pressed together
    "wrist_extension_fist": 31,  # wrist extension with the hand closed
    # grasps and functional movements (NinaPro exercise 3, Feix/Cutkosky names)
    "large_diameter_grasp": 32,
    "small_diameter_grasp": 33,
    "fixed_hook_grasp": 34,
    "index_extension_grasp": 35,
    "medium_wrap": 36,
    "ring_grasp": 37,
    "prismatic_four_finger_grasp": 38,
    "stick_grasp": 39,
    "writing_tripod_grasp": 40,
    "power_sphere_grasp": 41,
    "three_finger_sphere_grasp": 42,
    "precision_sphere_grasp": 43,
    "prismatic_pinch_grasp": 44,
    "quadpod_grasp": 45,
    "lateral_grasp": 46,  # key pinch, lateral prehension
    "parallel_extension_grasp": 47,
    "extension_type_grasp": 48,
    "power_disk_grasp": 49,
    "open_bottle_tripod": 50,
    "turn_screw": 51,
    "cut_something": 52,
    "unlabelled": UNLABELLED,
}

CODE_TO_NAME: dict[int, str] = {code: name for name, code in GESTURES.items()}
assert max(GESTURES.values()) < USER_CODE_BASE, "the shared vocabulary must stay below USER_CODE_BASE"


def user_gestures(path: Path) -> dict[str, int]:
    """The user vocabulary file (``name: code``), empty when there is none yet."""
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    return {str(name): int(code) for name, code in data.items()}


def register_user_gestures(names: Iterable[str], path: Path) -> dict[str, int]:
    """Give each new name the next free user code; existing entries are never renumbered.

    One file shared by every user spec (the same name means the same gesture in all of them),
    written atomically under a lock so two processes registering at once cannot both take a code.
    """
    wanted = [n for n in names if n not in GESTURES]
    known = user_gestures(path)
    if all(n in known for n in wanted):
        return known
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        known = user_gestures(path)
        for name in wanted:
            if name not in known:
                known[name] = max(known.values(), default=USER_CODE_BASE - 1) + 1
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as handle:
            handle.write("# user gesture codes (aemg): never renumbered, shared by every spec in datasets.d/\n")
            yaml.safe_dump(known, handle, sort_keys=False)
        os.replace(tmp, path)
    return known


def gesture_code(name: str, *, where: str) -> int:
    """Code of a vocabulary name; an unknown name fails with the list of valid ones."""
    try:
        return GESTURES[name]
    except KeyError:
        raise ValueError(
            f"{where}: unknown gesture name {name!r}. Shared vocabulary: {', '.join(GESTURES)}"
        ) from None
