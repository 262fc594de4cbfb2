#!/usr/bin/env python3
"""Throughput of the offline episode sources without the model: read, decode, schedule.

Every input kind the offline pipeline reads is scored here through the real
path (``offline.engine.run_local``: the source's ``walk`` -> stamps ->
``EpisodeRunner.wants`` -> decode, convert and resize only what the 2 fps
schedule keeps -> ``add``; live ticks, the offline curve and the output
files) with the tiny model, and the time spent inside the model (every tick
and every offline curve, as measured by the run itself, ``report.model_s``)
is subtracted. What is left is what the source side costs whatever model is
used: the figure a source must keep well above the cameras' frame rate.

The inputs show the same drawn scene at 640x480 and 30 frames per second
for ``--seconds``, one episode each:

* bag, raw rgb8 ``sensor_msgs/Image``: 2 cameras, MCAP;
* bag, JPEG ``CompressedImage``: 2 cameras, MCAP;
* LeRobot v3 dataset: 2 cameras, AV1 mp4 (LeRobot's own codec and GOP);
* video file: 1 camera, H.264 mp4 (what most cameras and phones write);
* frame folder: 1 camera, one PNG per frame.

Throughput counts every camera frame of the input (all cameras), as the
bag figure always did: a source reads every frame even where the schedule
decodes few. Next to it the "read only" floor: what touching every frame
costs at least in that format (bag: reading the raw messages; dataset and
video: decoding every frame, which a compressed video cannot skip, without
the RGB conversion; frame folder: reading every file's bytes).

Each kind is first run once on a 1 s input of its own (imports and first
calls fall outside the timing); rounds then alternate the sources and the
best of each is reported, with the load average, because the machine may be
shared. The inputs were just written, so they are read from the page cache.

Results go to bench/results/sources.md with the machine and the command.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import describe_machine  # noqa: E402  (bench/ is the script's directory)

from topreward_ros.bag.reader import BagReader  # noqa: E402
from topreward_ros.demo.scene import DEMO_SCENES, SceneSpec, render_frame  # noqa: E402
from topreward_ros.demo.synthetic_bag import CameraSpec, write_episodes_bag  # noqa: E402
from topreward_ros.demo.synthetic_lerobot import DatasetCamera, write_lerobot_dataset  # noqa: E402
from topreward_ros.episode.records import EpisodeSettings  # noqa: E402
from topreward_ros.offline.engine import OfflineSettings, run_local  # noqa: E402
from topreward_ros.offline.outputs import OutputOptions  # noqa: E402
from topreward_ros.offline.runner import RunnerOptions  # noqa: E402
from topreward_ros.offline.source import EpisodeSource  # noqa: E402
from topreward_ros.sources.bag import BagSource, BagSourceOptions  # noqa: E402
from topreward_ros.sources.lerobot import DatasetSource, DatasetSourceOptions  # noqa: E402
from topreward_ros.sources.video import VideoSource  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "sources.md"
WIDTH, HEIGHT, FPS = 640, 480, 30
SCENE = DEMO_SCENES[0]
DATASET_KEYS = ("observation.images.front", "observation.images.wrist")
BAGS = {"bag_raw": "raw", "bag_jpeg": "JPEG"}  # the reference: what the bag tool did


@dataclass
class Input:
    """One written input: how to open it as a source, its frames, and its read-only floor.

    frames: every camera frame the input holds (all cameras).
    floor: touches every frame the cheapest way the format allows; returns
        the frames it touched (checked against ``frames``).
    """

    name: str
    label: str
    path: Path
    frames: int
    make_source: Callable[[], EpisodeSource]
    floor: Callable[[], int]
    floor_label: str

    @property
    def size_mb(self) -> float:
        if self.path.is_file():
            return self.path.stat().st_size / 1e6
        files = [p for p in self.path.rglob("*") if p.is_file()]
        return sum(p.stat().st_size for p in files) / 1e6


def megabytes(mb: float) -> str:
    """A size legible from 1 GB down to the few kB a drawn scene compresses to."""
    return f"{mb:.0f} MB" if mb >= 10 else f"{mb:.2f} MB"


def scene(seconds: float) -> SceneSpec:
    """The demo scene with its motion spread over ``seconds``."""
    return SceneSpec(SCENE.instruction, SCENE.block_color, SCENE.block_x, SCENE.bowl_x, seconds)


def frame_count(seconds: float) -> int:
    return int(round(seconds * FPS))


def write_bag(kind: str, path: Path, seconds: float) -> Input:
    """2 cameras x 30 Hz x 640x480, raw rgb8 or JPEG, the second camera 4 ms late."""
    jpeg = kind == "bag_jpeg"
    cams = tuple(
        CameraSpec(
            topic + ("/compressed" if jpeg else ""),
            "compressed" if jpeg else "raw",
            width=WIDTH,
            height=HEIGHT,
            rate_hz=float(FPS),
            offset_ns=offset,
        )
        for topic, offset in (("/cam/front", 0), ("/cam/wrist", 4_000_000))
    )
    topics = tuple(c.topic for c in cams)
    write_episodes_bag(path, "mcap", (SCENE,), cams, duration_s=seconds)

    def floor() -> int:
        # Reading alone (log-time order, raw bytes): the floor for any bag tool.
        with BagReader(path) as reader:
            return sum(1 for _ in reader.messages(topics))

    return Input(
        kind,
        "bag, JPEG (CompressedImage)" if jpeg else "bag, raw rgb8 (Image)",
        path,
        len(cams) * int(seconds * FPS),  # as write_episodes_bag counts them
        lambda: BagSource(path, BagSourceOptions(camera_topics=topics)),
        floor,
        "read raw messages",
    )


def decode_all(path: Path, threaded: bool) -> int:
    """Frames of a video file, decoded (not converted to RGB), as the source decodes them."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if threaded:
            stream.thread_type = "AUTO"  # as lerobot.video.EpisodeVideo decodes
        return sum(1 for _ in container.decode(stream))


