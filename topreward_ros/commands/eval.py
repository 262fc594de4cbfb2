"""``topreward eval``: options, the run, and exit codes.

Exit codes:

* 0: every episode scored and labelled, metrics and ``calibrated.yaml`` written
  (also after ``--max-episodes``: a re-run continues);
* 1: finished, but something needs attention (an episode failed, a scored
  episode has no label, a label names a bag episode that does not exist,
  or the labels hold one class only so no threshold could be fitted);
  everything that could be computed is written;
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

EXIT_OK = 0
EXIT_ATTENTION = 1
EXIT_UNUSABLE = 2
EXIT_INTERRUPTED = 130


def register(subparsers: Any) -> None:
    """Add the ``eval`` subcommand to the ``topreward`` parser."""
    from topreward_ros.scoring.config import DEFAULT_MODEL

    p = subparsers.add_parser(
        "eval",
        help="score labelled episodes, their static-video controls, and calibrate success detection",
        description="Score labelled episodes (bags cut at the instruction topic as `topreward bag` cuts "
        "them, videos, frame folders): K-prefix curve, VOC, static-video control (first sampled frame "
        "repeated at the same stamps) and its VOC, raw and two-way success scores; then success ROC-AUC "
        "and the threshold maximising balanced accuracy. Writes report.md, episodes.csv, PNG plots and "
        "calibrated.yaml (a ROS 2 parameters file for the node and `topreward bag --params-file`). "
        "Episode names: <bag name>/<episode index> (from 0) for bags, the file stem for videos, the folder "
        "name for frame folders. Re-running into the same output directory resumes.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="rosbag2 bag (directory, .mcap or .db3), a directory of bags, @LIST (a file "
                   "naming one input per line), video file, or folder of frames")
    p.add_argument("-l", "--labels", type=Path, required=True,
                   help="CSV (episode,success[,task][,instruction]) or YAML (episode: 0/1 or "
                   "{success, task, instruction}) labels file")
    p.add_argument("-o", "--output", type=Path, required=True, help="output directory")
    g = p.add_argument_group("bags (as for topreward bag)")
    # Options a parameters file can also set default to None here and are
    # resolved in apply_params_file: command line, then file, then default.
    g.add_argument("--params-file", type=Path, metavar="YAML",
                   help="the rig's ROS 2 parameters file of the node: its " + ", ".join(EVAL_PARAMS)
                   + " apply unless given as options (relative camera topics are taken as in the root "
                   "namespace); other keys, success_threshold included, are ignored")
    g.add_argument("--camera", action="append", dest="cameras", metavar="TOPIC",
                   help="image topic; repeat for several cameras, the first is the primary "
                   "(default: camera_topics of --params-file, else each bag's only image topic)")
    g.add_argument("--instruction-topic", default="/instruction",
                   help="std_msgs/String topic that starts each episode (default: %(default)s)")
    g.add_argument("--reset-topic", help="a message on this topic starts a new episode")
    g.add_argument("--stamp-jump-restart", type=float, metavar="SECONDS", help="(default: 1.0)")
    g.add_argument("--stamp-gap-restart", type=float, metavar="SECONDS",
                   help="a primary frame stamped this much after the previous one starts a new "
                   "episode (default: 60.0)")
    g.add_argument("--rate", type=float, metavar="HZ",
                   help="the node's scoring timer (rate_hz) in bag time, for the live-style ticks (default: 1.0)")
    g = p.add_argument_group("videos and frame folders (as for topreward score)")
    g.add_argument("--instruction", help="instruction of videos / frame folders whose label gives none")
    g.add_argument("--source-fps", type=float, default=30.0,
                   help="frame rate of frame folders (default: %(default)s; videos use their timestamps)")
    g = p.add_argument_group("model")
    g.add_argument("--model", help=f"hub id or local directory (default: {DEFAULT_MODEL})")
    g.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    g.add_argument("--dtype", help="auto | bfloat16 | float16 | float32")
    g.add_argument("--local-files-only", action="store_true", help="never contact the hub")
    g.add_argument("--torch-threads", type=int, default=None, help="CPU threads for torch")
    g = p.add_argument_group("scoring (same meaning as the node's parameters)")
    g.add_argument("--sample-fps", type=float, help="(default: 2.0)")
    g.add_argument("--max-frames", type=int, help="(default: 256)")
    g.add_argument("--sync-tolerance", type=float, metavar="SECONDS", help="(default: 0.05)")
    g.add_argument("--view-size", type=int, help="(default: 244)")
    g.add_argument("--num-prefixes", type=int, default=15, help="K of the offline curve (default: %(default)s)")
    g.add_argument("--success-window", type=int,
                   help="prefixes averaged into the success score; written to calibrated.yaml (default: 3)")
    g.add_argument("--success-consecutive", type=int,
                   help="written to calibrated.yaml as is (not fitted) (default: 2)")
    g = p.add_argument_group("run")
    g.add_argument("--max-episodes", type=int, default=None,
                   help="score at most this many new episodes now; a re-run continues")
    g.add_argument("--force", action="store_true", help="redo everything even if the output directory has results")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_eval)


#: Node parameters ``--params-file`` may set: option dest, type, default.
EVAL_PARAMS: dict[str, tuple[str, type, Any]] = {
    "model": ("model", str, None),  # default: DEFAULT_MODEL (resolved lazily)
    "device": ("device", str, "auto"),
    "dtype": ("dtype", str, "auto"),
    "local_files_only": ("local_files_only", bool, False),
    "torch_threads": ("torch_threads", int, None),
    "camera_topics": ("cameras", list, None),
    "sample_fps": ("sample_fps", float, 2.0),
    "max_frames": ("max_frames", int, 256),
    "sync_tolerance_s": ("sync_tolerance", float, 0.05),
    "view_size": ("view_size", int, 244),
    "rate_hz": ("rate", float, 1.0),
    "success_window": ("success_window", int, 3),
    "success_consecutive": ("success_consecutive", int, 2),
    "stamp_jump_restart_s": ("stamp_jump_restart", float, 1.0),
    "stamp_gap_restart_s": ("stamp_gap_restart", float, 60.0),
}


def _error(message: str) -> None:
    print(f"topreward eval: {message}", file=sys.stderr)


def _is_random_checkpoint(model_id: str) -> bool:
    from topreward_ros.tools.tiny_model import MARKER_FILE

    try:
        return (Path(model_id) / MARKER_FILE).is_file()
    except OSError:
        return False


def run_eval(args: argparse.Namespace) -> int:
    from topreward_ros.evaluation.inputs import EvalInputError, check_labels, classify_all
    from topreward_ros.evaluation.labels import LabelsError, read_labels
    from topreward_ros.evaluation.runner import EvalRunner, EvalSettings, EvalSetupError
    from topreward_ros.bag.cli import apply_params_file
    from topreward_ros.episode import EpisodeSettings
    from topreward_ros.params_file import ParamsFileError
    from topreward_ros.scoring import ModelLoadError, ScorerConfig, load_scorer

    try:
        apply_params_file(args, EVAL_PARAMS)
        if args.max_episodes is not None and args.max_episodes < 1:
            raise ValueError(f"--max-episodes must be >= 1, got {args.max_episodes}")
        if not args.source_fps > 0:
            raise ValueError(f"--source-fps must be > 0, got {args.source_fps}")
        if args.instruction is not None and not args.instruction.strip():
            raise ValueError("--instruction must not be empty")
        labels = read_labels(args.labels)
        inputs = classify_all(args.inputs)
        check_labels(inputs, labels, args.instruction)
        settings = EvalSettings(
            sample_fps=args.sample_fps, max_frames=args.max_frames, sync_tolerance_s=args.sync_tolerance,
            view_size=args.view_size, num_prefixes=args.num_prefixes, success_window=args.success_window,
            success_consecutive=args.success_consecutive, tick_rate_hz=args.rate,
            stamp_jump_restart_s=args.stamp_jump_restart,
            stamp_gap_restart_s=args.stamp_gap_restart,
            camera_topics=tuple(args.cameras) if args.cameras else None,
            instruction_topic=args.instruction_topic, reset_topic=args.reset_topic,
            source_fps=args.source_fps, fixed_instruction=args.instruction)
        # Validate the node-side settings before the (slow) model load.
        EpisodeSettings(sample_fps=args.sample_fps, max_frames=args.max_frames,
                        sync_tolerance_s=args.sync_tolerance, view_size=args.view_size,
                        success_window=args.success_window, success_consecutive=args.success_consecutive)
        if args.num_prefixes < 2:
            raise ValueError(f"--num-prefixes must be >= 2, got {args.num_prefixes}")
        if not args.rate > 0:
            raise ValueError(f"--rate must be > 0, got {args.rate}")
        config = ScorerConfig(
            model=args.model, device=args.device, dtype=args.dtype, local_files_only=args.local_files_only,
            torch_threads=args.torch_threads, sample_fps=args.sample_fps, num_prefixes=args.num_prefixes,
            view_size=args.view_size, success_window=args.success_window)
    except (LabelsError, EvalInputError, ParamsFileError, ValueError) as exc:
        _error(str(exc))
        return EXIT_UNUSABLE
    try:
        scorer = load_scorer(config)
    except ModelLoadError as exc:
        _error(str(exc))
        return EXIT_UNUSABLE
    runner = EvalRunner(scorer, settings, args.output, force=args.force, progress=not args.quiet,
                        max_episodes=args.max_episodes)
    try:
        runner.open()
    except EvalSetupError as exc:
        _error(str(exc))
        return EXIT_UNUSABLE
    run = runner.run(inputs, labels)
    for name in run.scored:
        print(f"  scored   {name}")
    for name in run.skipped:
        print(f"  done     {name} (earlier run)")
    for name, message in run.failed.items():
        print(f"  FAILED   {name}: {message}")
    if run.interrupted:
        print("INTERRUPTED: finished episodes are kept; re-run the same command to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    return write_outputs(args, runner, inputs, labels, run, settings.record(scorer.model_id),
                         _is_random_checkpoint(scorer.model_id))


def scored_camera_topics(cameras: list[str] | None, inputs: Any) -> tuple[list[str] | None, str | None]:
    """The camera topics the bags were scored with, in order, and a problem if the bags disagree.

    None without bag inputs (videos and frame folders have no topics).
    """
    if cameras:
        return list(cameras), None
    from topreward_ros.bag.cli import _pick_cameras
    from topreward_ros.bag.reader import BagError

    found: dict[tuple[str, ...], list[str]] = {}
    for source in inputs:
        if source.kind != "bag":
            continue
        try:
            found.setdefault(_pick_cameras(source.path, None), []).append(source.name)
        except (BagError, ValueError):
            continue  # already reported as a failed bag
    if len(found) > 1:
        listing = "; ".join(f"{', '.join(topics)} ({', '.join(names)})" for topics, names in found.items())
        return None, (f"the bags have different camera topics ({listing}): camera_topics is not written to "
                      "calibrated.yaml; give --camera to choose")
    return (list(next(iter(found))) if found else None), None


def write_outputs(args: argparse.Namespace, runner: Any, inputs: Any, labels: Any, run: Any,
                  settings: dict[str, Any], random_weights: bool) -> int:
    from topreward_ros.evaluation.report import (
        CALIBRATED_YAML,
        calibrated_params,
        evaluate,
        metrics_record,
        plot_roc,
        plot_score_distributions,
        plot_voc_vs_control,
        report_markdown,
        write_calibrated_yaml,
        write_episodes_csv,
    )

    from topreward_ros.evaluation.runner import episode_order

    out: Path = args.output
    records = runner.load_records(inputs)
    problems = list(run.problems)
    problems += [f"{name}: failed: {message}" for name, message in run.failed.items()]
    # Each labelled episode without scores gets a status for its row in episodes.csv.
    unscored = dict(run.unscored)
    recorded = {r["episode"] for r in records}
    for name, label in labels.items():
        head, _, tail = name.rpartition("/")
        if head in run.complete_bags and int(tail) not in run.bag_episodes.get(head, set()):
            count = len(run.bag_episodes.get(head, set()))
            problems.append(f"{label.where}: the labels name episode {name!r} but bag {head} has {count} "
                            f"episode(s), {head}/0 .. {head}/{count - 1}")
            unscored[name] = ("missing", f"bag {head} has {count} episode(s)")
        elif name in unscored or name in recorded:
            continue
        elif f"{head} (bag)" in run.failed:
            unscored[name] = ("failed", run.failed[f"{head} (bag)"])
        elif run.stopped_early:
            unscored[name] = ("pending", "not scored yet (--max-episodes); a re-run continues")
    evaluation = evaluate(records, labels, args.success_window, args.success_consecutive, unscored,
                          episode_order(inputs))
    from topreward_ros.files import write_json_atomic, write_text_atomic

    write_episodes_csv(out / "episodes.csv", evaluation.rows)
    write_json_atomic(out / "metrics.json", metrics_record(evaluation))
    plots = []
    if evaluation.scored:
        if plot_roc(out / "roc.png", evaluation):
            plots.append("roc.png")
        plot_voc_vs_control(out / "voc_vs_control.png", evaluation)
        plot_score_distributions(out / "score_distributions.png", evaluation)
        plots += ["voc_vs_control.png", "score_distributions.png"]
    for stale in {"roc.png", "voc_vs_control.png", "score_distributions.png"} - set(plots):
        (out / stale).unlink(missing_ok=True)  # never leave a plot of other labels beside this report
    cameras, camera_problem = scored_camera_topics(args.cameras, inputs)
    if camera_problem:
        problems.append(camera_problem)
    params = calibrated_params(evaluation, settings["model"], args.success_window, args.success_consecutive,
                               {"camera_topics": cameras, "rate_hz": args.rate, "sample_fps": args.sample_fps,
                                "max_frames": args.max_frames, "view_size": args.view_size,
                                "sync_tolerance_s": args.sync_tolerance})
    calibrated = out / CALIBRATED_YAML
    if params is not None:
        write_calibrated_yaml(calibrated, params, evaluation)
    elif calibrated.exists():
        calibrated.unlink()  # never leave a threshold fitted on other episodes beside this report
    notes = list(run.notes)
    if run.stopped_early:
        notes.append("stopped after --max-episodes; re-run the same command to continue")
    write_text_atomic(out / "report.md", report_markdown(
        evaluation, settings, params, plots, problems, notes, random_weights, complete=not run.stopped_early))
    m = evaluation.overall
    print(f"{m.episodes} labelled episodes ({m.successes} successes, {m.failures} failures): "
          f"VOC {m.voc_mean:.3f} (control {m.control_voc_mean:.3f})"
          + (f", ROC-AUC raw {m.auc_raw:.3f} / two-way {m.auc_two_way:.3f}" if m.auc_raw is not None else ""))
    if random_weights:
        print("NOTE: the model is a RANDOMLY INITIALISED test checkpoint: these numbers are meaningless.")
    print(f"wrote {out / 'report.md'}, {out / 'episodes.csv'}"
          + (f", {calibrated}" if params is not None else ""))
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    for name in evaluation.unlabelled:
        print(f"PROBLEM: {name} was scored but has no label (left out of the metrics)", file=sys.stderr)
    if m.undefined_reason and run.stopped_early:
        print(f"note: no threshold fitted yet: {m.undefined_reason}")
    elif m.undefined_reason:
        print(f"PROBLEM: no threshold fitted, no {CALIBRATED_YAML} written: {m.undefined_reason}", file=sys.stderr)
    if problems or evaluation.unlabelled or (m.undefined_reason and not run.stopped_early):
        return EXIT_ATTENTION
    return EXIT_OK
