"""`topreward bag` and `topreward replay`: argument parsing and exit codes only.

``topreward bag`` builds one ``sources.bag.BagSource`` per bag and hands
them to the shared job runner (``commands.jobs``): the in-process engine,
or Ray with ``--ray``. Exit codes (``commands.options``):

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

from topreward_ros.bag.base import DEFAULT_CLOCK_HZ
from topreward_ros.commands import options as opts
from topreward_ros.commands.options import EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, EXIT_UNUSABLE

__all__ = ["EXIT_INTERRUPTED", "EXIT_OK", "EXIT_PARTIAL", "EXIT_UNUSABLE", "BAG_PARAMS", "register"]

#: Node parameters ``topreward bag --params-file`` may set: option dest, type, default.
BAG_PARAMS: dict[str, tuple[str, type, Any]] = {
    **opts.MODEL_PARAMS,
    **opts.TOPIC_PARAMS,
    **opts.SCORING_PARAMS,
    **opts.STAMP_PARAMS,
}


def register(subparsers: Any) -> None:
    """Add the ``bag`` and ``replay`` subcommands to the ``topreward`` parser."""
    _register_bag(subparsers)
    _register_replay(subparsers)


# -- topreward bag -----------------------------------------------------------------------


def _register_bag(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bag",
        help="score a rosbag2 bag offline (progress curves, relabel tables, MCAP, plots)",
        description="Score every episode of a rosbag2 bag (MCAP or sqlite3; a bag directory "
        "or a single .mcap/.db3 file) with the same windowing and tick code as the node. "
        "Writes per episode: curve.json, frames.parquet/.csv, progress.mcap, plot.png; "
        "re-running into the same output directory resumes. Several bags, a directory of "
        "bags or a list file give OUTPUT/<bag name>/ per bag plus runs.json and combined "
        "tables; --ray spreads the episodes over model replicas on a Ray cluster.",
    )
    p.add_argument(
        "bag",
        nargs="*",
        metavar="IN",
        help="bag directory or .mcap / .db3 file; several bags, a directory of bags, "
        "or @LIST (a file naming one path per line) score many bags, each into "
        "OUTPUT/<bag name>/",
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="output directory")
    p.add_argument(
        "--list",
        action="append",
        type=Path,
        metavar="FILE",
        help="file naming bags, one path per line (# comments); repeatable",
    )
    g = p.add_argument_group("topics")
    g.add_argument(
        "--camera",
        action="append",
        dest="cameras",
        metavar="TOPIC",
        help="image topic (Image or CompressedImage); repeat for several cameras, "
        "the first is the primary. Default: camera_topics of --params-file, else the "
        "bag's only image topic",
    )
    g.add_argument(
        "--instruction-topic",
        help="std_msgs/String topic with the task instruction (default: instruction_topic of "
        "--params-file, else /instruction)",
    )
    g.add_argument("--instruction", help="fixed instruction for the whole bag (instead of a topic)")
    g.add_argument(
        "--reset-topic",
        help="a message on this topic starts a new episode (default: reset_topic of --params-file, else none)",
    )
    opts.add_model_options(p)
    opts.add_stamp_options(opts.add_scoring_options(p, BAG_PARAMS, "bag"))
    g = opts.add_run_options(p)
    g.add_argument("--episode-offset", type=int, default=0, help="added to episode_index in the tables (LeRobot join)")
    opts.add_ray_options(p)
    p.set_defaults(func=run_bag)


def bag_source_options(args: argparse.Namespace, cameras: tuple[str, ...]) -> Any:
    """``BagSourceOptions`` from the command line, for the given camera topics."""
    from topreward_ros.sources.bag import BagSourceOptions

    return opts.from_options(BagSourceOptions, args, camera_topics=cameras)


def run_bag(args: argparse.Namespace) -> int:
    from topreward_ros.bag.reader import BagError
    from topreward_ros.commands.jobs import input_job, run_jobs
    from topreward_ros.files.params_file import ParamsFileError
    from topreward_ros.sources.bag import BagSource, pick_cameras
    from topreward_ros.sources.bag_inputs import expand_inputs

    args.bag = opts.ray_inputs(args, args.bag)
    if args.ray is not None:
        args.list = [Path(p) for p in opts.absolute_inputs(args.list or [])]
    try:
        opts.apply_params_file(args, BAG_PARAMS, "topreward bag")
        inputs = expand_inputs(args.bag, args.list or ())
        bag_source_options(args, ("/camera",))  # option errors before touching any bag
        settings = opts.offline_settings(args)
        config = opts.scorer_config(args)
    except (BagError, ParamsFileError, ValueError) as exc:
        print(f"topreward bag: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    for dup in inputs.duplicates:
        print(f"topreward bag: note: {dup} is named more than once; scored once", file=sys.stderr)
    jobs = [
        input_job(
            bag.name,
            bag.path,
            Path(args.output) if inputs.single else Path(args.output) / bag.name,
            lambda bag=bag: BagSource(bag.path, bag_source_options(args, pick_cameras(bag.path, args.cameras))),
        )
        for bag in inputs.bags
    ]
    raw_inputs = [str(a) for a in args.bag] + [f"@{f}" for f in (args.list or ())]
    code, _ = run_jobs(
        "topreward bag",
        args,
        jobs,
        settings,
        config,
        single=inputs.single,
        raw_inputs=raw_inputs,
        episode_offset=args.episode_offset,
        on_replica_episode=getattr(args, "on_replica_episode", None),
    )
    return code


# -- topreward replay --------------------------------------------------------------------


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
    p.add_argument(
        "--clock-hz",
        type=float,
        default=DEFAULT_CLOCK_HZ,
        help="/clock messages per second of wall time (default: %(default)s; each "
        "one wakes every sim-time node, so keep it low on a small machine)",
    )
    p.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    p.add_argument(
        "--qos",
        choices=("reliable", "best_effort"),
        default="reliable",
        help="reliability of the publishers (default: %(default)s)",
    )
    p.add_argument(
        "--wait-for",
        nargs="*",
        metavar="TOPIC",
        default=None,
        help="before starting, wait until each TOPIC has a subscriber (no TOPIC: every replayed topic)",
    )
    p.add_argument("--wait-timeout", type=float, default=30.0, metavar="SECONDS")
    p.add_argument(
        "--linger",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="keep publishing /clock this long after the last message",
    )
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=run_replay)


def run_replay(args: argparse.Namespace) -> int:
    from topreward_ros.bag.base import BagError
    from topreward_ros.node.bag_replay import ReplayError, ReplayOptions, replay_bag

    try:
        options = ReplayOptions(
            topics=tuple(args.topics) if args.topics else None,
            rate=args.rate,
            clock_hz=args.clock_hz,
            publish_clock=not args.no_clock,
            reliable=args.qos == "reliable",
            wait_for=None if args.wait_for is None else tuple(args.wait_for),
            wait_timeout_s=args.wait_timeout,
            linger_s=args.linger,
        )
        result = replay_bag(args.bag, options, progress=not args.quiet)
    except (BagError, ReplayError, ValueError) as exc:
        print(f"topreward replay: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    print(result.summary())
    if result.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if result.ok else EXIT_PARTIAL
