"""What ``topreward eval`` writes: a table, plots, a report and a parameters file.

* ``episodes.csv``: one row per labelled episode (columns in ``CSV_COLUMNS``),
  scored or not: ``status`` says which (``STATUSES``), and an episode not
  scored has empty metrics and is left out of every set metric;
* ``metrics.json``: the set metrics, ``overall`` and ``per_task`` (NaN as null);
* ``roc.png``, ``voc_vs_control.png``, ``score_distributions.png``;
* ``calibrated.yaml``: ``/**: ros__parameters: {success_threshold,
  success_window, success_consecutive, model}``, the per-task thresholds
  (``task_instructions``, ``task_success_thresholds``) of instructions with
  enough labels of both classes, and the scoring settings the
  threshold depends on (``SCORING_KEYS``: camera order, rate, sampling, view
  size), for the node's
  ``--params-file`` / ``scorer.launch.py calibration_file:=`` and ``topreward bag
  --params-file``; written only when the labels hold both classes;
* ``report.md``: settings, set metrics (all episodes and per task), the
  control's reading, the episode table and any problem.

This module computes the evaluation and writes its table, metrics and
parameters file; ``plots.py`` draws the figures and ``report_markdown.py``
writes the report from the same ``Evaluation``.

The threshold written is the one for the RAW success score (the paper's,
and what the node compares); the two-way score's optimum is reported beside
it. Every file is written atomically.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from topreward_ros.evaluation.labels import Label
from topreward_ros.files.atomic import write_text_atomic
from topreward_ros.files.params_file import params_file_text
from topreward_ros.scoring.calibration import (
    MIN_LABELS_PER_CLASS,
    HeldOutComparison,
    SetMetrics,
    TaskThreshold,
    evaluate_set,
    leave_one_out,
    task_thresholds,
)
from topreward_ros.scoring.progress import SuccessDetector
from topreward_ros.scoring.thresholds import TASK_INSTRUCTIONS_PARAM, TASK_THRESHOLDS_PARAM, instruction_key

CSV_COLUMNS = (
    "episode",
    "input",
    "kind",
    "task",
    "instruction",
    "success",
    "num_frames",
    "num_samples",
    "voc",
    "control_voc",
    "raw_success_score",
    "two_way_success_score",
    "control_raw_success_score",
    "control_two_way_success_score",
    "predicted_success",
    "live_success",
    "status",
    "status_detail",
)
# scored: the metrics hold it; failed: reading or scoring it failed; refused:
# its instruction cannot be put to the model; empty: a bag episode without a
# camera frame; missing: the input holds no such episode; pending: not scored
# yet (--max-episodes), a re-run continues.
STATUSES = ("scored", "failed", "refused", "empty", "missing", "pending")
CALIBRATED_YAML = "calibrated.yaml"
#: Episodes the live check replays: recordings of a rig (a bag, a LeRobot
#: dataset), whose ticks ran on the recording's own clock as the node's timer
#: would have. A video or frame folder is a clip scored as ``topreward score``
#: scores it; its live column stays empty.
LIVE_KINDS = ("bag", "dataset")
NO_TASK = "(no task)"


@dataclass(frozen=True)
class LiveCheck:
    """The node's live detector replayed with the calibrated parameters over recorded episodes' ticks.

    The threshold is fitted on the offline curve; the node decides on its
    live scores (one per tick of the growing episode, ``success_window`` of
    them averaged, ``success_consecutive`` in a row). This says how often it
    would then declare success on the labelled successes (tpr) and failures (fpr).
    """

    episodes: int
    successes: int
    failures: int
    declared_successes: int
    declared_failures: int
    tpr: float | None
    fpr: float | None


@dataclass(frozen=True)
class Evaluation:
    """Labelled episodes joined with their records, and the metrics over them."""

    rows: list[dict[str, Any]]
    overall: SetMetrics
    per_task: dict[str, SetMetrics]
    unlabelled: list[str]
    live: LiveCheck | None = None
    #: Per instruction: its own ROC-AUC and threshold where it has enough labels of both classes.
    tasks: dict[str, TaskThreshold] | None = None
    #: Global vs per-task thresholds on held-out episodes (leave-one-out).
    held_out: HeldOutComparison | None = None

    @property
    def scored(self) -> list[dict[str, Any]]:
        """The rows the metrics are computed on (the other labelled episodes have no scores)."""
        return [r for r in self.rows if r["status"] == "scored"]


def live_success(log_probs: Sequence[float], threshold: float, window: int, consecutive: int) -> bool:
    """Would the node's ``SuccessDetector`` fire on these live scores (in tick order)?"""
    detector = SuccessDetector(threshold, window=window, consecutive=consecutive)
    fired = False
    for value in log_probs:
        fired = detector.update(value).success
    return fired


