"""``report.md`` of ``topreward eval``: what a reader needs to trust, or not trust, the numbers.

Settings, the set metrics (all episodes and per task), what the static-video
control says, the calibrated parameters and the live check, the episode
table with each episode's status, and every problem of the run. Built as
text from an ``Evaluation``; ``outcome.write_outputs`` writes it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from topreward_ros.evaluation.report import CALIBRATED_YAML, Evaluation
from topreward_ros.files.params_file import params_file_text
from topreward_ros.scoring.calibration import MIN_LABELS_PER_CLASS, SetMetrics


def _f(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _metrics_table(named: Sequence[tuple[str, SetMetrics]]) -> list[str]:
    lines = [
        "| set | episodes | successes | failures | VOC mean | VOC std | control VOC mean | control VOC std "
        "| AUC raw | AUC two-way | threshold raw | TPR | FPR | bal. acc. | threshold two-way | TPR | FPR "
        "| bal. acc. |",
        "|---" * 18 + "|",
    ]
    for name, m in named:
        r, t = m.threshold_raw, m.threshold_two_way
        lines.append(
            f"| {name} | {m.episodes} | {m.successes} | {m.failures} | {_f(m.voc_mean)} | {_f(m.voc_std)} "
            f"| {_f(m.control_voc_mean)} | {_f(m.control_voc_std)} | {_f(m.auc_raw)} | {_f(m.auc_two_way)} "
            f"| {_f(r and r.threshold, 4)} | {_f(r and r.tpr)} | {_f(r and r.fpr)} | {_f(r and r.balanced_accuracy)} "
            f"| {_f(t and t.threshold, 4)} | {_f(t and t.tpr)} | {_f(t and t.fpr)} "
            f"| {_f(t and t.balanced_accuracy)} |"
        )
    return lines


def _task_section(evaluation: Evaluation) -> list[str]:
    """Per-instruction thresholds and the held-out comparison with the global one."""
    if not evaluation.tasks:
        return []
    out = [
        "### Thresholds per task",
        "",
        f"An instruction gets a threshold of its own when it has at least {MIN_LABELS_PER_CLASS} labelled "
        f"successes and {MIN_LABELS_PER_CLASS} failures (with fewer, a threshold beside one or two "
        "episodes of a class says nothing about the next one, and a held-out fit would see one or none); "
        "others use the global threshold.",
        "",
        "| instruction | episodes | successes | failures | AUC raw | own threshold | bal. acc. (fit) |",
        "|---" * 7 + "|",
    ]
    for name, t in evaluation.tasks.items():
        c = t.choice
        own = _f(c.threshold, 4) if c else f"none ({t.reason})"
        out.append(
            f"| {name} | {t.episodes} | {t.successes} | {t.failures} | {_f(t.auc)} | {own} "
            f"| {_f(c and c.balanced_accuracy)} |"
        )
    h = evaluation.held_out
    out += [""]
    if h is None:
        out += ["Held-out comparison: not possible (leaving one episode out leaves a single class).", ""]
        return out
    out += [
        f"**Held out (leave-one-out)**: each of the {h.episodes} episodes judged by thresholds fitted "
        f"without it. Balanced accuracy with the global threshold: {_f(h.global_balanced_accuracy)}; with "
        f"per-task thresholds (global where an instruction has too few labels; {h.own_threshold_used} "
        f"episodes judged by their own): {_f(h.per_task_balanced_accuracy)}. "
        + (
            "Per-task thresholds help on this data."
            if (h.per_task_balanced_accuracy or 0) > (h.global_balanced_accuracy or 0)
            else "Per-task thresholds do not help on this data: remove the `task_*` keys from "
            f"`{CALIBRATED_YAML}` to use the global threshold everywhere."
        ),
        "",
        "| instruction | held-out episodes | bal. acc. global | bal. acc. per task |",
        "|---" * 4 + "|",
    ]
    for name, (n, g, t) in h.per_instruction.items():
        out.append(f"| {name} | {n} | {_f(g)} | {_f(t)} |")
    return out + [""]


def report_markdown(
    evaluation: Evaluation,
    settings: dict[str, Any],
    params: dict[str, Any] | None,
    plots: Sequence[str],
    problems: Sequence[str],
    notes: Sequence[str],
    random_weights: bool,
    complete: bool,
) -> str:
    m = evaluation.overall
    out = ["# TOPReward evaluation", ""]
    if random_weights:
        out += [
            "> **RANDOM WEIGHTS.** The model is a randomly initialised test checkpoint: every number "
            "below exercises the pipeline and means nothing about the method.",
            "",
        ]
    if not complete:
        out += [
            "> **Incomplete run**: not every episode has been scored yet (see Problems); "
            "re-run the same command to continue.",
            "",
        ]
    not_scored = len(evaluation.rows) - m.episodes
    out += [
        f"Model: `{settings['model']}`. {m.episodes} labelled episodes "
        f"({m.successes} successes, {m.failures} failures)"
        + (
            f"; {not_scored} more labelled but not scored (left out of every metric, see the episode table's status)"
            if not_scored
            else ""
        )
        + ".",
        "",
        "## Set metrics",
        "",
    ]
    out += _metrics_table([("all", m), *((f"task: {k}", v) for k, v in evaluation.per_task.items())])
    out += [""]
    if m.undefined_reason:
        out += [f"ROC-AUC and thresholds are undefined: {m.undefined_reason}. No `{CALIBRATED_YAML}` was written.", ""]
    out += [
        "* **VOC**: Spearman correlation of the K-prefix curve with time (the paper's progress metric).",
        "* **Static-video control**: the episode's first sampled frame repeated at the same sample stamps, "
        "scored with the same code. It shows no progress at all, so its VOC measures how much the score "
        "rises with video length alone (the authors report ~0.99 for Qwen3-VL-8B). An episode VOC close to "
        "its control VOC says nothing about task progress; trust progress only where the episode VOC "
        "clearly exceeds the control's.",
        "* **Raw success score** (default, the paper's and the node's): mean raw log p(\" True\") of the last "
        f"{settings['success_window']} prefixes. **Two-way**: the same mean of "
        "log p(True) - logsumexp(log p(True), log p(False)).",
        "* **Threshold**: maximises balanced accuracy (mean of TPR and 1 - FPR) of `score > threshold`.",
        "* std is the sample standard deviation (n - 1).",
        "",
    ]
    if params is not None:
        out += [
            "## Calibrated parameters",
            "",
            f"`{CALIBRATED_YAML}` (raw score threshold):",
            "",
            "```yaml",
            params_file_text(params).rstrip(),
            "```",
            "",
            "Launch with the rig's parameters file, this file's values winning: `ros2 launch topreward_ros "
            f"scorer.launch.py params_file:=RIG.yaml calibration_file:={CALIBRATED_YAML}`; offline: "
            f"`topreward bag BAG -o OUT --params-file {CALIBRATED_YAML}`. The node compares the mean of its "
            "last `success_window` live scores (one per tick) with the threshold; the threshold is fitted "
            "on the offline curve's last prefixes, and `success_consecutive` is the value given, not fitted.",
            "",
        ]
        out += _task_section(evaluation)
        live = evaluation.live
        if live is not None:
            out += [
                f"**Live check** (bag and dataset episodes): the node's detector replayed over each "
                f"episode's live-style ticks with these parameters declares success in "
                f"{live.declared_successes} of {live.successes} labelled successes (TPR {_f(live.tpr)}) "
                f"and {live.declared_failures} of {live.failures} failures (FPR {_f(live.fpr)}); "
                f"`live_success` in `episodes.csv`.",
                "",
            ]
    if plots:
        out += ["## Figures", ""] + [f"![{p}]({p})" for p in plots] + [""]
    out += [
        "## Episodes",
        "",
        "| episode | task | label | VOC | control VOC | raw score | two-way score "
        "| control raw | predicted | live | status |",
        "|---" * 11 + "|",
    ]
    for r in evaluation.rows:
        detail = " ".join(str(r["status_detail"]).split()).replace("|", "\\|")  # one table cell
        status = r["status"] if r["status"] == "scored" else f"**{r['status']}**: {detail}"
        out.append(
            f"| {r['episode']} | {r['task']} | {'success' if r['success'] else 'failure'} "
            f"| {_f(r['voc'])} | {_f(r['control_voc'])} | {_f(r['raw_success_score'], 4)} "
            f"| {_f(r['two_way_success_score'], 4)} | {_f(r['control_raw_success_score'], 4)} "
            f"| {r['predicted_success']} | {r['live_success']} | {status} |"
        )
    out += [
        "",
        "Per-prefix values (raw and two-way, episode and control) are in `episodes/*.json`; every "
        "episode also has the offline outputs (`curve.json`, frame tables, `progress.mcap`, plot) under "
        "`bags/<bag name>/`, `datasets/<dataset name>/` or `videos/<name>/`.",
        "",
    ]
    if problems or evaluation.unlabelled:
        out += ["## Problems", ""] + [f"* {p}" for p in problems]
        out += [
            f"* {name}: scored but not in the labels file (left out of the metrics)" for name in evaluation.unlabelled
        ]
        out += [""]
    if notes:
        out += ["## Notes", ""] + [f"* {n}" for n in notes] + [""]
    out += ["## Settings", "", "```json"]
    out += [json.dumps(settings, indent=2), "```", ""]
    return "\n".join(out)
