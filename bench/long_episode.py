"""A long episode through the node's scoring step, shared by the bench scripts.

``run_ticks`` feeds an episode of synthetic camera views at 2 fps into an
``EpisodeRunner`` (the node's own scoring path) and fires its tick once per
second of episode time, back to back, timing each tick. ``bench_node.py``
(the CPU long-episode run, ``bench_long`` here) and ``gpu.py`` (the same on a
GPU, at the released model sizes) both use it, so the two measure the same
thing.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

NS = 1_000_000_000
W, H = 640, 480
#: The instruction every long episode asks about.
INSTRUCTION = "fold the towel and put it in the basket"


def scene(index: int) -> np.ndarray:
    """A 640x480 frame with texture and a moving block (cheap to make)."""
    y, x = np.mgrid[0:H, 0:W]
    img = np.stack([(x + index) % 256, (y * 2) % 256, ((x ^ y) + 3 * index) % 256], axis=-1)
    img = img.astype(np.uint8)
    left = (index * 7) % (W - 80)
    img[200:280, left : left + 80] = (240, 30, 30)
    return img


def camera_frame(index: int, camera: int) -> np.ndarray:
    """Camera ``camera``'s picture of sample ``index`` (each camera sees its own scene)."""
    frame = scene(2 * index + camera)
    return frame[::-1] if camera % 2 else frame


def view_pool(view_size: int, cameras: int, size: int = 16) -> list[tuple[np.ndarray, ...]]:
    """``size`` samples' views (one per camera), cycled through by the episode."""
    from topreward_ros.scoring import prepare_view

    return [tuple(prepare_view(camera_frame(i, c), view_size) for c in range(cameras)) for i in range(size)]


@dataclass(frozen=True)
class Tick:
    """One scored tick: episode time (s), wall and process CPU time (s), samples seen, rebuilds so far,
    the prompt's tokens and how many of them the model computed (not taken from the cache)."""

    second: float
    wall_s: float
    cpu_s: float
    frames_used: int
    rebuilds: int
    prompt_tokens: int = 0
    new_tokens: int = 0


def run_ticks(
    runner: Any,
    seconds: int,
    pool: list[tuple[np.ndarray, ...]],
    progress: Callable[[int, Any, float], None] | None = None,
) -> list[Tick]:
    """Feed ``seconds`` of 2 fps samples on every camera of ``runner``; tick once per second.

    ``runner`` is a started ``EpisodeRunner``. Ticks that find nothing new
    (after a thinning the window samples more sparsely) are not returned.
    ``progress(second, runner, wall_s)`` is called every 30 s of episode time.
    """
    ticks: list[Tick] = []
    for second in range(1, seconds + 1):
        for k in (2 * second - 2, 2 * second - 1):  # 2 fps on every camera
            stamp_ns = k * NS // 2
            for camera, view in enumerate(pool[k % len(pool)]):
                if runner.wants(camera, stamp_ns):
                    runner.add(camera, stamp_ns, view, f"cam{camera}")
        w0, c0 = time.perf_counter(), time.process_time()
        result = runner.tick()
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        if result is not None:
            ticks.append(
                Tick(
                    float(second),
                    wall,
                    cpu,
                    result.frames_used,
                    runner.cache_rebuilds,
                    result.prompt_tokens,
                    result.prompt_tokens - result.reused_tokens,
                )
            )
        if progress is not None and second % 30 == 0:
            progress(second, runner, wall)
    return ticks


def ticks_before(ticks: list[Tick], mark_s: float, span_s: float = 30.0) -> list[Tick]:
    """The scored ticks of the ``span_s`` seconds of episode time up to ``mark_s``."""
    return [t for t in ticks if mark_s - span_s < t.second <= mark_s]


#: Episode times (s) at which ``bench_long`` reports the cost of the ticks before them.
LONG_MARKS_S = (30, 120, 300, 600)