def write_dataset(path: Path, seconds: float) -> Input:
    """One episode, 2 cameras x 30 fps x 640x480 in AV1 (the writer's LeRobot settings)."""
    cameras = (
        DatasetCamera(DATASET_KEYS[0], WIDTH, HEIGHT),
        DatasetCamera(DATASET_KEYS[1], WIDTH, HEIGHT, mirrored=True),
    )
    written = write_lerobot_dataset(
        path, (scene(seconds),), cameras=cameras, fps=FPS, duration_s=seconds, episodes_per_file=1
    )
    frames = sum(len(e.index) for e in written.episodes) * len(cameras)
    del written  # it holds every frame it encoded
    videos = sorted((path / "videos").rglob("*.mp4"))

    def floor() -> int:
        return sum(decode_all(video, threaded=True) for video in videos)

    return Input(
        "dataset",
        "LeRobot v3 dataset (AV1 mp4)",
        path,
        frames,
        lambda: DatasetSource(path, DatasetSourceOptions(camera_keys=DATASET_KEYS)),
        floor,
        "decode every frame",
    )


def write_video(path: Path, seconds: float) -> Input:
    """One camera, 640x480 at 30 fps, H.264 (libx264, yuv420p, default GOP and preset)."""
    import av

    spec = scene(seconds)
    count = frame_count(seconds)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"crf": "23"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for i in range(count):
            rgb = render_frame(spec, i / FPS, WIDTH, HEIGHT)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Input(
        "video",
        "video file (H.264 mp4)",
        path,
        count,
        lambda: VideoSource(path, spec.instruction, FPS),
        lambda: decode_all(path, threaded=False),
        "decode every frame",
    )


def write_frames(path: Path, seconds: float) -> Input:
    """One camera, one 640x480 PNG per frame, 30 frames per second."""
    from PIL import Image

    spec = scene(seconds)
    count = frame_count(seconds)
    path.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(render_frame(spec, i / FPS, WIDTH, HEIGHT)).save(path / f"frame_{i:05d}.png")

    def floor() -> int:
        return sum(1 for p in sorted(path.iterdir()) if p.read_bytes())

    return Input(
        "frames",
        "frame folder (PNG)",
        path,
        count,
        lambda: VideoSource(path, spec.instruction, FPS),
        floor,
        "read every file",
    )


WRITERS: dict[str, Callable[[Path, float], Input]] = {
    "bag_raw": lambda p, s: write_bag("bag_raw", p, s),
    "bag_jpeg": lambda p, s: write_bag("bag_jpeg", p, s),
    "dataset": write_dataset,
    "video": lambda p, s: write_video(p.with_suffix(".mp4"), s),
    "frames": write_frames,
}


