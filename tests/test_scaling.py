"""aemg.scaling: per-subject channel RMS and the scales built from it."""

import numpy as np
import pytest

from aemg.scaling import channel_rms, pooled_rms, scale_by_own_subject, scale_rows, subject_rms


def test_channel_rms_and_flat_channel():
    tokens = np.zeros((4, 3, 10), np.float32)
    tokens[:, 0] = 2.0
    tokens[:, 1] = np.tile([3.0, -3.0], 5)
    np.testing.assert_allclose(channel_rms(tokens), [2.0, 3.0, 1.0])


def test_own_subject_scaling_gives_unit_rms_per_subject():
    rng = np.random.default_rng(0)
    tokens = rng.normal(size=(20, 2, 8)).astype(np.float32)
    tokens[10:] *= 50.0
    subject = np.array(["a"] * 10 + ["b"] * 10)
    scaled = scale_by_own_subject(tokens, subject)
    for s in ("a", "b"):
        np.testing.assert_allclose(channel_rms(scaled[subject == s]), 1.0, rtol=1e-5)


def test_pooled_rms_is_geometric_mean_and_excludes_others():
    per = {"a": np.array([1.0, 4.0], np.float32), "b": np.array([4.0, 1.0], np.float32),
           "c": np.array([100.0, 100.0], np.float32)}
    np.testing.assert_allclose(pooled_rms(per, ["a", "b"]), [2.0, 2.0], rtol=1e-6)
    assert pooled_rms(per)[0] > 2.0
    with pytest.raises(ValueError):
        pooled_rms(per, [])


def test_scale_rows_checks_shape():
    tokens = np.ones((3, 2, 4), np.float32)
    assert scale_rows(tokens, np.array([2.0, 4.0]))[0, 1, 0] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="does not match"):
        scale_rows(tokens, np.ones((2, 2)))
    assert subject_rms(tokens, np.array(["x", "x", "y"]))["y"].shape == (2,)
