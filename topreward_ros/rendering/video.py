"""A per-episode mp4 of the progress picture, one frame per tick: `--video`.

Someone relabelling a batch of episodes wants to look over them quickly: the
video shows, tick by tick, what the node would have shown on
``~/progress_image`` (the same ``rendering.picture.render``): the newest sample
the model had seen, the causal progress so far, the threshold, and the
SUCCESS banner from the tick success latched. Written with PyAV (H.264) to a
temporary file and moved into place, so an interrupted run never leaves a
half-written video that looks complete.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from topreward_ros.rendering import picture as progress_picture

VIDEO_FILE = "progress.mp4"


def tick_pictures(samples: Sequence[Any], ticks: Sequence[Any], view_height: int) -> Iterator[np.ndarray]:
    """The progress picture of every tick, in order.

    ``samples``: the episode's samples (``stamp_ns``, ``image``) in stamp
    order; ``ticks``: its tick results (``stamp_ns``, ``progress``,
    ``success``, ``success_score``, ``success_threshold``). A tick shows the
    sample it scored last, or, where the window thinned that one away, the
    newest sample before it.
    """
    stamps = [s.stamp_ns for s in samples]
    progress: list[float] = []
    for result in ticks:
        progress.append(result.progress)
        at = int(np.searchsorted(stamps, result.stamp_ns, side="right")) - 1
        view = samples[at].image if at >= 0 else None
        yield progress_picture.render(
            view,
            progress,
            success=result.success,
            success_score=result.success_score,
            threshold=result.success_threshold,
            view_height=view_height,
        )


def write_video(path: Path, pictures: Iterator[np.ndarray], fps: float) -> int:
    """Encode the pictures into ``path`` atomically; returns the number of frames."""
    import av

    from topreward_ros.files.atomic import write_atomic

    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    frames = 0
    try:
        with av.open(str(tmp), "w") as container:
            stream = None
            for picture in pictures:
                if stream is None:
                    # H.264 in yuv420p wants even sides.
                    height, width = (picture.shape[0] + 1) // 2 * 2, (picture.shape[1] + 1) // 2 * 2
                    stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
                    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                    stream.options = {"crf": "18"}
                padded = np.zeros((stream.height, stream.width, 3), np.uint8)
                padded[: picture.shape[0], : picture.shape[1]] = picture
                for packet in stream.encode(av.VideoFrame.from_ndarray(padded, format="rgb24")):
                    container.mux(packet)
                frames += 1
            if stream is not None:
                for packet in stream.encode():
                    container.mux(packet)
        if frames:
            write_atomic(path, lambda f: f.write(tmp.read_bytes()))
    finally:
        tmp.unlink(missing_ok=True)
    return frames
