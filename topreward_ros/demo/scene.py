"""A drawn pick-and-place scene: the demo's stand-in for a robot camera.

The demo must run on a fresh machine with no downloads, so its episode is
rendered here with PIL: a table seen from the side, a two-finger gripper that
moves to a block, grasps it, carries it over a bowl and drops it in. The
motion is a deterministic function of time, so every run (and every test)
gets the same pixels, and the task visibly progresses from start to finish,
which is what a progress model is meant to notice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

Color = tuple[int, int, int]


@dataclass(frozen=True)
class SceneSpec:
    """One task setup.

    instruction: the task text published on the instruction topic.
    block_color: RGB of the block.
    block_x, bowl_x: horizontal positions as fractions of the image width.
    duration_s: length of the episode; the motion is scaled to fill it.
    """

    instruction: str
    block_color: Color = (200, 40, 40)
    block_x: float = 0.25
    bowl_x: float = 0.72
    duration_s: float = 6.0

    def __post_init__(self) -> None:
        if not self.instruction.strip():
            raise ValueError("instruction must not be empty")
        for name in ("block_x", "bowl_x"):
            value = getattr(self, name)
            if not 0.1 <= value <= 0.9:
                raise ValueError(f"{name} must lie in [0.1, 0.9], got {value!r}")
        if not self.duration_s > 0:
            raise ValueError(f"duration_s must be > 0, got {self.duration_s!r}")


#: The two demo tasks (different blocks, positions and instructions).
DEMO_SCENES: tuple[SceneSpec, ...] = (
    SceneSpec("put the red block in the bowl", (200, 40, 40), 0.25, 0.72),
    SceneSpec("put the blue block in the bowl", (40, 70, 210), 0.70, 0.28),
)

# Key poses of the gripper over normalised episode time: (time, x, height, closed).
# x is interpolated between the block (0) and the bowl (1); height is a
# fraction of the free space above the table (1 = top).
_KEYFRAMES: tuple[tuple[float, float, float, float], ...] = (
    (0.00, -0.25, 0.85, 0.0),  # start, left of the block, high
    (0.25, 0.00, 0.85, 0.0),  # above the block
    (0.40, 0.00, 0.00, 0.0),  # down to the block
    (0.48, 0.00, 0.00, 1.0),  # close the fingers
    (0.60, 0.00, 0.75, 1.0),  # lift
    (0.78, 1.00, 0.75, 1.0),  # carry over the bowl
    (0.86, 1.00, 0.45, 1.0),  # lower into the bowl
    (0.92, 1.00, 0.45, 0.0),  # release
    (1.00, 1.00, 0.85, 0.0),  # retreat
)


def _pose(phase: float) -> tuple[float, float, float]:
    """Gripper (x along block->bowl, height, closedness) at ``phase`` in [0, 1]."""
    phase = min(max(phase, 0.0), 1.0)
    times = [k[0] for k in _KEYFRAMES]
    values = np.array([k[1:] for k in _KEYFRAMES])
    x, height, closed = (float(np.interp(phase, times, values[:, i])) for i in range(3))
    return x, height, closed


def render_frame(spec: SceneSpec, t_s: float, width: int = 320, height: int = 240) -> np.ndarray:
    """The scene at ``t_s`` seconds into the episode, as an HxWx3 uint8 RGB array."""
    if width < 64 or height < 48:
        raise ValueError(f"image must be at least 64x48, got {width}x{height}")
    phase = t_s / spec.duration_s
    img = Image.new("RGB", (width, height), (222, 228, 235))
    draw = ImageDraw.Draw(img)
    table_y = int(height * 0.72)
    draw.rectangle((0, table_y, width, height), fill=(150, 105, 60))
    draw.line((0, table_y, width, table_y), fill=(110, 75, 40), width=2)

    block = max(8, width // 16)
    bowl_cx, bowl_w, bowl_h = spec.bowl_x * width, width * 0.2, height * 0.12
    bowl_box = (bowl_cx - bowl_w / 2, table_y - bowl_h, bowl_cx + bowl_w / 2, table_y + bowl_h * 0.4)

    gx_frac, g_height, closed = _pose(phase)
    block_px, bowl_px = spec.block_x * width, bowl_cx
    gx = block_px + gx_frac * (bowl_px - block_px)
    top_free = table_y - block - 10
    finger_tip = table_y - block * 0.2 - g_height * top_free * 0.9
    grasped = 0.48 <= phase < 0.92
    in_bowl = phase >= 0.92

    # Bowl back half, then block, then bowl front rim (block sits inside).
    draw.chord(bowl_box, 180, 360, fill=(90, 120, 90))
    if grasped:
        bx, by = gx, finger_tip - block * 0.1
    elif in_bowl:
        bx, by = bowl_cx, table_y - bowl_h * 0.3
    else:
        bx, by = block_px, table_y
    draw.rectangle((bx - block / 2, by - block, bx + block / 2, by), fill=spec.block_color)
    draw.chord(bowl_box, 0, 180, fill=(70, 140, 90))

    # Gripper: arm from the top, palm, two fingers opening with (1 - closed).
    palm_y = finger_tip - block * 1.4
    arm_w = max(4, width // 40)
    draw.rectangle((gx - arm_w / 2, 0, gx + arm_w / 2, palm_y), fill=(90, 90, 100))
    gap = block * (0.55 + 0.6 * (1.0 - closed))
    draw.rectangle((gx - gap - 3, palm_y - 4, gx + gap + 3, palm_y + 2), fill=(60, 60, 70))
    for side in (-1, 1):
        fx = gx + side * gap
        draw.rectangle((fx - 2, palm_y, fx + 2, finger_tip), fill=(60, 60, 70))
    return np.asarray(img, dtype=np.uint8)


def render_episode(spec: SceneSpec, rate_hz: float = 12.0, width: int = 320, height: int = 240) -> list[np.ndarray]:
    """Every frame of one episode at ``rate_hz`` (frame k at k / rate_hz seconds)."""
    if not rate_hz > 0:
        raise ValueError(f"rate_hz must be > 0, got {rate_hz!r}")
    count = int(round(spec.duration_s * rate_hz))
    return [render_frame(spec, k / rate_hz, width, height) for k in range(count)]
