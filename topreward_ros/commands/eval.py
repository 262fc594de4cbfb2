"""``topreward eval``: options, the run, and exit codes.

Every input becomes an episode source scored on an engine (this process,
or Ray replicas with ``--ray``) by ``evaluation.runner``; this module parses
the options, checks everything it can before the model loads, has the
report written (``evaluation.outcome``, files as ``evaluation.report``
lays them out) and prints its summary.

Exit codes:

* 0: every episode scored and labelled, metrics and ``calibrated.yaml`` written
  (also after ``--max-episodes``: a re-run continues);
* 1: finished, but something needs attention (an episode failed, a scored
  episode has no label, a label names a bag or dataset episode that does
  not exist, or the labels hold one class only so no threshold could be
  fitted); everything that could be computed is written;
* 2: nothing could start (bad option, unreadable labels file, a label for
  no input, an input missing, the model not loadable, an output directory
  of other settings);
* 130: interrupted (finished episodes are kept; a re-run continues).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from topreward_ros.commands import options as opts
from topreward_ros.commands.options import EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, EXIT_UNUSABLE

#: Finished, but something needs attention (the shared "partial" code).
EXIT_ATTENTION = EXIT_PARTIAL

__all__ = ["EXIT_ATTENTION", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_UNUSABLE", "EVAL_PARAMS", "register"]


#: Node parameters ``--params-file`` may set: option dest, type, default. The
#: success threshold is what eval fits, so a file's is ignored.
EVAL_PARAMS: dict[str, tuple[str, type, Any]] = {
    **opts.MODEL_PARAMS,
    **opts.TOPIC_PARAMS,
    **{k: v for k, v in opts.SCORING_PARAMS.items() if k != "success_threshold"},
    **opts.STAMP_PARAMS,
}


def register(subparsers: Any) -> None:
    """Add the ``eval`` subcommand to the ``topreward`` parser."""
    p = subparsers.add_parser(
        "eval",
        help="score labelled episodes, their static-video controls, and calibrate success detection",
        description="Score labelled episodes (bags cut at the instruction topic as `topreward bag` cuts "
        "them, LeRobot v3 datasets as `topreward lerobot` reads them, videos, frame folders): K-prefix "
        "curve, VOC, static-video control (first sampled frame repeated at the same stamps) and its VOC, "
        "raw and two-way success scores; then success ROC-AUC and the threshold maximising balanced "
        "accuracy. Writes report.md, episodes.csv, PNG plots and calibrated.yaml (a ROS 2 parameters file "
        "for the node and `topreward bag --params-file`), and each input's offline outputs under "
        "bags/, datasets/ or videos/. Episode names: <bag name>/<episode index> (from 0) for bags, "
        "<dataset name>/<episode_index> for datasets, the file stem for videos, the folder name for "
        "frame folders. Re-running into the same output directory resumes; --ray scores on Ray replicas.",
    )
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="rosbag2 bag (directory, .mcap or .db3), LeRobot dataset (the directory holding "
        "meta/info.json), a directory of bags or datasets, @LIST (a file naming one input per "
        "line), video file, or folder of frames",
    )
    p.add_argument(
        "-l",
        "--labels",
        type=Path,
        required=True,
        help="CSV (episode,success[,task][,instruction]) or YAML (episode: 0/1 or "
        "{success, task, instruction}) labels file",
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="output directory")
    g = p.add_argument_group("bags (as for topreward bag) and datasets (as for topreward lerobot)")
    g.add_argument(
        "--camera",
        action="append",
        dest="cameras",
        metavar="TOPIC_OR_KEY",
        help="a bag's image topic or a dataset's video feature; repeat for several cameras, the "
        "first is the primary (default: for bags camera_topics of --params-file, else each "
        "bag's only image topic; for datasets each dataset's only video feature)",
    )
    g.add_argument(
        "--instruction-topic",
        help="std_msgs/String topic that starts each bag episode (default: instruction_topic of "
        "--params-file, else /instruction)",
    )
    g.add_argument(
        "--reset-topic",
        help="a message on this topic starts a new bag episode (default: reset_topic of --params-file, else none)",
    )
    g.add_argument(
        "--video-tolerance",
        type=float,
        default=0.5,
        metavar="FRAMES",
        help="datasets: leave a frame out when the nearest decoded picture is further than this "
        "many frame periods from its timestamp (default: %(default)s)",
    )
    g = p.add_argument_group("videos and frame folders (as for topreward score)")
    g.add_argument("--instruction", help="instruction of videos / frame folders whose label gives none")
    g.add_argument(
        "--source-fps",
        type=float,
        default=30.0,
        help="frame rate of frame folders (default: %(default)s; videos use their timestamps)",
    )
    opts.add_model_options(p)
    opts.add_stamp_options(opts.add_scoring_options(p, EVAL_PARAMS, "recording", threshold=False))
    opts.add_run_options(p, outputs=False)
    opts.add_ray_options(p)
    p.set_defaults(func=run_eval)


def _error(message: str) -> None:
    print(f"topreward eval: {message}", file=sys.stderr)


def _is_random_checkpoint(model_id: str) -> bool:
    from topreward_ros.tools.tiny_model import MARKER_FILE

    try:
        return (Path(model_id) / MARKER_FILE).is_file()
    except OSError:
        return False


def run_eval(args: argparse.Namespace) -> int:
    from topreward_ros.commands.jobs import EngineStartError, open_engine
    from topreward_ros.evaluation.inputs import EvalInputError, check_labels, classify_all
    from topreward_ros.evaluation.labels import LabelsError, read_labels
    from topreward_ros.evaluation.runner import EvalRunner, EvalSettings, EvalSetupError
    from topreward_ros.files.params_file import ParamsFileError

    args.inputs = opts.ray_inputs(args, args.inputs)
    # Cameras named on the command line; a parameters file's camera_topics are
    # ROS topics, which name nothing in a dataset.
    dataset_cameras = tuple(args.cameras) if args.cameras else None
    try:
        if not args.inputs:
            raise ValueError("give at least one input (bag, dataset, video, frame folder or @LIST)")
        opts.apply_params_file(args, EVAL_PARAMS, "topreward eval")
        if args.max_episodes is not None and args.max_episodes < 1:
            raise ValueError(f"--max-episodes must be >= 1, got {args.max_episodes}")
        if not args.source_fps > 0:
            raise ValueError(f"--source-fps must be > 0, got {args.source_fps}")
        if not 0 < args.video_tolerance <= 1:
            raise ValueError(f"--video-tolerance must lie in (0, 1], got {args.video_tolerance}")
        if args.instruction is not None and not args.instruction.strip():
            raise ValueError("--instruction must not be empty")
        labels = read_labels(args.labels)
        inputs = classify_all(args.inputs)
        check_labels(inputs, labels, args.instruction)
        cameras = tuple(args.cameras) if args.cameras else None
        settings = opts.from_options(EvalSettings, args, camera_topics=cameras, dataset_cameras=dataset_cameras)
        # The node-side settings, the model's and Ray's are checked before the (slow) model load.
        settings.offline(args.max_episodes)
        config = opts.scorer_config(args)
        ray = opts.ray_options(args)
    except (LabelsError, EvalInputError, ParamsFileError, ValueError) as exc:
        _error(str(exc))
        return EXIT_UNUSABLE
    runner = EvalRunner(settings, args.output, config.model, force=args.force, max_episodes=args.max_episodes)
    try:
        runner.check()
    except EvalSetupError as exc:
        _error(str(exc))
        return EXIT_UNUSABLE
    # Every input's source is built and checked before the model loads; an
    # unusable one is reported with the results, as a bag broken part-way is.
    jobs = runner.plan(inputs, labels)
    try:
        with open_engine(config, ray, progress=not args.quiet) as engine:
            # Written only once the model is loaded: a model that does not load
            # leaves the directory (and, with --force, its records) as it was.
            runner.open()
            run = runner.run(engine, inputs, jobs)
    except (EngineStartError, EvalSetupError) as exc:
        _error(str(exc))
        return EXIT_UNUSABLE
    for name in run.scored:
        print(f"  scored   {name}")
    for name in run.skipped:
        print(f"  done     {name} (earlier run)")
    for name, message in run.failed.items():
        print(f"  FAILED   {name}: {message}")
    if run.interrupted:
        print("INTERRUPTED: finished episodes are kept; re-run the same command to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    return write_outputs(
        args, runner, inputs, labels, run, settings.record(config.model), _is_random_checkpoint(config.model)
    )


def write_outputs(
    args: argparse.Namespace,
    runner: Any,
    inputs: Any,
    labels: Any,
    run: Any,
    settings: dict[str, Any],
    random_weights: bool,
) -> int:
    """Write the report of ``run`` (``evaluation.outcome``), print its summary; the exit code."""
    from topreward_ros.evaluation.outcome import write_outcome

    out: Path = args.output
    outcome = write_outcome(
        out,
        runner.load_records(inputs),
        labels,
        inputs,
        run,
        settings,
        random_weights,
        args.success_window,
        args.success_consecutive,
        {
            "instruction_topic": args.instruction_topic,
            "reset_topic": args.reset_topic,
            "rate_hz": args.rate,
            "sample_fps": args.sample_fps,
            "max_frames": args.max_frames,
            "view_size": args.view_size,
            "sync_tolerance_s": args.sync_tolerance,
        },
    )
    evaluation, problems = outcome.evaluation, outcome.problems
    m = evaluation.overall
    print(
        f"{m.episodes} labelled episodes ({m.successes} successes, {m.failures} failures): "
        f"VOC {m.voc_mean:.3f} (control {m.control_voc_mean:.3f})"
        + (f", ROC-AUC raw {m.auc_raw:.3f} / two-way {m.auc_two_way:.3f}" if m.auc_raw is not None else "")
    )
    if random_weights:
        print("NOTE: the model is a RANDOMLY INITIALISED test checkpoint: these numbers are meaningless.")
    print(
        f"wrote {outcome.report}, {outcome.episodes_csv}"
        + (f", {outcome.calibrated}" if outcome.params is not None else "")
    )
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    for name in evaluation.unlabelled:
        print(f"PROBLEM: {name} was scored but has no label (left out of the metrics)", file=sys.stderr)
    if m.undefined_reason and run.stopped_early:
        print(f"note: no threshold fitted yet: {m.undefined_reason}")
    elif m.undefined_reason:
        print(
            f"PROBLEM: no threshold fitted, no {outcome.calibrated.name} written: {m.undefined_reason}", file=sys.stderr
        )
    if problems or evaluation.unlabelled or (m.undefined_reason and not run.stopped_early):
        return EXIT_ATTENTION
    return EXIT_OK
