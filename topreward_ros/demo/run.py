"""`make demo`: render a short pick-and-place bag, score it offline, say where it went.

What it does, on a fresh machine with no downloads:

1. renders two episodes of a drawn scene (``demo.scene``), each with its own
   instruction, into a rosbag2 MCAP bag (CompressedImage camera at 12 Hz and
   an instruction topic), exactly as a robot recorder would lay them out;
2. scores the bag with ``topreward bag`` (the same code as any real bag);
3. prints where the plots, tables and MCAP are.

Without ``--model`` it uses a tiny randomly initialised Qwen3-VL (built into
``.cache/tiny-qwen3-vl`` on first use): the pipeline is real, the scores are
meaningless, and the output says so. With the real weights:
``MODEL=Qwen/Qwen3-VL-8B-Instruct make demo``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from topreward_ros.bag.writer import BagWriter, Storage, compressed_image_msg, string_msg
from topreward_ros.demo.scene import DEMO_SCENES, SceneSpec, render_episode
from topreward_ros.scoring.stamps import NS_PER_S

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path("out/demo")
TINY_MODEL_DIR = Path(".cache/tiny-qwen3-vl")
CAMERA_TOPIC = "/camera/image_raw/compressed"
INSTRUCTION_TOPIC = "/instruction"
CAMERA_FRAME = "camera_optical_frame"
# Bag clock origin (a fixed date, so every run writes the same bag).
START_NS = 1_750_000_000 * NS_PER_S
# Pause between episodes, and how long after capture the recorder logs a frame.
GAP_NS = 500_000_000
LOG_DELAY_NS = 3_000_000


def write_demo_bag(
    path: Path,
    scenes: Sequence[SceneSpec] = DEMO_SCENES,
    rate_hz: float = 12.0,
    storage: Storage = "mcap",
    size: tuple[int, int] = (320, 240),
) -> Path:
    """Write the demo episodes (instruction first, then the camera frames) to ``path``."""
    period_ns = int(round(NS_PER_S / rate_hz))
    t = START_NS
    with BagWriter(path, storage, overwrite=True) as writer:
        for spec in scenes:
            writer.write(INSTRUCTION_TOPIC, string_msg(spec.instruction), t)
            t += period_ns
            for frame in render_episode(spec, rate_hz, *size):
                writer.write(CAMERA_TOPIC, compressed_image_msg(frame, t, CAMERA_FRAME), t + LOG_DELAY_NS)
                t += period_ns
            t += GAP_NS
    return path


def run_topreward_bag(argv: Sequence[str]) -> int:
    """``topreward bag ARGV`` in this process (the command's own entry point)."""
    from topreward_ros.commands.cli import main as topreward_main

    return topreward_main(["bag", *argv])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m topreward_ros.demo",
        description="Render a demo pick-and-place bag and score it offline with topreward bag.",
    )
    parser.add_argument(
        "--model", default=None, help="hub id or directory of the VLM (default: a tiny random Qwen3-VL)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    args = parser.parse_args(argv)

    random_model = not args.model
    if random_model:
        from topreward_ros.tools.tiny_model import build_tiny_model

        print(f"building / reusing the tiny random Qwen3-VL in {TINY_MODEL_DIR} ...", flush=True)
        model = str(build_tiny_model(TINY_MODEL_DIR))
    else:
        model = args.model
    bag = write_demo_bag(args.out / "demo_bag", storage=args.storage)
    print(
        f"wrote the demo bag {bag} ({len(DEMO_SCENES)} episodes: "
        + "; ".join(repr(s.instruction) for s in DEMO_SCENES)
        + ")",
        flush=True,
    )
    scores = args.out / "scores"
    code = run_topreward_bag(
        [
            str(bag),
            "-o",
            str(scores),
            "--model",
            model,
            "--camera",
            CAMERA_TOPIC,
            "--instruction-topic",
            INSTRUCTION_TOPIC,
            "--force",
        ]
    )
    if code != 0:
        print(f"demo: scoring failed (exit code {code})", file=sys.stderr)
        return code
    print()
    print("outputs:")
    for ep_dir in sorted(scores.glob("episode_*")):
        print(f"  {ep_dir}/plot.png        progress curve with frame thumbnails")
        print(f"  {ep_dir}/curve.json      offline curve (K prefixes) and live-style ticks")
        print(f"  {ep_dir}/progress.mcap   TaskProgress / EpisodeSuccess messages (Foxglove)")
    print(
        f"  {scores}/frames.parquet and frames.csv   per-frame table of all episodes "
        f"(join keys: episode_index, frame_index, timestamp)"
    )
    print(f"  {scores}/topreward_progress.parquet   progress for LeRobot's reward-aligned sample weighting")
    print()
    print(
        "calibrate the success threshold on labelled episodes of your rig: "
        "topreward eval BAGS... -l labels.csv -o eval_out (README: Calibrate on your rig)"
    )
    print()
    if random_model:
        print(
            "NOTE: these scores come from a RANDOMLY INITIALISED tiny model: the pipeline is "
            "real, the numbers are meaningless."
        )
        print("      To score with the real model (needs its weights, ~17 GB, ideally a GPU):")
        print("      MODEL=Qwen/Qwen3-VL-8B-Instruct make demo")
    return 0


if __name__ == "__main__":
    sys.exit(main())