def bench_long(make_scorer: Any, label: str, minutes: float, threads: int, max_frames: int = 256) -> list[str]:
    """Tick costs over a long two-camera episode, in episode time (no real-time waits)."""
    from topreward_ros.episode.records import EpisodeSettings
    from topreward_ros.episode.runner import EpisodeRunner

    started = time.monotonic()
    scorer = make_scorer(threads)
    load_s = time.monotonic() - started
    settings = EpisodeSettings(max_frames=max_frames, success_threshold=-1e9)
    runner = EpisodeRunner(scorer, settings, num_cameras=2)
    runner.start(INSTRUCTION)
    pool = view_pool(settings.view_size, 2)
    seconds = int(minutes * 60)
    marks = [m for m in LONG_MARKS_S if m <= seconds] or [seconds]
    run_start = time.monotonic()

    def progress(second: int, runner: Any, wall: float) -> None:
        print(
            f"{label}: {second} s, {len(runner.window.samples)} samples, tick {wall * 1e3:.0f} ms, "
            f"rebuilds {runner.cache_rebuilds}, thinned {runner.window.thinned}",
            flush=True,
        )

    # (episode time s, wall s, samples, rebuilds, process CPU s)
    ticks = [
        (t.second, t.wall_s, t.frames_used, t.rebuilds, t.cpu_s) for t in run_ticks(runner, seconds, pool, progress)
    ]
    run_s = time.monotonic() - run_start
    thinned = runner.window.thinned
    rebuilds = runner.cache_rebuilds
    lines = [
        f"#### {label}",
        "",
        f"Model built in {load_s:.1f} s; torch threads {threads}. {seconds} s of episode time: two cameras "
        f"at 2 fps, 244x244 views side by side, `max_frames` {max_frames}, one tick per second of episode "
        f"time, run back to back ({run_s:.0f} s of wall time). A tick is `EpisodeRunner.tick`, the node's "
        "scoring step. Each row: the scored ticks of the 30 s of episode time before the mark (after a "
        "thinning the window samples at 1, then 0.5 fps: some ticks then find nothing new and cost nothing, "
        "they are not counted). Wall time, and the process's CPU time (all torch threads), which a shared "
        "machine inflates less.",
        "",
        "| Episode time | Samples in the window | Ticks | Wall p50 / p95 / max (ms) | CPU p50 / p95 (ms) | "
        "Cache rebuilds so far |",
        "|---|---|---|---|---|---|",
    ]
    p95, cpu95 = {}, {}
    for mark in marks:
        window = [t for t in ticks if mark - 30 < t[0] <= mark]
        walls = [t[1] * 1e3 for t in window]
        cpus = [t[4] * 1e3 for t in window]
        p95[mark], cpu95[mark] = float(np.percentile(walls, 95)), float(np.percentile(cpus, 95))
        lines.append(
            f"| {mark // 60} min {mark % 60:02d} s | {window[-1][2]} | {len(window)} | "
            f"{statistics.median(walls):.0f} / {p95[mark]:.0f} / {max(walls):.0f} | "
            f"{statistics.median(cpus):.0f} / {cpu95[mark]:.0f} | {window[-1][3]} |"
        )
    first, last = marks[0], marks[-1]
    ratio, cpu_ratio = p95[last] / p95[first], cpu95[last] / cpu95[first]
    rebuild_ticks = [(t[0], t[1]) for prev, t in zip(ticks, ticks[1:]) if t[3] > prev[3]]
    lines += [
        "",
        f"p95 tick at {last} s / p95 at {first} s: **{ratio:.2f}x** wall, **{cpu_ratio:.2f}x** CPU (target "
        f"<= 1.5x). Load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores. "
        f"Thinnings: {thinned}; "
        f"cache rebuilds: **{rebuilds}** (target: at most one per thinning), at episode time "
        + (", ".join(f"{t:.0f} s ({w:.1f} s wall)" for t, w in rebuild_ticks) or "none")
        + ".",
        "",
    ]
    print("\n".join(lines), flush=True)
    return lines
