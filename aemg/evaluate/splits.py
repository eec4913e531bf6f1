"""Leave-one-subject-out as a splitter over trials, kept apart from fitting and scoring."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from sklearn.model_selection import LeaveOneGroupOut


def loso_folds(subject: np.ndarray) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(held-out subject, train indices, test indices); each subject is held out exactly once."""
    for train, test in LeaveOneGroupOut().split(subject, groups=subject):
        held_out = subject[test[0]]
        assert held_out not in set(subject[train]), "LOSO split leaked the test subject"
        yield str(held_out), train, test
