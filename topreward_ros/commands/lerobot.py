"""`topreward lerobot`: score a local LeRobot v3 dataset; argument parsing and exit codes only.

The dataset is a ``sources.lerobot.DatasetSource``; the shared job runner
(``commands.jobs``) scores it in this process or, with ``--ray``, spreads its
episodes over model replicas. Exit codes are those of ``topreward bag``: 0
done, 1 some episode failed (completed ones kept, a re-run resumes), 2
nothing could start, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from topreward_ros.commands import options as opts
from topreward_ros.commands.options import EXIT_OK, EXIT_UNUSABLE

#: Node parameters ``topreward lerobot --params-file`` may set.
LEROBOT_PARAMS: dict[str, tuple[str, type, Any]] = {**opts.MODEL_PARAMS, **opts.SCORING_PARAMS}


def register(subparsers: Any) -> None:
    """Add the ``lerobot``, ``lerobot-progress`` and ``lerobot-episodes`` subcommands to the parser."""
    _register_lerobot(subparsers)
    _register_progress(subparsers)
    _register_episodes(subparsers)


def _register_lerobot(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "lerobot",
        help="score a local LeRobot v3 dataset offline (curves, tables, RA-BC progress parquet)",
        description="Score every episode of a local LeRobot dataset (v3 layout: meta/, data/, "
        "videos/) with the same windowing and tick code as the node and `topreward bag`, the "
        "episode's task as instruction and its timestamps as frame stamps. Writes per episode: "
        "curve.json, frames.parquet/.csv, progress.mcap, plot.png; at the top: frames.parquet/.csv "
        "and topreward_progress.parquet (LeRobot RA-BC sample weighting). Re-running into the "
        "same output directory resumes; --ray spreads the episodes over model replicas.",
    )
    p.add_argument("dataset", type=Path, nargs="?", help="dataset root (the directory holding meta/info.json)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output directory")
    g = p.add_argument_group("input")
    g.add_argument(
        "--camera",
        action="append",
        dest="cameras",
        metavar="KEY",
        help="video feature, e.g. observation.images.front; repeat for several cameras, "
        "the first is the primary. Default: the dataset's only video feature",
    )
    g.add_argument(
        "--episodes", type=int, nargs="+", metavar="N", help="score only these episode indices (default: all)"
    )
    g.add_argument("--instruction", help="fixed instruction for every episode (default: its task)")
    g.add_argument(
        "--video-tolerance",
        type=float,
        default=0.5,
        metavar="FRAMES",
        help="leave a frame out when the nearest decoded picture is further than this "
        "many frame periods from its timestamp (default: %(default)s)",
    )
    opts.add_model_options(p)
    opts.add_scoring_options(p, LEROBOT_PARAMS, "episode")
    opts.add_run_options(p)
    opts.add_ray_options(p)
    p.set_defaults(func=run_lerobot)


def dataset_source(
    args: argparse.Namespace,
    root: Path,
    cameras: list[str] | None,
    episodes: tuple[int, ...] | None,
    instruction: str | None,
) -> Any:
    """The dataset as an episode source (options checked; the dataset opened on use)."""
    from topreward_ros.lerobot.dataset import LeRobotDatasetDir
    from topreward_ros.sources.lerobot import DatasetSource, DatasetSourceOptions, pick_camera_keys

    options = DatasetSourceOptions(
        camera_keys=pick_camera_keys(LeRobotDatasetDir(root), cameras),
        episodes=episodes,
        instruction=instruction,
        video_tolerance_frames=args.video_tolerance,
    )
    return DatasetSource(root, options)


def run_lerobot(args: argparse.Namespace) -> int:
    from topreward_ros.commands.jobs import input_job, run_jobs
    from topreward_ros.files.params_file import ParamsFileError
    from topreward_ros.lerobot.dataset import DatasetError

    if args.dataset is None and args.ray and Path(args.ray).exists():
        # `--ray DATASET`: the value is the dataset, not a cluster address.
        args.dataset, args.ray = Path(args.ray), ""
    if args.dataset is None:
        print("topreward lerobot: give the dataset root (the directory holding meta/info.json)", file=sys.stderr)
        return EXIT_UNUSABLE
    if args.ray is not None:
        args.dataset = Path(opts.absolute_inputs([args.dataset])[0])
    try:
        opts.apply_params_file(args, LEROBOT_PARAMS, "topreward lerobot")
        settings = opts.offline_settings(args)
        config = opts.scorer_config(args)
    except (DatasetError, ParamsFileError, ValueError) as exc:
        print(f"topreward lerobot: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    # The dataset and the options are checked before the (slow) model load.
    job = input_job(
        Path(args.dataset).name,
        Path(args.dataset),
        Path(args.output),
        lambda: dataset_source(
            args, Path(args.dataset), args.cameras, tuple(args.episodes) if args.episodes else None, args.instruction
        ),
    )
    code, _ = run_jobs(
        "topreward lerobot",
        args,
        [job],
        settings,
        config,
        single=True,
        raw_inputs=[str(args.dataset)],
        kind="dataset",
        on_replica_episode=getattr(args, "on_replica_episode", None),
    )
    return code


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


# -- topreward lerobot-episodes ----------------------------------------------------------


def _register_episodes(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "lerobot-episodes",
        help="the episodes to train on (success verdict), as lerobot-train's --dataset.episodes takes them",
        description="Print the episodes of a scored dataset (the output directory of `topreward lerobot`) "
        "whose success score passes the threshold, as the list lerobot-train's --dataset.episodes takes "
        "(e.g. [0,2,5]); the others are named on stderr. Failed episodes are left out of training this "
        "way, not by removing their rows from topreward_progress.parquet: LeRobot gives a frame with no "
        "progress value its fallback weight 1.0, its largest.",
    )
    p.add_argument("scored", type=Path, help="output directory of `topreward lerobot` (or `topreward bag`)")
    p.add_argument(
        "--success-threshold",
        type=float,
        help="success score to exceed (default: success_threshold of --params-file, else the run's own)",
    )
    p.add_argument(
        "--success-window",
        type=int,
        help="prefixes averaged into the success score (default: success_window of --params-file, else the run's own)",
    )
    p.add_argument(
        "--params-file",
        type=Path,
        metavar="YAML",
        help="calibrated.yaml of topreward eval (its success_threshold and success_window)",
    )
    p.set_defaults(func=run_episodes)


def run_episodes(args: argparse.Namespace) -> int:
    from topreward_ros.files.params_file import ParamsFileError, read_params_file
    from topreward_ros.lerobot.train_episodes import SelectionError, select_episodes

    try:
        params = read_params_file(args.params_file) if args.params_file else {}
        threshold = args.success_threshold if args.success_threshold is not None else params.get("success_threshold")
        window = args.success_window if args.success_window is not None else params.get("success_window")
        selection = select_episodes(args.scored, threshold, window)
    except (ParamsFileError, SelectionError, TypeError, ValueError) as exc:
        print(f"topreward lerobot-episodes: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    left_out = ", ".join(f"{v.episode_index} ({v.success_score:.3f})" for v in selection.verdicts if not v.success)
    print(
        f"{len(selection.train)} of {len(selection.verdicts)} episodes pass success score > "
        f"{selection.threshold:g} (window {selection.success_window}); left out: {left_out or 'none'}",
        file=sys.stderr,
    )
    print(selection.episodes_argument())
    return EXIT_OK
