#!/usr/bin/env python3
"""What ``topreward relabel`` costs against re-scoring, per episode and for 1,000 episodes.

A bag of ``--scored`` episodes (one 30 Hz camera, ``--seconds`` each, ticks
at 1 Hz as the node's default) is scored by ``topreward bag`` with the tiny
model: the re-scoring time measured here is a floor, since any real model
costs more per score. Its episode directories are then copied into an
output of ``--episodes`` episodes (the manifest lists each copy), and
``topreward relabel`` applies a new threshold to all of them, timed end to
end (reading curve.json, rewriting frames.parquet/.csv, progress.mcap,
curve.json, the combined tables and the manifest).

Re-scoring with a real model is not run here; it is extrapolated from the
per-score cost measured in bench/results/core.md (random weights at
Qwen3-VL-2B dimensions on this CPU), and said so in the section.

Results go to bench/results/relabel.md with the machine and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import describe_machine  # noqa: E402  (bench/ is the script's directory)
from workload import cpu_bag_args  # noqa: E402

from topreward_ros.commands.cli import main as topreward_main  # noqa: E402
from topreward_ros.demo.scene import DEMO_SCENES  # noqa: E402
from topreward_ros.demo.synthetic_bag import CameraSpec, write_episodes_bag  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "relabel.md"
#: Per live score at Qwen3-VL-2B dimensions on this CPU, 8 and 64 frames (core.md, (b), wall).
CORE_SCORE_S = (3.889, 5.455)
#: A K=15 offline curve at those dimensions, 16 and 64 frames, cached (core.md, (a), wall).
CORE_CURVE_S = (62.49, 126.24)


def build_output(scored: Path, out: Path, episodes: int) -> None:
    """An output directory of ``episodes`` episodes, copies of the scored ones."""
    manifest = json.loads((scored / "manifest.json").read_text())
    sources = [manifest["episodes"][k] for k in sorted(manifest["episodes"], key=int)]
    entries = {}
    out.mkdir(parents=True)
    for index in range(episodes):
        source = sources[index % len(sources)]
        directory = f"episode_{index:04d}"
        shutil.copytree(scored / Path(source["files"][0]).parent, out / directory)
        entries[str(index)] = {**source, "files": [f"{directory}/{Path(f).name}" for f in source["files"]]}
    manifest["episodes"] = entries
    (out / "manifest.json").write_text(json.dumps(manifest))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--scored", type=int, default=3, help="episodes re-scored with the tiny model")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--model", type=Path, default=ROOT / ".cache" / "tiny-qwen3-vl")
    parser.add_argument("--quick", action="store_true", help="small sizes, smoke run")
    args = parser.parse_args()
    if args.quick:
        args.episodes, args.seconds = 20, 5.0
    cores = os.cpu_count() or 1
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_relabel.") as tmp:
        root = Path(tmp)
        bag = root / "bag"
        write_episodes_bag(
            bag,
            "mcap",
            DEMO_SCENES[: args.scored]
            if args.scored <= len(DEMO_SCENES)
            else (DEMO_SCENES * args.scored)[: args.scored],
            cameras=(CameraSpec("/camera/image_raw", rate_hz=30.0),),
            duration_s=args.seconds,
        )
        scored = root / "scored"
        t0 = time.perf_counter()
        assert topreward_main(cpu_bag_args(bag, scored, args.model, "--view-size", "64")) == 0
        rescore_s = (time.perf_counter() - t0) / args.scored
        curve = json.loads(next(scored.glob("episode_*/curve.json")).read_text())
        ticks, samples = len(curve["live"]), len(curve["sample_stamps_ns"])
        out = root / "out"
        build_output(scored, out, args.episodes)
        t0 = time.perf_counter()
        assert topreward_main(["relabel", str(out), "--success-threshold", "-12.5", "-q"]) == 0
        relabel_s = time.perf_counter() - t0
    load_end = os.getloadavg()[0]
    per_episode = relabel_s / args.episodes
    real_low = ticks * CORE_SCORE_S[0] + CORE_CURVE_S[0]
    real_high = ticks * CORE_SCORE_S[1] + CORE_CURVE_S[1]
    command = "python bench/bench_relabel.py" + (" --quick" if args.quick else "")
    lines = [
        "## Re-thresholding: `topreward relabel` vs re-scoring",
        "",
        f"Command: `{command}` (also run by `make bench`).  ",
        f"Machine: {describe_machine()}.  ",
        f"Load average (1 min) at start / end: {load_start:.2f} / {load_end:.2f} on {cores} cores.",
        "",
        f"Episodes of {args.seconds:.0f} s, one 30 Hz camera ({int(args.seconds * 30)} frame rows each), "
        f"ticks at 1 Hz ({ticks} ticks, {samples} samples per episode), no plots.",
        "",
        "| what | per episode [s] | 1,000 episodes | how |",
        "|---|---:|---:|---|",
        f"| `topreward relabel` | {per_episode:.4f} | {per_episode * 1000:.1f} s | measured on "
        f"{args.episodes} episodes |",
        f"| re-score, tiny model (CPU) | {rescore_s:.2f} | {rescore_s * 1000 / 3600:.2f} h | measured on "
        f"{args.scored} episodes, extrapolated (a floor: the smallest possible model) |",
        f"| re-score, Qwen3-VL-2B dimensions (CPU) | {real_low:.0f} .. {real_high:.0f} | "
        f"{real_low * 1000 / 3600:.0f} .. {real_high * 1000 / 3600:.0f} h | not run: {ticks} live "
        f"scores at {CORE_SCORE_S[0]}..{CORE_SCORE_S[1]} s plus one K=15 curve at "
        f"{CORE_CURVE_S[0]}..{CORE_CURVE_S[1]} s, from the scoring core section |",
        "",
        f"Relabelling is {rescore_s / per_episode:.0f}x faster than re-scoring with the tiny model "
        f"(both measured in this run, on a machine shared as the load average says). Against the "
        f"re-score at 2B dimensions, extrapolated from the scoring core section (measured on another "
        f"run, less loaded), the relabel time of this run is {real_low / per_episode:,.0f}x shorter: "
        "an estimate, not a measured ratio. A GPU re-score is faster than the CPU one but still runs "
        "the model for every tick; relabelling never does.",
        "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
