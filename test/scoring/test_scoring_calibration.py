"""The two-way score, threshold choice and set metrics, against scipy and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import spearmanr
from sklearn.metrics import balanced_accuracy_score, roc_auc_score, roc_curve

from topreward_ros.scoring.calibration import (
    choose_threshold,
    evaluate_set,
    roc_points,
    two_way_log_probs,
    two_way_success_score,
    window_mean,
)


def test_two_way_is_log_true_renormalised_over_true_and_false() -> None:
    rng = np.random.default_rng(0)
    t = -rng.uniform(0.1, 20, 12)
    f = -rng.uniform(0.1, 20, 12)
    expected = [a - logsumexp([a, b]) for a, b in zip(t, f)]
    np.testing.assert_allclose(two_way_log_probs(t, f), expected, atol=1e-12)
    # Probabilities of the two answers renormalised sum to one.
    np.testing.assert_allclose(np.exp(two_way_log_probs(t, f)) + np.exp(two_way_log_probs(f, t)), 1.0)
    assert two_way_success_score(t, f, 3) == pytest.approx(np.mean(expected[-3:]), abs=1e-12)
    assert two_way_success_score(t[:2], f[:2], 3) == pytest.approx(np.mean(expected[:2]), abs=1e-12)


def test_two_way_input_checks() -> None:
    with pytest.raises(ValueError, match="log_prob_true has 2 values, log_prob_false has 1"):
        two_way_log_probs([-1.0, -2.0], [-1.0])
    with pytest.raises(ValueError, match="must be finite"):
        two_way_log_probs([-1.0, float("nan")], [-1.0, -2.0])
    with pytest.raises(ValueError, match="window must be an integer >= 1"):
        window_mean([-1.0], 0)


@pytest.mark.parametrize("seed", range(6))
def test_threshold_maximises_balanced_accuracy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 25)
    labels[:2] = [0, 1]
    scores = (rng.normal(size=25) + labels).round(1)  # ties on purpose
    choice = choose_threshold(scores, labels)
    predicted = (scores > choice.threshold).astype(int)
    fpr, tpr, _ = roc_curve(labels, scores)
    best = 0.5 + np.max(tpr - fpr) / 2
    assert balanced_accuracy_score(labels, predicted) == pytest.approx(best, abs=1e-12)
    assert choice.balanced_accuracy == pytest.approx(best, abs=1e-12)
    assert choice.tpr == pytest.approx(predicted[labels == 1].mean())
    assert choice.fpr == pytest.approx(predicted[labels == 0].mean())


def tied_midpoint_scores() -> tuple[float, float]:
    """Two adjacent floats whose midpoint rounds (half to even) to the lower: a candidate threshold equal
    to a score."""
    low = -8.0
    high = math.nextafter(low, 0.0)
    assert (low + high) / 2.0 == low
    return low, high


def test_a_score_equal_to_the_chosen_threshold_counts_as_failure() -> None:
    """``score > threshold`` is strict in the choice too, as in the node's detector."""
    low, high = tied_midpoint_scores()
    labels = [False, True]
    choice = choose_threshold([low, high], labels)
    assert choice.threshold == low  # the failure's own score: only a strict rule separates the two
    assert (choice.tpr, choice.fpr, choice.balanced_accuracy) == (1.0, 0.0, 1.0)
    m = evaluate_set([0.1, 0.2], [0.3, 0.4], [low, high], [low, high], labels)
    assert m.threshold_raw == choice and m.threshold_two_way == choice


def test_roc_points_give_sklearns_auc() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 30)
    labels[:2] = [0, 1]
    scores = rng.normal(size=30).round(1) + labels
    fpr, tpr = roc_points(scores, labels)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_set_metrics_against_scipy_and_sklearn() -> None:
    rng = np.random.default_rng(7)
    labels = np.array([1, 0, 1, 1, 0, 0, 1, 0])
    raw = rng.normal(-12, 2, 8) + labels
    two = -rng.uniform(0, 1, 8)
    curves = [rng.normal(size=9) for _ in labels]
    vocs = [spearmanr(c, np.arange(9)).statistic for c in curves]
    control = rng.uniform(0.5, 1, 8)
    m = evaluate_set(vocs, control, raw, two, labels)
    assert (m.episodes, m.successes, m.failures) == (8, 4, 4)
    assert m.voc_mean == pytest.approx(np.mean(vocs)) and m.voc_std == pytest.approx(np.std(vocs, ddof=1))
    assert m.control_voc_mean == pytest.approx(control.mean())
    assert m.control_voc_std == pytest.approx(control.std(ddof=1))
    assert m.auc_raw == pytest.approx(roc_auc_score(labels, raw))
    assert m.auc_two_way == pytest.approx(roc_auc_score(labels, two))
    assert m.threshold_raw is not None and m.undefined_reason is None


def test_one_class_leaves_auc_and_threshold_undefined_with_the_reason() -> None:
    m = evaluate_set([0.5, 0.7], [0.9, 1.0], [-9.0, -8.0], [-0.1, -0.2], [1, 1])
    assert m.auc_raw is None and m.auc_two_way is None and m.threshold_raw is None
    assert "all 2 labelled episodes are successes" in m.undefined_reason
    assert m.voc_mean == pytest.approx(0.6)
    single = evaluate_set([0.5], [0.9], [-9.0], [-0.1], [0])
    assert "failures" in single.undefined_reason and math.isnan(single.voc_std)
    assert evaluate_set([], [], [], [], []).undefined_reason == "no labelled episode"


@pytest.mark.parametrize(
    ("scores", "fires"),
    [
        ([-9.0, -9.0, -5.0, -5.0, -5.0, -5.0], True),  # means -7.67, -6.33, -5, -5: two in a row above -7
        ([-9.0, -9.0, -5.0, -5.0, -12.0, -5.0, -5.0], False),  # the dip breaks every streak
        ([-5.0, -5.0], False),  # fewer scores than the window: no decision
        ([-5.0, -5.0, -5.0, -5.0], True),
    ],
)
def test_live_success_follows_the_node_detector(scores: list[float], fires: bool) -> None:
    from topreward_ros.evaluation.report import live_success

    assert live_success(scores, -7.0, window=3, consecutive=2) is fires


def test_eval_predicts_failure_for_a_score_equal_to_the_threshold() -> None:
    """episodes.csv's predicted_success is ``raw score > threshold``, strict."""
    from topreward_ros.evaluation.labels import Label
    from topreward_ros.evaluation.report import evaluate

    low, high = tied_midpoint_scores()
    scores = {"a": low, "b": high}
    records = [
        {
            "episode": name,
            "kind": "video",
            "voc": 0.5,
            "control_voc": 0.9,
            "raw_success_score": score,
            "two_way_success_score": score,
        }
        for name, score in scores.items()
    ]
    evaluation = evaluate(records, {"a": Label("a", False), "b": Label("b", True)})
    threshold = evaluation.overall.threshold_raw.threshold
    at = next(r for r in evaluation.rows if r["raw_success_score"] == threshold)
    above = next(r for r in evaluation.rows if r["raw_success_score"] > threshold)
    assert (at["predicted_success"], above["predicted_success"]) == (0, 1)
