"""VOC, success ROC-AUC and threshold choice, against scipy and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score, roc_curve

from topreward_ros.scoring import best_threshold, success_roc_auc, voc


@pytest.mark.parametrize("seed", range(5))
def test_voc_matches_scipy_spearman(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=15).round(1)  # rounding makes ties
    expected = spearmanr(values, np.arange(15)).statistic
    assert voc(values) == pytest.approx(expected, abs=1e-12)


def test_voc_extremes() -> None:
    assert voc([1, 2, 3, 4]) == pytest.approx(1.0)
    assert voc([4, 3, 2, 1]) == pytest.approx(-1.0)
    assert voc([5.0, 5.0, 5.0]) == 0.0
    assert voc([3.0]) == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 40)
    labels[:2] = [0, 1]
    scores = (rng.normal(size=40) + labels).round(1)
    assert success_roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_roc_auc_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both successes"):
        success_roc_auc([1.0, 2.0], [1, 1])
    with pytest.raises(ValueError, match="one label per score"):
        success_roc_auc([1.0, 2.0], [1])
    with pytest.raises(ValueError, match="0/1 or booleans"):
        success_roc_auc([1.0, 2.0], [0, 2])


@pytest.mark.parametrize("seed", range(5))
def test_best_threshold_reaches_the_best_youden_j(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 30)
    labels[:2] = [0, 1]
    scores = rng.normal(size=30) + 1.5 * labels
    threshold = best_threshold(scores, labels)
    fpr, tpr, _ = roc_curve(labels, scores)
    predicted = scores > threshold
    j = predicted[labels == 1].mean() - predicted[labels == 0].mean()
    assert j == pytest.approx(np.max(tpr - fpr), abs=1e-12)


def test_best_threshold_separates_separable_data() -> None:
    threshold = best_threshold([-12.0, -11.0, -7.0, -6.0], [0, 0, 1, 1])
    assert threshold == pytest.approx(-9.0)
