"""One picture of an episode's progress: what the model saw, the curve so far, the verdict.

An operator beside a rig, or someone looking over relabelled episodes, wants
to see at a glance what the reward says: the newest sample exactly as the
model saw it (every camera side by side), the episode's causal progress so
far against the success threshold (progress 1 is the threshold), and a
SUCCESS banner once success has latched. The node publishes this picture on
``~/progress_image`` and ``--video`` writes one per tick into an mp4, so
both come from this one function. Plain numpy and Pillow: no ROS, no plotting
library, a few milliseconds per picture.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: Height of the banner above the view and of the progress plot below it, pixels.
BANNER_HEIGHT = 22
PLOT_HEIGHT = 96
#: Narrowest picture: a single small view still gets a readable plot.
MIN_WIDTH = 240
#: Colours (RGB).
SUCCESS_BANNER = (40, 170, 60)
RUNNING_BANNER = (45, 45, 45)
PLOT_BACKGROUND = (20, 20, 20)
CURVE = (255, 190, 0)
THRESHOLD_LINE = (220, 60, 60)
TEXT = (255, 255, 255)
#: Ticks shown across the plot at least (the curve fills it as the episode goes on).
MIN_TICKS_SHOWN = 20
_PLOT_MARGIN = 6


def plot_rows(progress: float) -> int:
    """The plot row (0 = the plot's top) where ``progress`` is drawn; 1.0 is the threshold line.

    Progress above 1 (a score beyond the threshold) is drawn at the top.
    """
    usable = PLOT_HEIGHT - 2 * _PLOT_MARGIN
    clipped = min(max(float(progress), 0.0), 1.0)
    return _PLOT_MARGIN + int(round((1.0 - clipped) * (usable - 1)))


def render(
    view: np.ndarray | None,
    progress: Sequence[float],
    *,
    success: bool,
    success_score: float | None = None,
    threshold: float | None = None,
    view_height: int = 244,
) -> np.ndarray:
    """The picture as an (H, W, 3) uint8 RGB array.

    ``view``: the newest sample as the model saw it (None: a grey placeholder
    of ``view_height``). ``progress``: the episode's causal progress, one
    value per tick so far. ``success``: whether success has latched.
    """
    if view is None:
        view = np.full((view_height, view_height, 3), 127, dtype=np.uint8)
    view = np.ascontiguousarray(view[..., :3], dtype=np.uint8)
    height, width = view.shape[:2]
    out_width = max(width, MIN_WIDTH)
    canvas = np.zeros((BANNER_HEIGHT + height + PLOT_HEIGHT, out_width, 3), dtype=np.uint8)
    canvas[:BANNER_HEIGHT] = SUCCESS_BANNER if success else RUNNING_BANNER
    left = (out_width - width) // 2
    canvas[BANNER_HEIGHT : BANNER_HEIGHT + height, left : left + width] = view
    top = BANNER_HEIGHT + height
    canvas[top:] = PLOT_BACKGROUND
    threshold_row = top + plot_rows(1.0)
    canvas[threshold_row, ::2] = THRESHOLD_LINE  # dashed

    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    values = [float(p) for p in progress]
    if values:
        span = max(len(values), MIN_TICKS_SHOWN) - 1
        usable = out_width - 2 * _PLOT_MARGIN - 1
        points = [(_PLOT_MARGIN + int(round(i * usable / span)), top + plot_rows(v)) for i, v in enumerate(values)]
        if len(points) == 1:
            draw.point(points[0], fill=CURVE)
        else:
            draw.line(points, fill=CURVE, width=1)
    font = ImageFont.load_default(size=12)
    label = "SUCCESS" if success else "running"
    if values:
        label += f"  progress {values[-1]:.2f}"
    if success_score is not None and threshold is not None:
        label += f"  score {success_score:.2f} / {threshold:.2f}"
    draw.text((4, 4), label, fill=TEXT, font=font)
    return np.asarray(picture)
