"""`topreward eval` thresholds per task: fitted where labels suffice, compared on held-out episodes.

Two instructions whose scores live at different heights: each separates its
successes from its failures perfectly, but no single threshold separates
both, so per-task thresholds must win on held-out episodes. A third
instruction has too few labels and must fall back to the global threshold.
The expected thresholds and balanced accuracies are worked out by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from topreward_ros.evaluation.labels import Label
from topreward_ros.evaluation.report import calibrated_params, evaluate, metrics_record, write_calibrated_yaml
from topreward_ros.evaluation.report_markdown import report_markdown
from topreward_ros.files.params_file import read_params_file
from topreward_ros.scoring.calibration import MIN_LABELS_PER_CLASS, balanced_accuracy, leave_one_out
from topreward_ros.scoring.thresholds import thresholds_from_params

HIGH, LOW, RARE = "open the drawer", "stack the cups", "wipe the table"
# (instruction, raw success score, label)
EPISODES = [
    *((HIGH, s, True) for s in (-4.0, -4.5, -5.0)),
    *((HIGH, s, False) for s in (-6.0, -6.5, -7.0)),
    *((LOW, s, True) for s in (-11.0, -11.5, -12.0)),
    *((LOW, s, False) for s in (-13.0, -13.5, -14.0)),
    (RARE, -9.0, True),
    (RARE, -9.5, True),
    (RARE, -10.0, False),
]


def records_and_labels() -> tuple[list[dict], dict[str, Label]]:
    records, labels = [], {}
    for i, (instruction, score, success) in enumerate(EPISODES):
        name = f"e{i:02d}"
        # Extra whitespace in one record: instructions match with runs of spaces as one.
        text = instruction.replace(" ", "  ") if i == 0 else instruction
        records.append(
            {
                "episode": name,
                "kind": "video",
                "instruction": text,
                "voc": 0.5,
                "control_voc": 0.9,
                "raw_success_score": score,
                "two_way_success_score": -0.5,
            }
        )
        labels[name] = Label(name, success)
    return records, labels


def test_thresholds_per_instruction_with_enough_labels_and_the_fallback(tmp_path: Path) -> None:
    records, labels = records_and_labels()
    evaluation = evaluate(records, labels)
    tasks = evaluation.tasks
    assert tasks[HIGH].choice.threshold == pytest.approx(-5.5) and tasks[HIGH].auc == 1.0
    assert tasks[LOW].choice.threshold == pytest.approx(-12.5) and tasks[LOW].auc == 1.0
    assert tasks[RARE].choice is None and "fewer than 3 of a class" in tasks[RARE].reason
    assert MIN_LABELS_PER_CLASS == 3
    params = calibrated_params(evaluation, "m", 3, 2, {})
    assert params["task_instructions"] == [HIGH, LOW]
    assert params["task_success_thresholds"] == [pytest.approx(-5.5), pytest.approx(-12.5)]
    # What the node and the offline tools read back from the written file.
    path = tmp_path / "calibrated.yaml"
    write_calibrated_yaml(path, params, evaluation)
    thresholds = thresholds_from_params(read_params_file(path), default=-8.0)
    assert thresholds.for_instruction(HIGH) == pytest.approx(-5.5)
    assert thresholds.for_instruction(LOW) == pytest.approx(-12.5)
    assert thresholds.for_instruction(RARE) == thresholds.default == params["success_threshold"]
    assert metrics_record(evaluation)["held_out"]["own_threshold_used"] == 0  # see the next test


def test_held_out_comparison_shows_per_task_thresholds_winning() -> None:
    records, labels = records_and_labels()
    held_out = evaluate(records, labels).held_out
    # Per task, each held-out episode of HIGH / LOW is judged by its instruction's other five
    # (2 of one class, 3 of the other: fewer than 3 of a class, so the global threshold judges it).
    # Leaving one out never leaves 3 of each class: the per-task column equals the global one here.
    assert held_out.own_threshold_used == 0
    assert held_out.per_task_balanced_accuracy == held_out.global_balanced_accuracy
    # With a fourth success and failure per instruction, held-out fits keep 3 of each class.
    more = [*EPISODES, (HIGH, -4.2, True), (HIGH, -6.2, False), (LOW, -11.2, True), (LOW, -13.2, False)]
    scores, successes = [s for _, s, _ in more], [y for _, _, y in more]
    instructions = [i for i, _, _ in more]
    comparison = leave_one_out(scores, successes, instructions)
    assert comparison.own_threshold_used == 16  # every HIGH and LOW episode
    assert comparison.per_instruction[HIGH][2] == comparison.per_instruction[LOW][2] == 1.0
    # The global threshold, fitted on everything else, cannot separate both instructions.
    assert comparison.global_balanced_accuracy < comparison.per_task_balanced_accuracy
    global_alone = leave_one_out(scores, successes, ["one task"] * len(more), min_per_class=100)
    assert global_alone.per_task_balanced_accuracy == comparison.global_balanced_accuracy
    assert balanced_accuracy([True, False, True], [1, 0, 0]) == pytest.approx(0.75)
    assert balanced_accuracy([True], [1]) is None


def test_report_names_the_minimum_and_the_comparison() -> None:
    records, labels = records_and_labels()
    evaluation = evaluate(records, labels)
    params = calibrated_params(evaluation, "m", 3, 2, {})
    text = report_markdown(evaluation, {"model": "m", "success_window": 3}, params, [], [], [], False, True)
    assert "### Thresholds per task" in text and "at least 3 labelled successes and 3 failures" in text
    assert "Held out (leave-one-out)" in text and "do not help on this data" in text