def _metrics(rows: Sequence[dict[str, Any]]) -> SetMetrics:
    return evaluate_set(
        [r["voc"] for r in rows],
        [r["control_voc"] for r in rows],
        [r["raw_success_score"] for r in rows],
        [r["two_way_success_score"] for r in rows],
        [r["success"] for r in rows],
    )


def evaluate(
    records: Sequence[dict[str, Any]],
    labels: dict[str, Label],
    window: int = 3,
    consecutive: int = 2,
    unscored: Mapping[str, tuple[str, str]] | None = None,
    order: Callable[[str], Any] | None = None,
) -> Evaluation:
    """Join records with labels and compute the metrics (per task when tasks are given).

    Every labelled episode gets a row: those with a record are ``scored``;
    the others take their status and its reason from ``unscored`` (name ->
    (status, detail); ``missing`` when it does not name them) and have empty
    metrics. A name in ``unscored`` wins over a record: an episode that
    failed in this run is not measured by an older record. ``order`` sorts
    the rows by episode name (default: records first, in their order).
    """
    unscored = unscored or {}
    rows, unlabelled = [], []
    for record in records:
        label = labels.get(record["episode"])
        if label is None:
            unlabelled.append(record["episode"])
            continue
        if record["episode"] in unscored:
            continue
        row = {key: record.get(key) for key in CSV_COLUMNS}
        row.update(task=label.task or "", success=int(label.success), status="scored", status_detail="")
        row["_live"] = [t["log_prob_true"] for t in record.get("live", [])] if record["kind"] in LIVE_KINDS else None
        rows.append(row)
    have = {r["episode"] for r in rows}
    for name, label in labels.items():
        if name in have:
            continue
        status, detail = unscored.get(name, ("missing", "no record of this episode"))
        if status not in STATUSES or status == "scored":
            raise ValueError(f"{name}: {status!r} is not the status of an episode without scores")
        row = {key: None for key in CSV_COLUMNS}
        row.update(
            episode=name,
            task=label.task or "",
            instruction=label.instruction,
            success=int(label.success),
            status=status,
            status_detail=detail,
            _live=None,
        )
        rows.append(row)
    if order is not None:
        rows.sort(key=lambda r: order(r["episode"]))
    scored = [r for r in rows if r["status"] == "scored"]
    overall = _metrics(scored)
    per_task: dict[str, SetMetrics] = {}
    if any(r["task"] for r in scored):
        for task in sorted({r["task"] or NO_TASK for r in scored}):
            per_task[task] = _metrics([r for r in scored if (r["task"] or NO_TASK) == task])
    threshold = overall.threshold_raw.threshold if overall.threshold_raw else None
    for row in rows:
        row["predicted_success"] = (
            "" if threshold is None or row["status"] != "scored" else int(row["raw_success_score"] > threshold)
        )
        live = row.pop("_live")
        row["live_success"] = (
            ""
            if threshold is None or live is None
            else int(live_success(live, min(0.0, threshold), window, consecutive))
        )
    checked = [r for r in rows if r["live_success"] != ""]
    live_check = None
    if checked:
        pos = [r["live_success"] for r in checked if r["success"]]
        neg = [r["live_success"] for r in checked if not r["success"]]
        live_check = LiveCheck(
            len(checked),
            len(pos),
            len(neg),
            sum(pos),
            sum(neg),
            sum(pos) / len(pos) if pos else None,
            sum(neg) / len(neg) if neg else None,
        )
    tasks = held_out = None
    if overall.threshold_raw is not None:
        named = [r for r in scored if r.get("instruction")]
        instructions = [instruction_key(r["instruction"]) for r in named]
        if named:
            scores = [r["raw_success_score"] for r in named]
            successes = [r["success"] for r in named]
            if 0 < sum(successes) < len(successes):
                tasks = task_thresholds(scores, successes, instructions)
                held_out = leave_one_out(scores, successes, instructions)
    return Evaluation(rows, overall, per_task, unlabelled, live_check, tasks, held_out)


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)  # shortest exact round trip
    return "" if value is None else value


def write_episodes_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(row[k]) for k in CSV_COLUMNS})
    write_text_atomic(path, buf.getvalue())