def measure(item: Input, scorer: Any, settings: OfflineSettings, out: Path) -> dict[str, float]:
    """One run of the source through ``run_local``, and one read-only pass."""
    t0 = time.perf_counter()
    touched = item.floor()
    read_s = time.perf_counter() - t0
    assert touched == item.frames, f"{item.name}: read {touched} frames, wrote {item.frames}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    report = run_local(scorer, settings, item.make_source(), out, progress=False)
    total_s = time.perf_counter() - t0
    assert report.ok, report.summary()
    source_s = total_s - report.model_s
    return {
        "total_s": total_s,
        "model_s": report.model_s,
        "source_s": source_s,
        "fps": item.frames / source_s,
        "read_s": read_s,
        "read_fps": item.frames / read_s,
        "samples": sum(e.num_samples for e in report.episodes),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="input length")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds, best kept")
    parser.add_argument("--rate", type=float, default=1.0, help="tick rate (node rate_hz)")
    parser.add_argument("--quick", action="store_true", help="4 s inputs, 1 round (smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds = 4.0, 1
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    from topreward_ros.scoring import ScorerConfig, load_scorer
    from topreward_ros.tools.tiny_model import build_tiny_model

    model_dir = build_tiny_model(ROOT / ".cache" / "tiny-qwen3-vl")
    scorer = load_scorer(ScorerConfig(model=str(model_dir), device="cpu", dtype="float32", local_files_only=True))
    settings = OfflineSettings(
        episode=EpisodeSettings(success_threshold=-8.0),
        runner=RunnerOptions(tick_rate_hz=args.rate),
        outputs=OutputOptions(plot=False),
    )
    cores = os.cpu_count() or 1
    results: dict[str, list[dict[str, float]]] = {name: [] for name in WRITERS}
    with tempfile.TemporaryDirectory(prefix="bench_sources_") as tmp:
        work = Path(tmp)
        inputs: dict[str, Input] = {}
        for name, write in WRITERS.items():
            t0 = time.perf_counter()
            inputs[name] = write(work / name, args.seconds)
            warm = write(work / f"warm_{name}", 1.0)
            measure(warm, scorer, settings, work / "out")
            print(
                f"{name}: {inputs[name].frames} frames, {megabytes(inputs[name].size_mb)}, written "
                f"and warmed up in {time.perf_counter() - t0:.1f} s",
                flush=True,
            )
        load_start = os.getloadavg()[0]
        for r in range(args.rounds):
            for name, item in inputs.items():
                m = measure(item, scorer, settings, work / "out")
                m["load"] = os.getloadavg()[0]
                results[name].append(m)
                print(
                    f"round {r + 1} {name}: {m['fps']:.0f} frames/s (source {m['source_s']:.2f} s, "
                    f"model {m['model_s']:.2f} s excluded; read only {m['read_fps']:.0f} "
                    f"frames/s; load {m['load']:.2f})",
                    flush=True,
                )
        load_end = os.getloadavg()[0]
        sizes = {name: item.size_mb for name, item in inputs.items()}
    best = {name: max(ms, key=lambda m: m["fps"]) for name, ms in results.items()}
    read_best = {name: max(m["read_fps"] for m in ms) for name, ms in results.items()}
    bag_fps = {name: best[name]["fps"] for name in BAGS}
    command = "python bench/bench_sources.py" + (
        " --quick" if args.quick else f" --seconds {args.seconds:g} --rounds {args.rounds}"
    )
    shared = max(load_start, load_end) > cores
    lines = [
        "## Episode sources: read + decode + schedule throughput (model time excluded)",
        "",
        f"Machine: {describe_machine()}. Command: `{command}` (also run by `make bench`).",
        f"Load average (1 min) at start / end: {load_start:.2f} / {load_end:.2f} on {cores} cores "
        f"({'shared with other work: the figures include waiting for cores' if shared else 'otherwise idle'}).",
        "",
        f"Each input: the drawn demo scene, {WIDTH}x{HEIGHT} at {FPS} frames/s, {args.seconds:g} s, "
        "one episode. The run is the real offline path (`run_local`: the source's walk, frame "
        "stamps, the shared EpisodeRunner: only frames the 2 fps schedule keeps are decoded, "
        f"converted and resized; ticks at {args.rate:g} Hz, the K=15 offline curve, outputs and "
        "manifest written) with the tiny model; time spent in the model is measured by the run "
        "and subtracted. Frames/s counts every camera frame of the input. Read only: the least "
        "that touching every frame costs in that format (bag: raw messages; dataset, video: "
        "decoding every frame without RGB conversion; frame folder: every file's bytes). Best "
        f"of {args.rounds} alternating round(s) after a 1 s warm-up input of each kind; inputs "
        "read from the page cache. The video file and the frame folder hold one camera, half "
        "the frames of the others, so the fixed costs of an episode (planning, the output "
        "files) weigh twice as much per frame there.",
        "",
        "| input | size | frames | read only | source side of the offline run | x real time "
        "| vs bag raw | vs bag JPEG |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, item in inputs.items():
        r = best[name]
        lines.append(
            f"| {item.label} | {megabytes(sizes[name])} | {item.frames} | {read_best[name]:.0f} frames/s "
            f"({item.floor_label}) | {r['fps']:.0f} frames/s ({r['source_s']:.2f} s; model "
            f"{r['model_s']:.2f} s excluded) | {args.seconds / r['source_s']:.1f}x "
            f"| {r['fps'] / bag_fps['bag_raw']:.2f} | {r['fps'] / bag_fps['bag_jpeg']:.2f} |"
        )
    lines.append("")
    verdicts = []
    for name, item in inputs.items():
        if name in BAGS:
            continue
        fps = best[name]["fps"]
        slower = [f"the {BAGS[b]} bag ({bag_fps[b]:.0f})" for b in BAGS if fps < bag_fps[b]]
        if slower:
            verdicts.append(f"{item.label}: {fps:.0f} frames/s, SLOWER than {' and '.join(slower)} frames/s.")
        else:
            verdicts.append(
                f"{item.label}: {fps:.0f} frames/s, not slower than either bag "
                f"(raw {bag_fps['bag_raw']:.0f}, JPEG {bag_fps['bag_jpeg']:.0f} frames/s)."
            )
    lines.append("Against the bag figures of this run: " + " ".join(verdicts))
    lines.append("")
    text = "\n".join(lines)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
