"""`topreward lerobot`: score a local LeRobot v3 dataset; argument parsing and exit codes only.

The logic lives in ``lerobot.offline``. Exit codes are those of
``topreward bag``: 0 done, 1 some episode failed (completed ones kept, a
re-run resumes), 2 nothing could start, 130 interrupted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from topreward_ros.bag.cli import EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, EXIT_UNUSABLE


def register(subparsers: Any) -> None:
    """Add the ``lerobot`` and ``lerobot-progress`` subcommands to the ``topreward`` parser."""
    _register_lerobot(subparsers)
    _register_progress(subparsers)


def _register_lerobot(subparsers: Any) -> None:
    from topreward_ros.scoring.config import DEFAULT_MODEL, DEFAULT_SUCCESS_THRESHOLD

    p = subparsers.add_parser(
        "lerobot",
        help="score a local LeRobot v3 dataset offline (curves, tables, RA-BC progress parquet)",
        description="Score every episode of a local LeRobot dataset (v3 layout: meta/, data/, "
        "videos/) with the same windowing and tick code as the node and `topreward bag`, the "
        "episode's task as instruction and its timestamps as frame stamps. Writes per episode: "
        "curve.json, frames.parquet/.csv, progress.mcap, plot.png; at the top: frames.parquet/.csv "
        "and topreward_progress.parquet (LeRobot RA-BC sample weighting). Re-running into the "
        "same output directory resumes.",
    )
    p.add_argument("dataset", type=Path, help="dataset root (the directory holding meta/info.json)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output directory")
    g = p.add_argument_group("input")
    g.add_argument("--camera", action="append", dest="cameras", metavar="KEY",
                   help="video feature, e.g. observation.images.front; repeat for several cameras, "
                   "the first is the primary. Default: the dataset's only video feature")
    g.add_argument("--episodes", type=int, nargs="+", metavar="N",
                   help="score only these episode indices (default: all)")
    g.add_argument("--instruction", help="fixed instruction for every episode (default: its task)")
    g.add_argument("--video-tolerance", type=float, default=0.5, metavar="FRAMES",
                   help="leave a frame out when the nearest decoded picture is further than this "
                   "many frame periods from its timestamp (default: %(default)s)")
    g = p.add_argument_group("model")
    g.add_argument("--model", default=DEFAULT_MODEL, help="hub id or local directory (default: %(default)s)")
    g.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    g.add_argument("--dtype", default="auto", help="auto | bfloat16 | float16 | float32")
    g.add_argument("--local-files-only", action="store_true", help="never contact the hub")
    g.add_argument("--torch-threads", type=int, default=None, help="CPU threads for torch")
    g = p.add_argument_group("scoring (same meaning as the node's parameters)")
    g.add_argument("--sample-fps", type=float, default=2.0)
    g.add_argument("--max-frames", type=int, default=256)
    g.add_argument("--sync-tolerance", type=float, default=0.05, metavar="SECONDS")
    g.add_argument("--view-size", type=int, default=244)
    g.add_argument("--rate", type=float, default=1.0, metavar="HZ",
                   help="the node's scoring timer rate in episode time (node: rate_hz)")
    g.add_argument("--success-threshold", type=float, default=DEFAULT_SUCCESS_THRESHOLD)
    g.add_argument("--success-window", type=int, default=3)
    g.add_argument("--success-consecutive", type=int, default=2)
    g.add_argument("--num-prefixes", type=int, default=15, help="K of the offline curve")
    g = p.add_argument_group("run")
    g.add_argument("--max-episodes", type=int, default=None,
                   help="score at most this many episodes now; a re-run continues")
    g.add_argument("--no-plot", action="store_true", help="skip the PNG plots")
    g.add_argument("--video", action="store_true",
                   help="write progress.mp4 per episode: the node's progress picture at every tick")
    g.add_argument("--force", action="store_true",
                   help="redo everything even if the output directory has results")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar, summary only")
    p.set_defaults(func=run_lerobot)


def _pick_cameras(dataset: Any, cameras: list[str] | None) -> tuple[str, ...]:
    from topreward_ros.lerobot.dataset import DatasetError

    if cameras:
        return tuple(cameras)
    keys = dataset.camera_keys
    if len(keys) == 1:
        return (keys[0],)
    if not keys:
        raise DatasetError(f"{dataset.root}: the dataset has no video feature")
    raise DatasetError(f"{dataset.root}: several video features ({', '.join(keys)}); choose with "
                       f"--camera (repeat it for several cameras, the first is the primary)")


def run_lerobot(args: argparse.Namespace) -> int:
    from topreward_ros.bag.manifest import ManifestError
    from topreward_ros.episode import EpisodeSettings
    from topreward_ros.lerobot.dataset import DatasetError, LeRobotDatasetDir
    from topreward_ros.lerobot.offline import DatasetScorer, DatasetScoringOptions, check_dataset
    from topreward_ros.scoring import ModelLoadError, ScorerConfig, load_scorer

    try:
        dataset = LeRobotDatasetDir(args.dataset)
        options = DatasetScoringOptions(
            camera_keys=_pick_cameras(dataset, args.cameras),
            episodes=tuple(args.episodes) if args.episodes else None,
            instruction=args.instruction, tick_rate_hz=args.rate,
            num_prefixes=args.num_prefixes, video_tolerance_frames=args.video_tolerance,
            max_episodes=args.max_episodes, plot=not args.no_plot, video=args.video,
        )
        settings = EpisodeSettings(
            sample_fps=args.sample_fps, max_frames=args.max_frames,
            sync_tolerance_s=args.sync_tolerance, view_size=args.view_size,
            success_threshold=args.success_threshold, success_window=args.success_window,
            success_consecutive=args.success_consecutive,
        )
        config = ScorerConfig(
            model=args.model, device=args.device, dtype=args.dtype,
            local_files_only=args.local_files_only, torch_threads=args.torch_threads,
            sample_fps=args.sample_fps, num_prefixes=args.num_prefixes,
            view_size=args.view_size, success_window=args.success_window,
            success_threshold=args.success_threshold,
        )
        check_dataset(dataset, options)  # before the (slow) model load
    except (DatasetError, ValueError) as exc:
        print(f"topreward lerobot: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    try:
        scorer = load_scorer(config)
    except ModelLoadError as exc:
        print(f"topreward lerobot: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    try:
        report = DatasetScorer(scorer, settings, options).run(
            args.dataset, args.output, force=args.force, progress=not args.quiet)
    except (DatasetError, ManifestError) as exc:
        print(f"topreward lerobot: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    print(report.summary())
    if report.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if report.ok else EXIT_PARTIAL


# -- topreward lerobot-progress ----------------------------------------------------------


def _register_progress(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "lerobot-progress",
        help="key a scored bag's progress to a LeRobot dataset's frame index (RA-BC parquet)",
        description="Join OUT_DIR/frames.parquet (from `topreward bag`) with a local LeRobot "
        "dataset converted from the same recording, on episode_index + frame_index with the "
        "timestamps as a check, and write the RA-BC progress parquet with the dataset's own "
        "`index`. Refuses, naming the first mismatch, when the two do not line up.",
    )
    p.add_argument("scored", type=Path, help="output directory of `topreward bag`")
    p.add_argument("--dataset", type=Path, required=True, help="LeRobot dataset root")
    p.add_argument("-o", "--output", type=Path, required=True, help="progress parquet to write")
    p.set_defaults(func=run_progress)


def run_progress(args: argparse.Namespace) -> int:
    from topreward_ros.lerobot.dataset import DatasetError
    from topreward_ros.lerobot.join import write_dataset_progress

    try:
        rows = write_dataset_progress(args.scored, args.dataset, args.output)
    except DatasetError as exc:
        print(f"topreward lerobot-progress: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    print(f"{args.output}: {rows} frames keyed to {args.dataset}")
    return EXIT_OK