def metrics_record(evaluation: Evaluation) -> dict[str, Any]:
    """The set metrics as plain JSON (NaN -> None)."""
    from dataclasses import asdict

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, float) and math.isnan(value):
            return None
        return value

    return {
        "overall": clean(asdict(evaluation.overall)),
        "per_task": {k: clean(asdict(v)) for k, v in evaluation.per_task.items()},
        "live": clean(asdict(evaluation.live)) if evaluation.live else None,
        "task_thresholds": ({k: clean(asdict(v)) for k, v in evaluation.tasks.items()} if evaluation.tasks else None),
        "min_labels_per_class": MIN_LABELS_PER_CLASS,
        "held_out": clean(asdict(evaluation.held_out)) if evaluation.held_out else None,
        "unlabelled": list(evaluation.unlabelled),
    }


#: Keys of calibrated.yaml besides the fitted ones: the settings the threshold
#: depends on (the scores were computed with them), written whatever their
#: value so that the file pins them over a rig's parameters file.
SCORING_KEYS = (
    "camera_topics",
    "instruction_topic",
    "reset_topic",
    "rate_hz",
    "sample_fps",
    "max_frames",
    "sync_tolerance_s",
    "view_size",
)


def calibrated_params(
    evaluation: Evaluation, model_id: str, window: int, consecutive: int, scoring: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The node parameters calibrated on this evaluation (None without both classes).

    ``scoring`` holds the node parameters the episodes were scored with
    (of ``SCORING_KEYS``: the camera topics in their order, the instruction
    and reset topics, the tick rate, ``sample_fps``, ``max_frames``,
    ``view_size``, ``sync_tolerance_s``); all are written, since the
    threshold holds only for scores computed the same way and episodes cut
    the same way. Topics are left out when None (videos, frame folders, no
    reset topic).
    """
    choice = evaluation.overall.threshold_raw
    if choice is None:
        return None
    # A local model directory is written as an absolute path: the node may start elsewhere.
    model = str(Path(model_id).resolve()) if Path(model_id).is_dir() else str(model_id)
    # The node accepts thresholds in [-1e12, 0]; a midpoint of log-probabilities is <= 0.
    params: dict[str, Any] = {
        "success_threshold": float(min(0.0, choice.threshold)),
        "success_window": int(window),
        "success_consecutive": int(consecutive),
        "model": model,
    }
    own = {k: v.choice.threshold for k, v in (evaluation.tasks or {}).items() if v.choice is not None}
    if own:  # instructions with enough labels of both classes; any other falls back to the global one
        params[TASK_INSTRUCTIONS_PARAM] = sorted(own)
        params[TASK_THRESHOLDS_PARAM] = [float(min(0.0, own[k])) for k in sorted(own)]
    for key, value in (scoring or {}).items():
        if key not in SCORING_KEYS:
            raise ValueError(f"{key} is not a scoring parameter of the node")
        if key == "camera_topics":
            if value:
                params[key] = [str(topic) for topic in value]
        elif key.endswith("_topic"):
            if value:
                params[key] = str(value)
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key} must be a number, got {value!r}")
        else:
            params[key] = value
    return params


def write_calibrated_yaml(path: Path, params: dict[str, Any], evaluation: Evaluation) -> None:
    m = evaluation.overall
    c = m.threshold_raw
    assert c is not None and m.auc_raw is not None
    header = (
        f"Calibrated by topreward eval on {m.episodes} labelled episodes ({m.successes} successes, "
        f"{m.failures} failures), {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}.\n"
        f'success_threshold: raw success score (mean raw log p(" True") of the last success_window\n'
        f"prefixes) that maximises balanced accuracy: {c.balanced_accuracy:.3f} (TPR {c.tpr:.3f}, "
        f"FPR {c.fpr:.3f}); ROC-AUC {m.auc_raw:.3f}.\n"
        f"task_instructions / task_success_thresholds: the threshold fitted on each instruction with at least\n"
        f"{MIN_LABELS_PER_CLASS} labelled successes and {MIN_LABELS_PER_CLASS} failures (any other uses "
        f"success_threshold); see report.md for\n"
        f"whether they beat the global one on held-out episodes.\n"
        f"success_consecutive is the value the evaluation was given, not fitted. Other keys: the model and\n"
        f"the scoring settings of the evaluation (camera order, topics, tick rate, sampling, view size): the\n"
        f"threshold holds only for scores computed with them.\n"
        f"Use: ros2 launch topreward_ros scorer.launch.py params_file:=RIG.yaml calibration_file:={path.name}\n"
        f"     topreward bag BAG -o OUT --params-file {path.name}"
    )
    write_text_atomic(path, params_file_text(params, header))
