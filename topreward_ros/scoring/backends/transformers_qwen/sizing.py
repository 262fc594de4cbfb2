"""Frame size of a Qwen3-VL video, and the size frames are given for a whole episode.

Frame size, chosen once per episode: the processor shrinks every frame of a
video that exceeds its pixel budget (``size["longest_edge"]``, 384 frames of
256x256 with the Qwen3-VL defaults; two cameras side by side, 256x480, reach
it at 205 frames), so left to itself it would change the pixels of old frames
as the episode grows and void the cache at every tick. Given ``max_frames``
(the most frames the episode will hold), frames are sized for that length
instead: when ``max_frames`` frames at the processor's own rounding would
exceed the budget, every frame is resized (bicubic) to the size the
processor gives a video of ``max_frames`` frames, and the processor, never
over budget with fewer frames, keeps that size for every prefix. When they
fit, nothing changes: frames reach the processor as they are. The reference
path applies the same rule when given the same ``max_frames``.

One case still defeats reuse: the processor enlarges tiny frames of short
videos (``size["shortest_edge"]``, below about 45x45 pixels), by an amount
that depends on the length. The session detects it and recomputes from
scratch, still exactly; so it does when an episode outgrows ``max_frames``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def processor_size(video_processor: Any, height: int, width: int, num_frames: int) -> tuple[int, int]:
    """(H, W) a Qwen3-VL video processor resizes a video of ``num_frames`` frames of HxW to."""
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize

    vp = video_processor
    return smart_resize(
        num_frames=max(int(num_frames), vp.temporal_patch_size),
        height=int(height),
        width=int(width),
        temporal_factor=vp.temporal_patch_size,
        factor=vp.patch_size * vp.merge_size,
        min_pixels=vp.size["shortest_edge"],
        max_pixels=vp.size["longest_edge"],
    )


def episode_frame_size(video_processor: Any, height: int, width: int, max_frames: int) -> tuple[int, int] | None:
    """The size frames of HxW are given for an episode of at most ``max_frames``; None: as they are.

    None when ``max_frames`` frames at the processor's rounding fit its pixel
    budget (then no shorter prefix is resized by length either); otherwise
    the size the processor gives ``max_frames`` frames (rounded up to an even
    count, the temporal patch), at which every shorter prefix fits the budget
    and so keeps it.
    """
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize

    vp = video_processor
    step = vp.temporal_patch_size
    planned = max(int(max_frames), step)
    planned += -planned % step
    rounded = smart_resize(
        num_frames=planned,
        height=int(height),
        width=int(width),
        temporal_factor=step,
        factor=vp.patch_size * vp.merge_size,
        min_pixels=0,
        max_pixels=math.inf,
    )
    sized = processor_size(vp, height, width, planned)
    return None if sized == rounded else sized


def resize_rgb(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """``frame`` resized to ``height`` x ``width`` (bicubic, as the processor resamples)."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(frame))
    return np.asarray(image.resize((width, height), Image.Resampling.BICUBIC), dtype=np.uint8)
