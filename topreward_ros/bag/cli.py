"""`topreward bag` and `topreward replay`: argument parsing and exit codes only.

The logic lives in ``bag.offline`` and ``bag.replay``; this module turns
command-line options into their configuration objects, prints the report
and maps outcomes to exit codes:

* 0: everything asked for was done;
* 1: the run finished but some episode failed or was refused (its
  instruction holds control tokens), the bag was damaged, or no episode had
  a camera frame to score (completed episodes are kept; a re-run resumes;
  the manifest says what the run found);
* 2: nothing could start (bad option or instruction, unusable bag, a chosen
  camera or instruction topic without messages, model not loadable);
* 130: interrupted (completed episodes are kept; a re-run resumes).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_UNUSABLE = 2
EXIT_INTERRUPTED = 130


def register(subparsers: Any) -> None:
    """Add the ``bag`` and ``replay`` subcommands to the ``topreward`` parser."""
    _register_bag(subparsers)
    _register_replay(subparsers)


# -- topreward bag -----------------------------------------------------------------------


def _register_bag(subparsers: Any) -> None:
    from topreward_ros.scoring.config import DEFAULT_MODEL, DEFAULT_SUCCESS_THRESHOLD

    p = subparsers.add_parser(
        "bag",
        help="score a rosbag2 bag offline (progress curves, relabel tables, MCAP, plots)",
        description="Score every episode of a rosbag2 bag (MCAP or sqlite3; a bag directory "
        "or a single .mcap/.db3 file) with the same windowing and tick code as the node. "
        "Writes per episode: curve.json, frames.parquet/.csv, progress.mcap, plot.png; "
        "re-running into the same output directory resumes. Several bags, a directory of "
        "bags or a list file give OUTPUT/<bag name>/ per bag plus runs.json and combined "
        "tables; --ray runs the same work on a Ray cluster.",
    )
    p.add_argument("bag", nargs="*", metavar="IN",
                   help="bag directory or .mcap / .db3 file; several bags, a directory of bags, "
                   "or @LIST (a file naming one path per line) score many bags, each into "
                   "OUTPUT/<bag name>/")
    p.add_argument("-o", "--output", type=Path, required=True, help="output directory")
    p.add_argument("--list", action="append", type=Path, metavar="FILE",
                   help="file naming bags, one path per line (# comments); repeatable")
    g = p.add_argument_group("topics")
    g.add_argument("--camera", action="append", dest="cameras", metavar="TOPIC",
                   help="image topic (Image or CompressedImage); repeat for several cameras, "
                   "the first is the primary. Default: the bag's only image topic")
    g.add_argument("--instruction-topic", default="/instruction",
                   help="std_msgs/String topic with the task instruction (default: %(default)s)")
    g.add_argument("--instruction",
                   help="fixed instruction for the whole bag (instead of a topic)")
    g.add_argument("--reset-topic", help="a message on this topic starts a new episode")
    # Options a parameters file can also set default to None here and are
    # resolved in apply_params_file: command line, then file, then default.
    g = p.add_argument_group("model")
    g.add_argument("--model", help=f"hub id or local directory (default: {DEFAULT_MODEL})")
    g.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    g.add_argument("--dtype", help="auto | bfloat16 | float16 | float32")
    g.add_argument("--local-files-only", action="store_true", help="never contact the hub")
    g.add_argument("--torch-threads", type=int, default=None, help="CPU threads for torch")
    g = p.add_argument_group("scoring (same meaning as the node's parameters)")
    g.add_argument("--params-file", type=Path, metavar="YAML",
                   help="a ROS 2 parameters file of the node (e.g. calibrated.yaml from topreward eval): "
                   "its " + ", ".join(BAG_PARAMS) + " apply unless given as options; other keys are "
                   "ignored")
    g.add_argument("--sample-fps", type=float, help="(default: 2.0)")
    g.add_argument("--max-frames", type=int, help="(default: 256)")
    g.add_argument("--sync-tolerance", type=float, metavar="SECONDS", help="(default: 0.05)")
    g.add_argument("--view-size", type=int, help="(default: 244)")
    g.add_argument("--rate", type=float, metavar="HZ",
                   help="the node's scoring timer rate in bag time (node: rate_hz; default: 1.0)")
    g.add_argument("--success-threshold", type=float,
                   help=f"(default: {DEFAULT_SUCCESS_THRESHOLD})")
    g.add_argument("--success-window", type=int, help="(default: 3)")
    g.add_argument("--success-consecutive", type=int, help="(default: 2)")
    g.add_argument("--stamp-jump-restart", type=float, metavar="SECONDS", help="(default: 1.0)")
    g.add_argument("--stamp-gap-restart", type=float, metavar="SECONDS",
                   help="a primary camera stamp more than this after the previous one starts a new "
                   "episode (default: 60.0)")
    g.add_argument("--num-prefixes", type=int, default=15, help="K of the offline curve")
    g = p.add_argument_group("run")
    g.add_argument("--episode-offset", type=int, default=0,
                   help="added to episode_index in the tables (LeRobot join)")
    g.add_argument("--max-episodes", type=int, default=None,
                   help="score at most this many episodes now; a re-run continues")
    g.add_argument("--no-plot", action="store_true", help="skip the PNG plots")
    g.add_argument("--video", action="store_true",
                   help="write progress.mp4 per episode: the node's progress picture at every tick")
    g.add_argument("--force", action="store_true",
                   help="redo everything even if the output directory has results")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar, summary only")
    g = p.add_argument_group("Ray (optional 'scale' extra)")
    g.add_argument("--ray", nargs="?", const="", default=None, metavar="auto|local|ADDRESS",
                   help="score on Ray: no value = RAY_ADDRESS or the cluster running on this "
                   "machine, else a new local instance; auto = a running cluster only; local = "
                   "always a new instance for this run; or a cluster address")
    g.add_argument("--replicas", type=int, default=None,
                   help="model replicas (default: one per GPU of the cluster, else 1)")
    g.add_argument("--cpus-per-replica", type=float, default=1.0,
                   help="CPUs per replica (default: %(default)s)")
    g.add_argument("--gpus-per-replica", type=float, default=None,
                   help="GPUs per replica, may be a fraction (default: 1 where the cluster has "
                   "GPUs and --device is not cpu, else 0)")
    g.add_argument("--retries", type=int, default=1,
                   help="times a bag whose replica died is handed out again (default: "
                   "%(default)s)")
    p.set_defaults(func=run_bag)


#: Node parameters ``--params-file`` may set: option dest, type, default.
BAG_PARAMS: dict[str, tuple[str, type, Any]] = {
    "model": ("model", str, None),  # default: DEFAULT_MODEL (resolved lazily)
    "device": ("device", str, "auto"),
    "dtype": ("dtype", str, "auto"),
    "local_files_only": ("local_files_only", bool, False),
    "torch_threads": ("torch_threads", int, None),
    "sample_fps": ("sample_fps", float, 2.0),
    "max_frames": ("max_frames", int, 256),
    "sync_tolerance_s": ("sync_tolerance", float, 0.05),
    "view_size": ("view_size", int, 244),
    "rate_hz": ("rate", float, 1.0),
    "success_threshold": ("success_threshold", float, None),  # DEFAULT_SUCCESS_THRESHOLD
    "success_window": ("success_window", int, 3),
    "success_consecutive": ("success_consecutive", int, 2),
    "stamp_jump_restart_s": ("stamp_jump_restart", float, 1.0),
    "stamp_gap_restart_s": ("stamp_gap_restart", float, 60.0),
}


def apply_params_file(args: argparse.Namespace,
                      table: dict[str, tuple[str, type, Any]] | None = None) -> None:
    """Fill options not given on the command line from ``--params-file``, then from defaults.

    ``table`` maps node parameters to (option dest, type, default); BAG_PARAMS
    unless given. A ``list`` parameter is a list of strings (``camera_topics``),
    whose relative names are taken as in the root namespace (``camera/image_raw``
    is the bag topic ``/camera/image_raw``).
    """
    from topreward_ros.params_file import ParamsFileError, read_params_file
    from topreward_ros.scoring.config import DEFAULT_MODEL, DEFAULT_SUCCESS_THRESHOLD

    params = read_params_file(args.params_file) if args.params_file else {}
    defaults = {"model": DEFAULT_MODEL, "success_threshold": DEFAULT_SUCCESS_THRESHOLD}
    for key, (dest, kind, default) in (BAG_PARAMS if table is None else table).items():
        given = getattr(args, dest)
        if kind is bool:
            given = given or None  # a store_true flag left off is not a choice
        if given is not None:
            continue
        if key not in params:
            setattr(args, dest, defaults.get(key, default))
            continue
        value = params[key]
        ok = (isinstance(value, bool) if kind is bool else isinstance(value, str) if kind is str
              else isinstance(value, int) and not isinstance(value, bool) if kind is int
              else isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)
              if kind is list
              else isinstance(value, (int, float)) and not isinstance(value, bool))
        if not ok:
            what = "non-empty list of topic names" if kind is list else kind.__name__
            raise ParamsFileError(f"{args.params_file}: {key} must be a {what}, got {value!r}")
        if key == "torch_threads" and value == 0:
            value = None  # the node's 0 = torch's default
        if kind is list:
            value = [v if v.startswith("/") else f"/{v}" for v in value]
        setattr(args, dest, kind(value) if value is not None else None)


def _pick_cameras(bag: Path, cameras: list[str] | None) -> tuple[str, ...]:
    from topreward_ros.bag.fleet import pick_cameras

    return pick_cameras(bag, cameras)


def bag_options(args: argparse.Namespace, cameras: tuple[str, ...]) -> Any:
    """``BagScoringOptions`` from the command line, for the given camera topics."""
    from topreward_ros.bag.offline import BagScoringOptions

    return BagScoringOptions(
        camera_topics=cameras,
        instruction_topic=args.instruction_topic,
        instruction=args.instruction,
        reset_topic=args.reset_topic,
        tick_rate_hz=args.rate,
        stamp_jump_restart_s=args.stamp_jump_restart,
        stamp_gap_restart_s=args.stamp_gap_restart,
        num_prefixes=args.num_prefixes,
        episode_offset=args.episode_offset,
        max_episodes=args.max_episodes,
        plot=not args.no_plot, video=args.video,
    )


def episode_settings(args: argparse.Namespace) -> Any:
    from topreward_ros.episode import EpisodeSettings

    return EpisodeSettings(
        sample_fps=args.sample_fps, max_frames=args.max_frames,
        sync_tolerance_s=args.sync_tolerance, view_size=args.view_size,
        success_threshold=args.success_threshold, success_window=args.success_window,
        success_consecutive=args.success_consecutive,
    )


def scorer_config(args: argparse.Namespace) -> Any:
    from topreward_ros.scoring import ScorerConfig

    return ScorerConfig(
        model=args.model, device=args.device, dtype=args.dtype,
        local_files_only=args.local_files_only, torch_threads=args.torch_threads,
        sample_fps=args.sample_fps, num_prefixes=args.num_prefixes,
        view_size=args.view_size, success_window=args.success_window,
        success_threshold=args.success_threshold,
    )


def run_bag(args: argparse.Namespace) -> int:
    from topreward_ros.bag.inputs import expand_inputs
    from topreward_ros.bag.manifest import ManifestError
    from topreward_ros.bag.offline import BagScorer
    from topreward_ros.bag.reader import BagError, BagReader
    from topreward_ros.scoring import ModelLoadError, load_scorer

    if args.ray and Path(args.ray).exists():
        # `--ray BAG ...`: the value is an input, not a cluster address.
        args.bag.insert(0, args.ray)
        args.ray = ""
    try:
        apply_params_file(args)
        inputs = expand_inputs(args.bag, args.list or ())
    except (BagError, ValueError) as exc:
        print(f"topreward bag: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    if not inputs.single or args.ray is not None:
        from topreward_ros.bag.cli_fleet import run_fleet

        return run_fleet(args, inputs)
    bag = inputs.bags[0].path
    try:
        options = bag_options(args, _pick_cameras(bag, args.cameras))
        settings = episode_settings(args)
        config = scorer_config(args)
        # Check the bag and its topics before the (slow) model load.
        from topreward_ros.bag.offline import check_bag

        with BagReader(bag) as reader:
            check_bag(reader, options)
    except (BagError, ValueError) as exc:
        print(f"topreward bag: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    try:
        scorer = load_scorer(config)
    except ModelLoadError as exc:
        print(f"topreward bag: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    try:
        report = BagScorer(scorer, settings, options).run(
            bag, args.output, force=args.force, progress=not args.quiet)
    except (BagError, ManifestError) as exc:
        print(f"topreward bag: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    print(report.summary())
    if report.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if report.ok else EXIT_PARTIAL


# -- topreward replay --------------------------------------------------------------------

#: /clock messages per wall second (``topreward replay --clock-hz``). Every one wakes each
#: sim-time node's executor (timers are re-evaluated), which on a 2-core machine that also
#: runs the model takes CPU from scoring; 20 Hz still fires a 1 Hz scoring timer within
#: 50 ms of bag time. Defined here, not in bag.replay, so that building the parser does
#: not import the bag reader.
DEFAULT_CLOCK_HZ = 20.0


def _register_replay(subparsers: Any) -> None:

    p = subparsers.add_parser(
        "replay",
        help="publish a bag's topics into the ROS graph with /clock (like ros2 bag play --clock)",
        description="Publish a bag's messages on their topics, in log-time order, with "
        "/clock in bag time, so nodes with use_sim_time:=true process it as if live. "
        "Messages go out as their stored bytes (no re-encoding).",
    )
    p.add_argument("bag", type=Path, help="bag directory or .mcap / .db3 file")
    p.add_argument("--topics", nargs="+", metavar="TOPIC", help="only these topics")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed multiplier")
    p.add_argument("--clock-hz", type=float, default=DEFAULT_CLOCK_HZ,
                   help="/clock messages per second of wall time (default: %(default)s; each "
                   "one wakes every sim-time node, so keep it low on a small machine)")
    p.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    p.add_argument("--qos", choices=("reliable", "best_effort"), default="reliable",
                   help="reliability of the publishers (default: %(default)s)")
    p.add_argument("--wait-for", nargs="*", metavar="TOPIC", default=None,
                   help="before starting, wait until each TOPIC has a subscriber "
                   "(no TOPIC: every replayed topic)")
    p.add_argument("--wait-timeout", type=float, default=30.0, metavar="SECONDS")
    p.add_argument("--linger", type=float, default=1.0, metavar="SECONDS",
                   help="keep publishing /clock this long after the last message")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=run_replay)


def run_replay(args: argparse.Namespace) -> int:
    from topreward_ros.bag.reader import BagError
    from topreward_ros.bag.replay import ReplayError, ReplayOptions, replay_bag

    try:
        options = ReplayOptions(
            topics=tuple(args.topics) if args.topics else None,
            rate=args.rate, clock_hz=args.clock_hz, publish_clock=not args.no_clock,
            reliable=args.qos == "reliable",
            wait_for=None if args.wait_for is None else tuple(args.wait_for),
            wait_timeout_s=args.wait_timeout, linger_s=args.linger,
        )
        result = replay_bag(args.bag, options, progress=not args.quiet)
    except (BagError, ReplayError, ValueError) as exc:
        print(f"topreward replay: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    print(result.summary())
    if result.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if result.ok else EXIT_PARTIAL
