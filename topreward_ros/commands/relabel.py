"""`topreward relabel`: apply a (calibrated) success threshold to scored outputs, without the model.

Exit codes (``commands.options``): 0 done; 2 nothing could start (no
threshold given, an unreadable parameters file, a directory that is not a
scored output); 130 interrupted (a re-run with the same thresholds goes
on where it stopped).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from topreward_ros.commands.options import EXIT_INTERRUPTED, EXIT_OK, EXIT_UNUSABLE


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "relabel",
        help="apply a new success threshold (global or per task) to bag/lerobot outputs "
        "from their stored scores, without re-scoring",
        description="Rewrite the success columns, episode verdicts, episode results and "
        "progress.mcap of OUT_DIR (an output of `topreward bag` or `topreward "
        "lerobot`) at a new success threshold, from the per-tick scores on disk. "
        "Atomic and resumable; manifest.json records the thresholds.",
    )
    p.add_argument(
        "out_dirs",
        nargs="+",
        type=Path,
        metavar="OUT_DIR",
        help="output directory of topreward bag / topreward lerobot",
    )
    p.add_argument(
        "--params-file",
        type=Path,
        default=None,
        help="a ROS 2 parameters file (e.g. calibrated.yaml of topreward eval): its "
        "success_threshold and, if any, its per-task thresholds",
    )
    p.add_argument(
        "--success-threshold",
        type=float,
        default=None,
        help="the global success threshold in nats (overrides the file's)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no per-episode lines")
    p.set_defaults(func=run)


def thresholds_from_args(args: argparse.Namespace) -> Any:
    """The thresholds to apply: the file's, its global one replaced by --success-threshold."""
    from topreward_ros.files.params_file import read_params_file
    from topreward_ros.scoring.thresholds import SuccessThresholds, thresholds_from_params

    params = read_params_file(args.params_file) if args.params_file is not None else {}
    if args.success_threshold is None and "success_threshold" not in params:
        raise ValueError(
            "give the threshold: --success-threshold NATS, or --params-file with a "
            "success_threshold (calibrated.yaml of topreward eval)"
        )
    thresholds = thresholds_from_params(params, default=0.0)
    if args.success_threshold is not None:
        thresholds = SuccessThresholds(args.success_threshold, thresholds.per_task)
    return thresholds


def run(args: argparse.Namespace) -> int:
    from topreward_ros.offline.relabel import RelabelError, relabel

    try:
        thresholds = thresholds_from_args(args)
    except ValueError as exc:
        print(f"topreward relabel: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    per_task = f" ({len(thresholds.per_task)} per-task)" if thresholds.per_task else ""
    for out_dir in args.out_dirs:

        def say(index: int, entry: dict[str, Any]) -> None:
            result = entry.get("result") or {}
            if not args.quiet:
                print(f"  episode {index:4d}  threshold {result.get('threshold'):.4f}  success {result.get('success')}")

        try:
            report = relabel(out_dir, thresholds, on_episode=say)
        except RelabelError as exc:
            print(f"topreward relabel: {exc}", file=sys.stderr)
            return EXIT_UNUSABLE
        except KeyboardInterrupt:
            print(f"topreward relabel: interrupted; run it again to go on ({out_dir})", file=sys.stderr)
            return EXIT_INTERRUPTED
        print(
            f"{out_dir}: threshold {thresholds.default:.4f}{per_task}: {report.episodes} episodes "
            f"relabelled, {report.skipped} already done, {report.unscored} unscored records, "
            f"{len(report.changed_verdicts)} verdicts changed"
        )
    return EXIT_OK
