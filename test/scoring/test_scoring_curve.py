"""Min-max normalisation, success score, dense rewards, curve assembly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from topreward_ros.scoring import Score, dense_rewards, normalize_minmax, success_score
from topreward_ros.scoring.curve import build_curve


def test_normalize_minmax() -> None:
    assert normalize_minmax([-10.0, -6.0, -8.0]) == pytest.approx([0.0, 1.0, 0.5])


def test_normalize_constant_curve_gives_ones() -> None:
    assert normalize_minmax([-7.5, -7.5, -7.5]) == [1.0, 1.0, 1.0]


def test_normalize_rejects_empty_and_nan() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        normalize_minmax([])
    with pytest.raises(ValueError, match="must be finite"):
        normalize_minmax([1.0, float("nan")])


def test_success_score_is_mean_of_last_window() -> None:
    assert success_score([-20.0, -9.0, -8.0, -7.0], window=3) == pytest.approx(-8.0)
    assert success_score([-9.0], window=3) == pytest.approx(-9.0)
    with pytest.raises(ValueError, match="window must be an integer >= 1, got 0"):
        success_score([-1.0], window=0)


def test_dense_rewards_formula_at_anchors() -> None:
    s = [0.0, 0.2, 0.1, 1.0]
    lengths = [1, 4, 7, 10]
    weights = dense_rewards(s, lengths, num_frames=10)
    assert weights.shape == (10,)
    expected = [2.0, min(2.0, 2 * np.exp(0.2)), 2 * np.exp(-0.1), min(2.0, 2 * np.exp(0.9))]
    np.testing.assert_allclose(weights[[0, 3, 6, 9]], expected)
    # Linear interpolation between anchors.
    assert weights[7] == pytest.approx(expected[2] + (expected[3] - expected[2]) / 3)


def test_dense_rewards_clip_and_hold() -> None:
    weights = dense_rewards([1.0, 0.0], [2, 3], num_frames=5, tau=2.0, delta_max=1.5)
    np.testing.assert_allclose(weights, [1.5, 1.5, 2 * np.exp(-1.0), 2 * np.exp(-1.0), 2 * np.exp(-1.0)])


def test_dense_rewards_validates_inputs() -> None:
    with pytest.raises(ValueError, match="prefix_lengths must increase strictly within 1..5"):
        dense_rewards([0.0, 1.0], [3, 3], num_frames=5)
    with pytest.raises(ValueError, match="prefix_lengths has 1 entries, normalized has 2"):
        dense_rewards([0.0, 1.0], [3], num_frames=5)
    with pytest.raises(ValueError, match="tau must be a finite number > 0"):
        dense_rewards([0.0], [1], num_frames=1, tau=0.0)


def test_build_curve_and_json() -> None:
    scores = [Score(-12.0, -3.0, 1, 0.1), Score(-10.0, -4.0, 3, 0.1), Score(-11.0, -5.0, 5, 0.2)]
    curve = build_curve([1, 3, 5], [10, 30, 50], scores, model_id="m", success_window=2)
    assert curve.normalized == pytest.approx((0.0, 1.0, 0.5))
    assert curve.success_score == pytest.approx(-10.5)
    data = json.loads(json.dumps(curve.to_dict()))
    assert data["prefix_lengths"] == [1, 3, 5] and data["stamps_ns"] == [10, 30, 50]
    assert data["log_prob_false"] == [-3.0, -4.0, -5.0] and data["model_id"] == "m"
    with pytest.raises(ValueError, match="one stamp and one score per prefix"):
        build_curve([1, 2], [1], scores[:1], model_id="m")
