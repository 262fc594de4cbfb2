"""Calibrating success detection on labelled episodes, and the two-way score.

The paper's success score is the mean RAW log p(" True") of the last prefixes
of an episode. It stays the default everywhere (node, bag tools, the
threshold written by ``topreward eval``). Raw log p(" True") also moves with
everything else the model might say at that position (" true", " False",
punctuation), so this module offers beside it the **two-way** score: the
log-probability of " True" renormalised over the two answers,

    log p(True) - logsumexp(log p(True), log p(False)) = log(pT / (pT + pF)),

which the same forward gives for free (``log_prob_false`` is read from the
same logits). It is <= 0 like the raw score, and is reported next to it so a
user can see whether it separates their successes better.

Set metrics for an evaluation (``evaluate_set``): mean and spread of the
value-order correlation (VOC) of the episodes and of their static-video
control, success ROC-AUC of both scores, and the threshold that maximises
balanced accuracy with its TPR / FPR. Metrics that need both classes are
``None`` (with the reason) when the labels hold only one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from topreward_ros.scoring.metrics import binary_labels, finite_vector, success_roc_auc


def two_way_log_probs(log_prob_true: Sequence[float], log_prob_false: Sequence[float]) -> list[float]:
    """Per prefix ``log p(True) - logsumexp(log p(True), log p(False))`` (nats, <= 0)."""
    t = finite_vector(log_prob_true, "log_prob_true")
    f = finite_vector(log_prob_false, "log_prob_false")
    if t.shape != f.shape:
        raise ValueError(f"log_prob_true has {t.size} values, log_prob_false has {f.size}")
    return (t - np.logaddexp(t, f)).tolist()


def window_mean(values: Sequence[float], window: int) -> float:
    """Mean of the last ``window`` values (all if fewer): the paper's success score rule."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an integer >= 1, got {window!r}")
    arr = finite_vector(values, "values")
    if arr.size == 0:
        raise ValueError("values must not be empty")
    return float(arr[-window:].mean())


def two_way_success_score(log_prob_true: Sequence[float], log_prob_false: Sequence[float], window: int = 3) -> float:
    """Mean two-way score of the last ``window`` prefixes (the raw score's rule)."""
    return window_mean(two_way_log_probs(log_prob_true, log_prob_false), window)


@dataclass(frozen=True)
class ThresholdChoice:
    """A success threshold and how the rule ``score > threshold`` does with it.

    tpr: successes declared successful; fpr: failures declared successful;
    balanced_accuracy: (tpr + (1 - fpr)) / 2.
    """

    threshold: float
    tpr: float
    fpr: float
    balanced_accuracy: float


def choose_threshold(scores: Sequence[float], labels: Sequence[bool | int]) -> ThresholdChoice:
    """The threshold that maximises balanced accuracy of ``score > threshold``.

    Balanced accuracy (mean of the true positive and true negative rates)
    weighs successes and failures equally, whatever their numbers; it is
    maximal where Youden's J = TPR - FPR is. Candidates are the midpoints
    between consecutive distinct scores plus one 1 nat below the lowest
    score; among equally good ones the lowest is returned. Raises
    ``ValueError`` unless the labels hold both classes.
    """
    s = finite_vector(scores, "scores")
    y = binary_labels(labels, s.size)
    distinct = np.unique(s)
    candidates = np.concatenate(([distinct[0] - 1.0], (distinct[:-1] + distinct[1:]) / 2.0))
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    best: ThresholdChoice | None = None
    for t in candidates:
        predicted = s > t
        tpr = float((predicted & y).sum() / n_pos)
        fpr = float((predicted & ~y).sum() / n_neg)
        bacc = (tpr + 1.0 - fpr) / 2.0
        if best is None or bacc > best.balanced_accuracy + 1e-12:
            best = ThresholdChoice(float(t), tpr, fpr, bacc)
    assert best is not None
    return best


