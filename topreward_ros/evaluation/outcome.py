"""From a finished ``topreward eval`` run to the files of its report.

``runner`` leaves a record per scored episode and an ``EvalRunReport`` of
what went wrong; ``report`` knows how each output file looks. What lies
between is here: which labelled episodes have no scores and why (a row
status each, so ``episodes.csv`` still lists them), the problems the report
names, the camera topics ``calibrated.yaml`` may state, and which files are
written or removed so that nothing of an earlier run on other labels stays
beside this report. The command prints from the returned ``EvalOutcome``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from topreward_ros.evaluation.inputs import EvalInput
from topreward_ros.evaluation.labels import Label
from topreward_ros.evaluation.plots import plot_roc, plot_score_distributions, plot_voc_vs_control
from topreward_ros.evaluation.report import (
    CALIBRATED_YAML,
    Evaluation,
    calibrated_params,
    evaluate,
    metrics_record,
    write_calibrated_yaml,
    write_episodes_csv,
)
from topreward_ros.evaluation.report_markdown import report_markdown
from topreward_ros.evaluation.runner import EvalRunReport, episode_order
from topreward_ros.files.atomic import write_json_atomic, write_text_atomic

REPORT_MD = "report.md"
EPISODES_CSV = "episodes.csv"
METRICS_JSON = "metrics.json"
#: The plots a report may have; one not drawn this time is removed.
PLOTS = ("roc.png", "voc_vs_control.png", "score_distributions.png")


@dataclass
class EvalOutcome:
    """What one run wrote: the evaluation, the node parameters (None: no threshold) and the problems."""

    evaluation: Evaluation
    params: dict[str, Any] | None
    problems: list[str]
    report: Path
    episodes_csv: Path
    calibrated: Path


def scored_camera_topics(bags: Mapping[str, Iterable[str]]) -> tuple[list[str] | None, str | None]:
    """The camera topics the bags were scored with, in order, and a problem if the bags disagree.

    ``bags``: bag name -> the topics its source used. None without a usable
    bag: videos, frame folders and datasets have no topics for the node.
    """
    found: dict[tuple[str, ...], list[str]] = {}
    for name, topics in bags.items():
        found.setdefault(tuple(topics), []).append(name)
    if len(found) > 1:
        listing = "; ".join(f"{', '.join(topics)} ({', '.join(names)})" for topics, names in found.items())
        return None, (
            f"the bags have different camera topics ({listing}): camera_topics is not written to "
            "calibrated.yaml; give --camera to choose"
        )
    return (list(next(iter(found))) if found else None), None


def bag_topic(cameras: list[str] | None, topic: str | None) -> str | None:
    """A topic the bags were cut at, for calibrated.yaml; None where no bag was scored."""
    return topic if cameras else None


def _index_ranges(indices: Iterable[int]) -> str:
    """``0, 1, 2, 5`` -> ``0-2, 5``: a dataset's episode indices, short."""
    spans: list[list[int]] = []
    for i in sorted(indices):
        if spans and i == spans[-1][1] + 1:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans) or "none"


def missing_episode(name: str, where: str, kind: str, held: set[int]) -> tuple[str, str]:
    """The problem line and the row detail for a label naming an episode its bag or dataset lacks."""
    head, _, tail = name.rpartition("/")
    if kind == "bag":
        count = len(held)
        return (
            f"{where}: the labels name episode {name!r} but bag {head} has {count} episode(s), "
            f"{head}/0 .. {head}/{count - 1}",
            f"bag {head} has {count} episode(s)",
        )
    return (
        f"{where}: the labels name episode {name!r} but dataset {head} has no episode_index {tail}; "
        f"its {len(held)} episode(s): {_index_ranges(held)}",
        f"dataset {head} has no episode_index {tail}",
    )


def _unscored(
    records: Sequence[dict[str, Any]],
    labels: Mapping[str, Label],
    inputs: Sequence[EvalInput],
    run: EvalRunReport,
    problems: list[str],
) -> dict[str, tuple[str, str]]:
    """A (status, detail) for each labelled episode without scores; appends the problems found."""
    unscored = dict(run.unscored)
    recorded = {r["episode"] for r in records}
    kinds = {i.name: i.kind for i in inputs}
    for name, label in labels.items():
        head, _, tail = name.rpartition("/")
        if head in run.complete_inputs and int(tail) not in run.input_episodes.get(head, set()):
            problem, detail = missing_episode(name, label.where, kinds[head], run.input_episodes[head])
            problems.append(problem)
            unscored[name] = ("missing", detail)
        elif name in unscored or name in recorded:
            continue
        elif head in run.input_errors:
            unscored[name] = ("failed", run.input_errors[head])
        elif run.stopped_early:
            unscored[name] = ("pending", "not scored yet (--max-episodes); a re-run continues")
    return unscored


def write_outcome(
    out: Path,
    records: Sequence[dict[str, Any]],
    labels: dict[str, Label],
    inputs: Sequence[EvalInput],
    run: EvalRunReport,
    settings: dict[str, Any],
    random_weights: bool,
    window: int,
    consecutive: int,
    node_settings: Mapping[str, Any],
) -> EvalOutcome:
    """Evaluate the run's records against the labels and write every report file into ``out``.

    ``settings``: the run's settings record (``EvalSettings.record``);
    ``node_settings``: the scoring settings ``calibrated.yaml`` states beside
    the camera topics (the instruction and reset topics are kept only when a
    bag was scored).
    """
    problems = list(run.problems)
    problems += [f"{name}: failed: {message}" for name, message in run.failed.items()]
    unscored = _unscored(records, labels, inputs, run, problems)
    evaluation = evaluate(records, labels, window, consecutive, unscored, episode_order(inputs))

    write_episodes_csv(out / EPISODES_CSV, evaluation.rows)
    write_json_atomic(out / METRICS_JSON, metrics_record(evaluation))
    plots = []
    if evaluation.scored:
        if plot_roc(out / "roc.png", evaluation):
            plots.append("roc.png")
        plot_voc_vs_control(out / "voc_vs_control.png", evaluation)
        plot_score_distributions(out / "score_distributions.png", evaluation)
        plots += ["voc_vs_control.png", "score_distributions.png"]
    for stale in set(PLOTS) - set(plots):
        (out / stale).unlink(missing_ok=True)  # never leave a plot of other labels beside this report

    cameras, camera_problem = scored_camera_topics(run.camera_topics)
    if camera_problem:
        problems.append(camera_problem)
    scoring = {"camera_topics": cameras, **node_settings}
    for key in ("instruction_topic", "reset_topic"):
        scoring[key] = bag_topic(cameras, scoring[key])
    params = calibrated_params(evaluation, settings["model"], window, consecutive, scoring)
    calibrated = out / CALIBRATED_YAML
    if params is not None:
        write_calibrated_yaml(calibrated, params, evaluation)
    elif calibrated.exists():
        calibrated.unlink()  # never leave a threshold fitted on other episodes beside this report

    notes = list(run.notes)
    if run.stopped_early:
        notes.append("stopped after --max-episodes; re-run the same command to continue")
    write_text_atomic(
        out / REPORT_MD,
        report_markdown(
            evaluation, settings, params, plots, problems, notes, random_weights, complete=not run.stopped_early
        ),
    )
    return EvalOutcome(evaluation, params, problems, out / REPORT_MD, out / EPISODES_CSV, calibrated)
