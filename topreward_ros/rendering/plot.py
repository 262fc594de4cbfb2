"""A picture of one episode's progress curve, with frame thumbnails above it.

Shared by ``topreward score`` and the bag tools so that every curve a user
looks at is drawn the same way: the normalised curve (what the paper's VOC
evaluates) and the raw log p(" True") (what the success threshold applies
to) on one time axis, under thumbnails of the frames at their times, so a
jump in the curve can be matched to what happened in the video.

Uses matplotlib's object API with the Agg canvas (no pyplot state, no
display), so it is safe in worker threads and on headless machines.

Titles carry the task instruction, in whatever language the user wrote it.
matplotlib's own font (DejaVu Sans) has no Chinese, Japanese or Korean
glyphs and would draw empty boxes, so titles use a fallback list: DejaVu
Sans first, then Noto Sans CJK, which the ``noto-cjk-sans-otc`` package
(pinned in requirements/ml.txt) installs and which is registered with
matplotlib's font manager here. A system install of the same font (Debian:
fonts-noto-cjk) is used when the package is missing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from topreward_ros.files.atomic import write_atomic
from topreward_ros.scoring.curve import ProgressCurve
from topreward_ros.scoring.stamps import NS_PER_S

#: Height in pixels of each thumbnail as drawn (before figure scaling).
THUMBNAIL_HEIGHT = 96
#: Font families for user text, tried per character in this order: Latin,
#: Greek and Cyrillic from matplotlib's own font, CJK from Noto Sans CJK.
TEXT_FONT_FAMILIES = ("DejaVu Sans", "Noto Sans CJK JP")
#: The font collection file inside the ``noto_cjk_sans_otc`` package.
CJK_FONT_FILE = "NotoSansCJK-Regular.ttc"

_font_lock = threading.Lock()
_families: list[str] | None = None


def cjk_font_path() -> Path | None:
    """The packaged Noto Sans CJK collection, or None when it is not installed."""
    try:
        import noto_cjk_sans_otc
    except ImportError:
        return None
    path = Path(noto_cjk_sans_otc.__file__).parent / CJK_FONT_FILE
    return path if path.is_file() else None


def text_font_families() -> list[str]:
    """The fallback list for titles, after registering the packaged CJK font once."""
    global _families
    with _font_lock:
        if _families is None:
            from matplotlib import font_manager

            names = {f.name for f in font_manager.fontManager.ttflist}
            path = cjk_font_path()
            if path is not None and TEXT_FONT_FAMILIES[1] not in names:
                font_manager.fontManager.addfont(str(path))
                names = {f.name for f in font_manager.fontManager.ttflist}
            _families = [f for f in TEXT_FONT_FAMILIES if f in names] or [TEXT_FONT_FAMILIES[0]]
        return list(_families)


def _as_thumbnail(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"thumbnails must be HxWx3 arrays, got {getattr(image, 'shape', type(image))}")
    if image.shape[0] <= THUMBNAIL_HEIGHT:
        return image
    from PIL import Image

    width = max(1, round(image.shape[1] * THUMBNAIL_HEIGHT / image.shape[0]))
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((width, THUMBNAIL_HEIGHT)))


def plot_curve(
    path: str | os.PathLike[str],
    curve: ProgressCurve,
    thumbnails: Sequence[np.ndarray] = (),
    thumbnail_stamps_ns: Sequence[int] | None = None,
    title: str | None = None,
) -> Path:
    """Write a PNG of ``curve`` to ``path`` (complete or absent) and return the path.

    Args:
        path: output file (PNG).
        curve: the episode's progress curve.
        thumbnails: RGB frames to show above the plot, in time order.
        thumbnail_stamps_ns: their capture stamps; without them the
            thumbnails are spread evenly over the curve's time span.
        title: figure title; defaults to the model id.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not curve.prefix_lengths:
        raise ValueError("curve has no prefixes to plot")
    if thumbnail_stamps_ns is not None and len(thumbnail_stamps_ns) != len(thumbnails):
        raise ValueError(f"{len(thumbnails)} thumbnails but {len(thumbnail_stamps_ns)} thumbnail stamps")
    t0 = curve.stamps_ns[0]
    times = (np.asarray(curve.stamps_ns, dtype=np.int64) - t0) / NS_PER_S
    span = float(times[-1] - times[0]) or 1.0

    fig = Figure(figsize=(10, 5.5 if thumbnails else 4), dpi=100)
    FigureCanvasAgg(fig)
    if thumbnails:
        grid = fig.add_gridspec(2, 1, height_ratios=(1, 3), hspace=0.08)
        ax_thumbs = fig.add_subplot(grid[0])
        ax = fig.add_subplot(grid[1], sharex=ax_thumbs)
    else:
        ax = fig.add_subplot(1, 1, 1)
        ax_thumbs = None

    ax.plot(times, curve.normalized, "o-", color="tab:blue", label="progress (min-max normalised)")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("time since episode start [s]")
    ax.set_ylabel("normalised progress", color="tab:blue")
    ax.grid(alpha=0.3)
    # The normalised curve is an affine image of the raw one: the right axis
    # is scaled so that the same points read in nats there.
    raw_ax = ax.twinx()
    raw = np.asarray(curve.log_prob_true, dtype=np.float64)
    low, high = float(raw.min()), float(raw.max())
    if high > low:
        margin = 0.05 * (high - low)
        raw_ax.set_ylim(low - margin, high + margin)
    else:
        raw_ax.set_ylim(low - 1.0, high + 1.0)
    raw_ax.plot(times, raw, "s", color="tab:orange", markersize=4, label='raw log p(" True") [nats], right axis')
    raw_ax.set_ylabel('log p(" True") [nats]', color="tab:orange")
    lines = ax.get_lines() + raw_ax.get_lines()
    ax.legend(lines, [str(line.get_label()) for line in lines], loc="upper left", fontsize=8)
    fig.suptitle(title or curve.model_id, fontsize=10, fontfamily=text_font_families())
    ax.text(
        0.99,
        0.98,
        f"success score {curve.success_score:.2f} nats",
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=8,
    )

    if ax_thumbs is not None:
        count = len(thumbnails)
        if thumbnail_stamps_ns is not None:
            centres = (np.asarray(thumbnail_stamps_ns, dtype=np.int64) - t0) / NS_PER_S
        else:
            centres = np.linspace(times[0], times[-1], count) if count > 1 else np.array([times[0]])
        slot = span / max(count, 1)
        for centre, image in zip(centres, thumbnails):
            thumb = _as_thumbnail(image)
            half = 0.45 * slot
            ax_thumbs.imshow(thumb, extent=(centre - half, centre + half, 0.0, 1.0), aspect="auto")
        ax_thumbs.set_ylim(0.0, 1.0)
        ax_thumbs.set_xlim(times[0] - slot / 2, times[-1] + slot / 2)
        ax_thumbs.axis("off")
    else:
        pad = 0.03 * span
        ax.set_xlim(times[0] - pad, times[-1] + pad)

    return write_atomic(Path(path), lambda file: fig.savefig(file, format="png", bbox_inches="tight"))
