"""Causal progress and the success detector."""

from __future__ import annotations

import math

import pytest

from topreward_ros.scoring import CausalProgress, SuccessDetector


def test_causal_progress_anchors_first_score_and_threshold() -> None:
    p = CausalProgress(threshold=-6.0)
    assert p.update(-16.0) == 0.0
    assert p.update(-11.0) == pytest.approx(0.5)
    assert p.update(-20.0) == 0.0  # clipped below
    assert p.update(-2.0) == 1.0  # clipped above
    p.reset()
    assert p.update(-8.0) == 0.0 and p.update(-7.0) == pytest.approx(0.5)


def test_causal_progress_does_not_change_past_values() -> None:
    # Unlike min-max, a later low score does not rescale what came before.
    p = CausalProgress(threshold=-6.0)
    first = [p.update(v) for v in (-12.0, -9.0)]
    p.update(-30.0)
    q = CausalProgress(threshold=-6.0)
    assert [q.update(v) for v in (-12.0, -9.0)] == first


def test_causal_progress_when_starting_above_threshold() -> None:
    p = CausalProgress(threshold=-6.0)
    assert p.update(-5.0) == 1.0
    assert p.update(-7.0) == 0.0


def test_causal_progress_rejects_non_finite() -> None:
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        CausalProgress(float("nan"))
    with pytest.raises(ValueError, match="raw must be a finite number"):
        CausalProgress(-6.0).update(float("-inf"))


def test_success_needs_a_full_window_and_consecutive_updates() -> None:
    d = SuccessDetector(threshold=-8.0, window=3, consecutive=2)
    verdicts = [d.update(v) for v in (-5.0, -5.0, -5.0, -5.0, -5.0)]
    assert [v.fired for v in verdicts] == [False, False, False, True, False]
    assert [v.success for v in verdicts] == [False, False, False, True, True]
    assert verdicts[0].score == pytest.approx(-5.0)
    assert d.success_score == pytest.approx(-5.0)


def test_success_score_is_mean_of_last_window() -> None:
    d = SuccessDetector(threshold=-8.0, window=3)
    scores = [d.update(v).score for v in (-20.0, -10.0, -6.0, -4.0)]
    assert scores == pytest.approx([-20.0, -15.0, -12.0, -20.0 / 3])
    assert d.fired  # mean -6.67 > -8 on the last update


def test_streak_breaks_below_threshold() -> None:
    d = SuccessDetector(threshold=-8.0, window=1, consecutive=2)
    fired = [d.update(v).fired for v in (-7.0, -9.0, -7.0, -7.0)]
    assert fired == [False, False, False, True]


def test_a_score_equal_to_the_threshold_is_not_success() -> None:
    """The rule is strict: ``score > threshold``; a mean exactly at it breaks the streak."""
    d = SuccessDetector(threshold=-5.0, window=2, consecutive=1)
    verdicts = [d.update(v) for v in (-4.0, -6.0, -4.0, -6.0)]  # means -4, -5, -5, -5 (exact in binary)
    assert [v.score for v in verdicts[1:]] == [-5.0, -5.0, -5.0]
    assert not any(v.success for v in verdicts)
    # The next representable mean above it fires.
    d = SuccessDetector(threshold=-5.0, window=1, consecutive=1)
    assert not d.update(-5.0).success
    assert d.update(math.nextafter(-5.0, 0.0)).fired


def test_success_fires_once_until_reset() -> None:
    d = SuccessDetector(threshold=-8.0, window=1)
    assert d.update(-1.0).fired
    assert not d.update(-1.0).fired
    d.reset()
    assert d.success_score is None and not d.fired
    assert d.update(-1.0).fired


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 0}, "window must be an integer >= 1, got 0"),
        ({"consecutive": 0}, "consecutive must be an integer >= 1, got 0"),
        ({"threshold": float("nan")}, "threshold must be a finite number"),
    ],
)
def test_success_detector_validates(kwargs: dict, message: str) -> None:
    args = {"threshold": -8.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        SuccessDetector(**args)
