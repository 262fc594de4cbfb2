"""Evaluation metrics: value-order correlation, success ROC-AUC, thresholds.

Plain numpy (no scipy / scikit-learn at run time); the tests check them
against scipy and scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _rank(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties get the mean of their ranks (as scipy's rankdata)."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    ranks = np.empty(values.size, dtype=np.float64)
    i = 0
    while i < values.size:
        j = i
        while j + 1 < values.size and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def finite_vector(values: Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return arr


def voc(values: Sequence[float]) -> float:
    """Value-order correlation: Spearman rank correlation of values with time order.

    +1 when the values rise monotonically over the episode. A constant curve
    (or fewer than 2 values) has no defined correlation and gives 0.0, as the
    paper reports it.
    """
    arr = finite_vector(values, "values")
    if arr.size < 2 or np.all(arr == arr[0]):
        return 0.0
    rv = _rank(arr)
    rt = np.arange(1, arr.size + 1, dtype=np.float64)
    rv -= rv.mean()
    rt -= rt.mean()
    return float(np.dot(rv, rt) / np.sqrt(np.dot(rv, rv) * np.dot(rt, rt)))


def binary_labels(labels: Sequence[bool | int], n: int) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.size != n:
        raise ValueError(f"labels must be 1-D with one label per score ({n}), got shape {arr.shape}")
    if not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"labels must be 0/1 or booleans, got {sorted(set(arr.tolist()))}")
    arr = arr.astype(bool)
    if arr.all() or not arr.any():
        raise ValueError("labels must contain both successes (1) and failures (0)")
    return arr


def success_roc_auc(scores: Sequence[float], labels: Sequence[bool | int]) -> float:
    """Threshold-free success detection quality: ROC-AUC of scores vs 0/1 labels.

    Computed as the Mann-Whitney statistic (probability that a random success
    scores above a random failure, ties counting one half).
    """
    s = finite_vector(scores, "scores")
    y = binary_labels(labels, s.size)
    ranks = _rank(s)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def best_threshold(scores: Sequence[float], labels: Sequence[bool | int]) -> float:
    """Threshold that best separates successes, for ``success_threshold``.

    Maximises Youden's J = TPR - FPR of the rule ``score > threshold``.
    Candidates are the midpoints between consecutive distinct scores (plus
    one below the lowest); among equally good ones the lowest is returned.
    """
    s = finite_vector(scores, "scores")
    y = binary_labels(labels, s.size)
    distinct = np.unique(s)
    candidates = np.concatenate(([distinct[0] - 1.0], (distinct[:-1] + distinct[1:]) / 2.0))
    n_pos = y.sum()
    n_neg = y.size - n_pos
    best_j = -np.inf
    best_t = float(candidates[0])
    for t in candidates:
        predicted = s > t
        j = (predicted & y).sum() / n_pos - (predicted & ~y).sum() / n_neg
        if j > best_j + 1e-12:
            best_j, best_t = j, float(t)
    return best_t