def roc_points(scores: Sequence[float], labels: Sequence[bool | int]) -> tuple[list[float], list[float]]:
    """(FPR, TPR) of ``score > t`` for every threshold, from (0, 0) to (1, 1), for plotting."""
    s = finite_vector(scores, "scores")
    y = binary_labels(labels, s.size)
    fpr, tpr = [0.0], [0.0]
    for t in np.unique(s)[::-1]:
        predicted = s >= t
        tpr.append(float((predicted & y).sum() / y.sum()))
        fpr.append(float((predicted & ~y).sum() / (~y).sum()))
    return fpr, tpr


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; NaN for fewer than 2 values)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return float("nan"), float("nan")
    std = float(arr.std(ddof=1)) if arr.size >= 2 else float("nan")
    return float(arr.mean()), std


@dataclass(frozen=True)
class SetMetrics:
    """What a set of labelled episodes says about the scorer.

    voc_* / control_voc_*: mean and sample standard deviation (ddof 1) of the
    episodes' VOC and of their static-video controls' VOC.
    auc_raw / auc_two_way: success ROC-AUC of the raw and two-way success
    scores; threshold_raw / threshold_two_way: the balanced-accuracy optimum.
    These four are None when ``undefined_reason`` says why (one class only).
    """

    episodes: int
    successes: int
    failures: int
    voc_mean: float
    voc_std: float
    control_voc_mean: float
    control_voc_std: float
    auc_raw: float | None
    auc_two_way: float | None
    threshold_raw: ThresholdChoice | None
    threshold_two_way: ThresholdChoice | None
    undefined_reason: str | None


def evaluate_set(
    voc: Sequence[float],
    control_voc: Sequence[float],
    raw_scores: Sequence[float],
    two_way_scores: Sequence[float],
    labels: Sequence[bool | int],
) -> SetMetrics:
    """Set metrics of episodes given per episode: VOC, control VOC, both success scores, label."""
    n = len(labels)
    if not (len(voc) == len(control_voc) == len(raw_scores) == len(two_way_scores) == n):
        raise ValueError("need one VOC, control VOC, raw score, two-way score and label per episode")
    y = np.asarray(labels, dtype=np.int64)
    if n and not np.all((y == 0) | (y == 1)):
        raise ValueError(f"labels must be 0/1, got {sorted(set(y.tolist()))}")
    successes = int(y.sum())
    voc_mean, voc_std = _mean_std(voc)
    control_mean, control_std = _mean_std(control_voc)
    reason = None
    auc_raw = auc_two_way = None
    choice_raw = choice_two_way = None
    if n == 0:
        reason = "no labelled episode"
    elif successes in (0, n):
        only = "successes" if successes else "failures"
        reason = f"all {n} labelled episodes are {only}: ROC-AUC and a threshold need both successes and failures"
    else:
        auc_raw = success_roc_auc(raw_scores, y)
        auc_two_way = success_roc_auc(two_way_scores, y)
        choice_raw = choose_threshold(raw_scores, y)
        choice_two_way = choose_threshold(two_way_scores, y)
    return SetMetrics(
        n,
        successes,
        n - successes,
        voc_mean,
        voc_std,
        control_mean,
        control_std,
        auc_raw,
        auc_two_way,
        choice_raw,
        choice_two_way,
        reason,
    )


# -- thresholds per task ------------------------------------------------------------------------------
#: Fewest labelled successes AND failures an instruction needs for a threshold of its own. With one
#: episode of a class, any threshold beside it separates the classes equally well and says nothing
#: about the next episode; with two, a leave-one-out fit would see a single episode of that class.
#: Three per class is the least that leaves two of each class to fit on when one is held out, and
#: gives ROC-AUC a resolution of 1/9. Fewer: the instruction uses the global threshold.
MIN_LABELS_PER_CLASS = 3


@dataclass(frozen=True)
class TaskThreshold:
    """One instruction's own ROC-AUC and balanced-accuracy threshold (None: too few labels, ``reason``)."""

    instruction: str
    episodes: int
    successes: int
    failures: int
    auc: float | None
    choice: ThresholdChoice | None
    reason: str | None


