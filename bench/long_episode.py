"""A long episode through the node's scoring step, shared by the bench scripts.

``run_ticks`` feeds an episode of synthetic camera views at 2 fps into an
``EpisodeRunner`` (the node's own scoring path) and fires its tick once per
second of episode time, back to back, timing each tick. ``bench_node.py``
(the CPU long-episode run) and ``gpu.py`` (the same on a GPU, at the released
model sizes) both use it, so the two measure the same thing.
"""

from __future__ import annotations

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
