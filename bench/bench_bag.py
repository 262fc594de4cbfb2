#!/usr/bin/env python3
"""Throughput of `topreward bag` without the model: read, decode, schedule.

A 2-camera, 30 Hz, 640x480 bag (raw rgb8 and JPEG CompressedImage variants)
is written with rosbags, then scored by the real offline path
(``BagScorer``: reader -> header stamps -> ``EpisodeRunner.wants`` ->
deserialise + convert + resize only what the 2 fps schedule keeps ->
``add``) with the tiny model. The time spent inside the model (every tick
and every offline curve, as measured by the run itself) is subtracted, so
the figure is what the bag side costs whatever model is used.

Results go to bench/results/bag.md with the machine and the command.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import describe_machine  # noqa: E402  (bench/ is the script's directory)
from topreward_ros.bag.offline import BagScorer, BagScoringOptions  # noqa: E402
from topreward_ros.bag.reader import BagReader  # noqa: E402
from topreward_ros.bag.synthetic import CameraSpec, write_episodes_bag  # noqa: E402
from topreward_ros.demo_scene import DEMO_SCENES  # noqa: E402
from topreward_ros.episode import EpisodeSettings  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "bag.md"
NS = 1_000_000_000


def measure(kind: str, seconds: float, workdir: Path, scorer, rate: float) -> dict[str, float]:
    cams = (
        CameraSpec("/cam/front" + ("/compressed" if kind == "jpeg" else ""),
                   "compressed" if kind == "jpeg" else "raw", width=640, height=480,
                   rate_hz=30.0),
        CameraSpec("/cam/wrist" + ("/compressed" if kind == "jpeg" else ""),
                   "compressed" if kind == "jpeg" else "raw", width=640, height=480,
                   rate_hz=30.0, offset_ns=4_000_000),
    )
    t0 = time.perf_counter()
    layout = write_episodes_bag(workdir / f"bag_{kind}", "mcap", DEMO_SCENES[:1], cams,
                                duration_s=seconds)
    write_s = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in layout.path.iterdir())
    # Reading alone (log-time order, raw bytes): the floor for any bag tool.
    t0 = time.perf_counter()
    with BagReader(layout.path) as reader:
        count = sum(1 for _ in reader.messages([c.topic for c in cams]))
    read_s = time.perf_counter() - t0
    options = BagScoringOptions(camera_topics=tuple(c.topic for c in cams), tick_rate_hz=rate,
                                plot=False)
    settings = EpisodeSettings(success_threshold=-8.0)
    t0 = time.perf_counter()
    report = BagScorer(scorer, settings, options).run(layout.path, workdir / f"out_{kind}",
                                                      progress=False)
    total_s = time.perf_counter() - t0
    assert report.ok, report.summary()
    bag_only_s = total_s - report.model_s
    shutil.rmtree(layout.path)
    return {
        "frames": count, "bag_mb": size / 1e6, "write_s": write_s, "read_s": read_s,
        "total_s": total_s, "model_s": report.model_s, "bag_only_s": bag_only_s,
        "fps": count / bag_only_s, "realtime": seconds / bag_only_s,
        "read_fps": count / read_s,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="bag length")
    parser.add_argument("--quick", action="store_true", help="4 s bags (smoke run)")
    parser.add_argument("--rate", type=float, default=1.0, help="tick rate (node rate_hz)")
    args = parser.parse_args()
    seconds = 4.0 if args.quick else args.seconds
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    from topreward_ros.scoring import ScorerConfig, load_scorer
    from topreward_ros.tools.tiny_model import build_tiny_model

    model_dir = build_tiny_model(ROOT / ".cache" / "tiny-qwen3-vl")
    scorer = load_scorer(ScorerConfig(model=str(model_dir), device="cpu", dtype="float32",
                                      local_files_only=True))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_bag_") as tmp:
        for kind in ("raw", "jpeg"):
            r = measure(kind, seconds, Path(tmp), scorer, args.rate)
            rows.append((kind, r))
            print(f"{kind}: {r}", flush=True)
    command = "python bench/bench_bag.py" + (" --quick" if args.quick else
                                             f" --seconds {seconds:g}")
    lines = [
        "## Bag tools: decode + schedule throughput (model time excluded)",
        "",
        f"Machine: {describe_machine()}. Command: `{command}` (also run by `make bench`).",
        "",
        f"Bag: 2 cameras x 30 Hz x 640x480, {seconds:g} s, one episode, MCAP. The run is the real "
        "`topreward bag` path (reader, header stamps, shared EpisodeRunner: only frames the "
        "2 fps schedule keeps are deserialised, converted and resized to 244x244); time spent "
        "in the model (ticks at 1 Hz and the offline curve) is measured by the run and "
        "subtracted.",
        "",
        "| images | bag size | frames | read only | bag side of `topreward bag` | x real time |",
        "|---|---|---|---|---|---|",
    ]
    for kind, r in rows:
        label = "raw rgb8" if kind == "raw" else "JPEG (CompressedImage)"
        lines.append(
            f"| {label} | {r['bag_mb']:.0f} MB | {r['frames']} | {r['read_fps']:.0f} frames/s "
            f"| {r['fps']:.0f} frames/s ({r['bag_only_s']:.2f} s; model {r['model_s']:.2f} s "
            f"excluded) | {r['realtime']:.1f}x |"
        )
    lines.append("")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
