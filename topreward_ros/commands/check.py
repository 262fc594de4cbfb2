"""``topreward check``: whether a rig fits, before anything is recorded.

Reads the rig from the node's parameters file (cameras, view size, window,
rate, model, device, dtype) and prints the setup (torch build against the
NVIDIA driver, GPUs and their free memory), the model's weight memory, the
episode's cost (tokens per sample, tokens and KV cache at ``max_frames``,
when thinning starts) and a verdict with suggestions. ``--time`` loads the
model and measures a full forward at ``max_frames`` and one tick.
Nothing is downloaded: the model's configuration comes from a local
directory, the Hugging Face cache, or a built-in table of the Qwen3-VL sizes.

Exit codes: 0 fits (or cannot tell: no free-memory figure), 1 does not fit,
2 bad input (parameters file, option, unreadable model configuration).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from topreward_ros.commands.options import EXIT_OK, EXIT_UNUSABLE

#: `topreward check`'s own status: the rig was checked and does not fit the GPU.
EXIT_DOES_NOT_FIT = 1

#: Parameters of the node the check reads, with the node's defaults where
#: the scoring configuration does not hold them.
RIG_DEFAULTS: dict[str, Any] = {
    "camera_topics": ["camera/image_raw"],
    "max_frames": 256,
    "rate_hz": 1.0,
    "instruction": "",
}
CONFIG_KEYS = (
    "model",
    "backend",
    "device",
    "dtype",
    "attn_implementation",
    "local_files_only",
    "cache_dir",
    "sample_fps",
    "view_size",
)


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``check`` subcommand to the ``topreward`` command."""
    from topreward_ros.scoring.backends.registry import BACKEND_NAMES

    p = subparsers.add_parser(
        "check", help="whether a rig fits: GPU memory, tokens, tick cost", description=__doc__.split("\n\n")[0] + "."
    )
    p.add_argument(
        "--params-file", type=Path, default=None, help="the node's ROS 2 parameters file (default: the node's defaults)"
    )
    p.add_argument("--model", help="hub id or local model directory (overrides the file)")
    p.add_argument("--backend", choices=BACKEND_NAMES, help="scoring backend that runs the model (overrides the file)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (overrides the file)")
    p.add_argument("--dtype", help="auto | bfloat16 | float16 | float32 (overrides the file)")
    p.add_argument(
        "--time", action="store_true", help="load the model and time a full forward at max_frames and one tick"
    )
    p.set_defaults(func=run)
    return p


def _error(message: str) -> None:
    print(f"topreward check: error: {message}", file=sys.stderr)


def rig_from(values: dict[str, Any]) -> Any:
    """The ``Rig`` of node parameter values (raises ValueError naming a bad one)."""
    from topreward_ros.scoring.config import ScorerConfig
    from topreward_ros.scoring.fit import Rig

    config_values = {k: values[k] for k in CONFIG_KEYS if k in values}
    if config_values.get("cache_dir") == "":
        config_values["cache_dir"] = None
    config = ScorerConfig(**config_values)
    cameras = values.get("camera_topics", RIG_DEFAULTS["camera_topics"])
    if not isinstance(cameras, list) or not cameras:
        raise ValueError(f"camera_topics must be a non-empty list, got {cameras!r}")
    instruction = str(values.get("instruction") or "") or Rig.instruction
    return Rig(
        config,
        cameras=len(cameras),
        max_frames=int(values.get("max_frames", RIG_DEFAULTS["max_frames"])),
        rate_hz=float(values.get("rate_hz", RIG_DEFAULTS["rate_hz"])),
        instruction=instruction,
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of ``topreward check``; returns the exit code."""
    from topreward_ros.files.params_file import ParamsFileError, read_params_file
    from topreward_ros.scoring.errors import ScoringError
    from topreward_ros.scoring.fit import check_rig, time_rig

    values: dict[str, Any] = {}
    if args.params_file is not None:
        try:
            values.update(read_params_file(args.params_file))
        except ParamsFileError as exc:
            _error(str(exc))
            return EXIT_UNUSABLE
    for key in ("model", "backend", "device", "dtype"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    try:
        rig = rig_from(values)
        report = check_rig(rig)
    except (ValueError, ScoringError) as exc:
        _error(str(exc))
        return EXIT_UNUSABLE
    if args.time and report.device_problem is None:
        from topreward_ros.scoring.backends.factory import load_scorer

        try:
            time_rig(report, load_scorer(rig.config))
        except ScoringError as exc:
            _error(str(exc))
            return EXIT_UNUSABLE
    print("\n".join(report.lines()))
    return EXIT_DOES_NOT_FIT if report.fits is False else EXIT_OK
