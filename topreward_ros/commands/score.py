"""``topreward score``: the progress curve of one video or frame directory.

The offline counterpart of the node for a single recording: frames are
sampled with the same 2 fps prefix-stable schedule from their real times
(a video's own timestamps, or ``--source-fps`` for a directory of images),
resized to the model's views, and scored over K growing prefixes. The curve
is printed; with ``--output`` it is also written as JSON (everything needed
to reproduce or compare it) and as a PNG plot.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from topreward_ros.commands import options as opts
from topreward_ros.commands.options import EXIT_OK, EXIT_PARTIAL, EXIT_UNUSABLE
from topreward_ros.files.atomic import write_text_atomic
from topreward_ros.sources.video import InputError, read_episode

RESULT_JSON = "score.json"
#: Node parameters ``topreward score --params-file`` may set: option dest, type, default.
SCORE_PARAMS: dict[str, tuple[str, type, Any]] = {
    "model": ("model", str, None),  # default: DEFAULT_MODEL
    "backend": ("backend", str, "transformers"),
    "device": ("device", str, "auto"),
    "dtype": ("dtype", str, "auto"),
    "torch_threads": ("torch_threads", int, None),
    "sample_fps": ("sample_fps", float, 2.0),
    "view_size": ("view_size", int, 244),
}
RESULT_PNG = "curve.png"
#: Thumbnails drawn above the plotted curve.
PLOT_THUMBNAILS = 8


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``score`` subcommand to the ``topreward`` command."""
    from topreward_ros.commands.options import add_backend_option
    from topreward_ros.scoring.config import DEFAULT_MODEL

    p = subparsers.add_parser(
        "score",
        help="progress curve of one video or directory of frames",
        description=__doc__.split("\n\n")[0] + ". Writes score.json and curve.png with --output.",
    )
    p.add_argument(
        "input",
        metavar="VIDEO_OR_FRAME_DIR",
        help="a video file (read with PyAV) or a directory of images read in name order",
    )
    p.add_argument("--instruction", required=True, help="the task, verbatim (e.g. 'put the cup on the plate')")
    opts.add_params_file_option(p, SCORE_PARAMS)
    p.add_argument("--model", help=f"hub id or local model directory (default {DEFAULT_MODEL})")
    add_backend_option(p)
    p.add_argument(
        "--source-fps",
        type=float,
        default=30.0,
        help="frame rate of a frame directory (default 30; a video uses its own timestamps)",
    )
    p.add_argument("--sample-fps", type=float, help="frames per second the model sees (default 2)")
    p.add_argument("--num-prefixes", type=int, default=15, help="K prefixes of the curve (default 15)")
    p.add_argument("--view-size", type=int, help="side of the square model view (default 244)")
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"directory for {RESULT_JSON} and {RESULT_PNG} (created; existing results are kept unless --force)",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing results in --output")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--dtype", help="auto, bfloat16, float16 or float32 (default auto)")
    p.add_argument("--torch-threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="score each prefix with an independent forward (the released code's way; slower, same result)",
    )
    p.set_defaults(func=run)
    return p


def _error(message: str) -> None:
    print(f"topreward score: error: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``topreward score``; returns the exit code."""
    from topreward_ros.files.params_file import ParamsFileError
    from topreward_ros.scoring import ScoringError, load_scorer, voc
    from topreward_ros.scoring.prompt import validate_instruction

    try:
        opts.apply_params_file(args, SCORE_PARAMS, "topreward score")
        config = opts.scorer_config(args)
    except (ParamsFileError, ValueError) as exc:
        _error(str(exc))
        return EXIT_UNUSABLE
    try:
        validate_instruction(args.instruction)
    except ScoringError as exc:
        _error(str(exc))
        return EXIT_UNUSABLE
    if not (math.isfinite(args.source_fps) and args.source_fps > 0):
        _error(f"--source-fps must be a finite number > 0, got {args.source_fps!r}")
        return EXIT_UNUSABLE
    output: Path | None = args.output
    if output is not None:
        existing = [output / n for n in (RESULT_JSON, RESULT_PNG) if (output / n).exists()]
        if existing and not args.force:
            _error(f"{', '.join(map(str, existing))} already exist(s); pass --force to overwrite")
            return EXIT_UNUSABLE
        if output.exists() and not output.is_dir():
            _error(f"--output {output} is not a directory")
            return EXIT_UNUSABLE
    try:
        episode = read_episode(Path(args.input), args.source_fps, config.sample_fps, config.view_size)
    except InputError as exc:
        _error(str(exc))
        return EXIT_UNUSABLE
    try:
        scorer = load_scorer(config)
        curve = scorer.curve(episode.views, episode.stamps_ns, args.instruction, use_cache=not args.no_cache)
    except ScoringError as exc:
        _error(str(exc))
        # A bad request (frames, instruction) is unusable input; the model failing is a failed run.
        return EXIT_UNUSABLE if isinstance(exc, ValueError) else EXIT_PARTIAL

    value_order = voc(curve.normalized)
    print(
        f"{args.input}: {episode.source_frames} {episode.kind} frames, {len(episode.views)} sampled at "
        f"{config.sample_fps:g} fps, model {curve.model_id}"
    )
    print(f"{'prefix':>6} {'frames':>6} {'t [s]':>8} {'log p True':>11} {'log p False':>12} {'progress':>8}")
    t0 = episode.stamps_ns[0]
    for i, n in enumerate(curve.prefix_lengths):
        print(
            f"{i + 1:>6} {n:>6} {(curve.stamps_ns[i] - t0) / 1e9:>8.2f} {curve.log_prob_true[i]:>11.4f} "
            f"{curve.log_prob_false[i]:>12.4f} {curve.normalized[i]:>8.3f}"
        )
    print(
        f"success score (mean raw log p of the last {config.success_window}): {curve.success_score:.4f} nats; "
        f"VOC {value_order:.3f}"
    )

    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        result = {
            "input": str(args.input),
            "input_kind": episode.kind,
            "instruction": args.instruction,
            "model_id": curve.model_id,
            "source_frames": episode.source_frames,
            "source_fps": args.source_fps if episode.kind == "image" else None,
            "sample_fps": config.sample_fps,
            "view_size": config.view_size,
            "num_prefixes": config.num_prefixes,
            "cached": not args.no_cache,
            "frame_source_indices": episode.source_indices,
            "frame_stamps_ns": episode.stamps_ns,
            "prefix_lengths": list(curve.prefix_lengths),
            "prefix_stamps_ns": list(curve.stamps_ns),
            "log_prob_true": list(curve.log_prob_true),
            "log_prob_false": list(curve.log_prob_false),
            "normalized": list(curve.normalized),
            "success_score": curve.success_score,
            "success_window": config.success_window,
            "voc": value_order,
            "latency_s": list(curve.latency_s),
        }
        write_text_atomic(output / RESULT_JSON, json.dumps(result, indent=2))
        from topreward_ros.rendering.plot import plot_curve

        picks = np.unique(
            np.linspace(0, len(episode.views) - 1, min(PLOT_THUMBNAILS, len(episode.views))).round().astype(int)
        )
        plot_curve(
            output / RESULT_PNG,
            curve,
            thumbnails=[episode.views[i] for i in picks],
            thumbnail_stamps_ns=[episode.stamps_ns[i] for i in picks],
            title=f"{args.instruction}  ({curve.model_id})",
        )
        print(f"wrote {output / RESULT_JSON} and {output / RESULT_PNG}")
    return EXIT_OK