def task_thresholds(
    scores: Sequence[float],
    labels: Sequence[bool | int],
    instructions: Sequence[str],
    min_per_class: int = MIN_LABELS_PER_CLASS,
) -> dict[str, TaskThreshold]:
    """Per instruction: its success ROC-AUC and threshold, where it has ``min_per_class`` of each class."""
    s = finite_vector(scores, "scores")
    y = binary_labels(labels, s.size)
    if len(instructions) != s.size:
        raise ValueError(f"need one instruction per score, got {len(instructions)} for {s.size}")
    out = {}
    for task in sorted(set(instructions)):
        mask = np.asarray([i == task for i in instructions])
        pos, neg = int(y[mask].sum()), int((~y[mask]).sum())
        if min(pos, neg) < min_per_class:
            out[task] = TaskThreshold(
                task,
                pos + neg,
                pos,
                neg,
                None,
                None,
                f"{pos} successes and {neg} failures: fewer than {min_per_class} of a class",
            )
            continue
        out[task] = TaskThreshold(
            task, pos + neg, pos, neg, success_roc_auc(s[mask], y[mask]), choose_threshold(s[mask], y[mask]), None
        )
    return out


def balanced_accuracy(predicted: Sequence[bool], labels: Sequence[bool | int]) -> float | None:
    """(TPR + TNR) / 2 of predictions (None unless the labels hold both classes)."""
    p = np.asarray(predicted, dtype=bool)
    y = np.asarray(labels).astype(bool)
    if y.shape != p.shape:
        raise ValueError(f"need one label per prediction, got {y.size} for {p.size}")
    if y.all() or not y.any():
        return None
    return float(((p & y).sum() / y.sum() + (~p & ~y).sum() / (~y).sum()) / 2.0)


@dataclass(frozen=True)
class HeldOutComparison:
    """Leave-one-out: each episode judged by thresholds fitted without it, global vs per task.

    ``global_*``: the global threshold fitted on the other episodes.
    ``per_task_*``: the episode's instruction's threshold fitted on that
    instruction's other episodes where they hold ``min_per_class`` of each
    class, else the global one (the fallback the node uses). Balanced
    accuracies over all episodes and per instruction (None with one class).
    """

    episodes: int
    global_balanced_accuracy: float | None
    per_task_balanced_accuracy: float | None
    per_instruction: dict[str, tuple[int, float | None, float | None]]
    own_threshold_used: int  # held-out episodes judged by a per-task threshold


def leave_one_out(
    scores: Sequence[float],
    labels: Sequence[bool | int],
    instructions: Sequence[str],
    min_per_class: int = MIN_LABELS_PER_CLASS,
) -> HeldOutComparison | None:
    """Compare global and per-task thresholds on held-out episodes (None: too few to fit without one)."""
    s = finite_vector(scores, "scores")
    y = binary_labels(labels, s.size)
    n = s.size
    global_pred, task_pred, own = [], [], 0
    for i in range(n):
        rest = np.arange(n) != i
        if y[rest].all() or not y[rest].any():
            return None  # the other episodes hold one class: no threshold to fit
        global_t = choose_threshold(s[rest], y[rest]).threshold
        same = rest & np.asarray([task == instructions[i] for task in instructions])
        if min(int(y[same].sum()), int((~y[same]).sum())) >= min_per_class:
            task_t = choose_threshold(s[same], y[same]).threshold
            own += 1
        else:
            task_t = global_t
        global_pred.append(bool(s[i] > global_t))
        task_pred.append(bool(s[i] > task_t))
    g, t = np.asarray(global_pred), np.asarray(task_pred)
    per = {}
    for task in sorted(set(instructions)):
        mask = np.asarray([i == task for i in instructions])
        per[task] = (int(mask.sum()), balanced_accuracy(g[mask], y[mask]), balanced_accuracy(t[mask], y[mask]))
    return HeldOutComparison(n, balanced_accuracy(g, y), balanced_accuracy(t, y), per, own)
