"""Camera images to model views.

The released TOPReward code resizes every frame to 244x244 without keeping
the aspect ratio, and the Qwen-VL processor then rounds to its patch grid
(256x256 for 244). Doing the resize ourselves, once per kept frame, keeps the
stored episode small (views, not camera images) and makes the live node and
the offline tools feed the model identical pixels.

Several cameras are composed side by side into one image, so the model sees a
single synchronised video instead of having to pair frames of two videos.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from topreward_ros.scoring.errors import FrameError

#: Default side of a view, as in the released code.
DEFAULT_VIEW_SIZE = 244


def check_rgb(image: object, name: str = "frame") -> np.ndarray:
    """Return ``image`` if it is an HxWx3 uint8 array, else raise ``FrameError``."""
    if not isinstance(image, np.ndarray):
        raise FrameError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise FrameError(f"{name} must have shape HxWx3 (RGB), got {image.shape}")
    if image.dtype != np.uint8:
        raise FrameError(f"{name} must be uint8, got {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise FrameError(f"{name} must not be empty, got {image.shape}")
    return image


def check_frames(frames: Sequence[np.ndarray], stamps_ns: Sequence[int]) -> None:
    """Raise ``FrameError`` unless ``frames`` is a non-empty video a backend can score.

    One stamp (integer nanoseconds, strictly increasing) per frame, every
    frame HxWx3 uint8 of the same shape. Every backend checks its input with
    this, so a bad frame is refused with the same message whichever runs.
    """
    if len(frames) != len(stamps_ns):
        raise FrameError(f"got {len(frames)} frames but {len(stamps_ns)} stamps")
    if len(frames) == 0:
        raise FrameError("no frames to score: a prefix needs at least one frame")
    shape = None
    for i, frame in enumerate(frames):
        check_rgb(frame, f"frames[{i}]")
        if shape is None:
            shape = frame.shape
        elif frame.shape != shape:
            raise FrameError(f"frames[{i}] has shape {frame.shape}, expected {shape} like frames[0]")
    previous = None
    for i, stamp in enumerate(stamps_ns):
        if isinstance(stamp, bool) or not isinstance(stamp, (int, np.integer)):
            raise FrameError(f"stamps_ns[{i}] must be an integer (nanoseconds), got {stamp!r}")
        if previous is not None and stamp <= previous:
            raise FrameError(f"stamps_ns must increase strictly: stamps_ns[{i}]={stamp} after {previous}")
        previous = stamp


def prepare_view(rgb: np.ndarray, size: int = DEFAULT_VIEW_SIZE) -> np.ndarray:
    """Resize an RGB image to ``size`` x ``size`` (aspect not kept), uint8 HxWx3.

    Bicubic resampling through Pillow, as the Qwen-VL processors use; an image
    already at the target size is returned as a contiguous copy-free view.
    """
    check_rgb(rgb, "rgb")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise FrameError(f"size must be a positive integer, got {size!r}")
    if rgb.shape[0] == size and rgb.shape[1] == size:
        return np.ascontiguousarray(rgb)
    from PIL import Image

    resized = Image.fromarray(np.ascontiguousarray(rgb)).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.uint8)


def compose_views(views: Sequence[np.ndarray]) -> np.ndarray:
    """Place several cameras' views side by side (left to right, in order).

    Every view must already be a square of the same size (``prepare_view``).
    One view is returned as is.
    """
    if isinstance(views, np.ndarray) or len(views) == 0:
        raise FrameError("views must be a non-empty sequence of HxWx3 uint8 arrays")
    for i, view in enumerate(views):
        check_rgb(view, f"views[{i}]")
    first = views[0].shape
    if first[0] != first[1]:
        raise FrameError(f"views[0] must be square (use prepare_view), got {first}")
    for i, view in enumerate(views[1:], start=1):
        if view.shape != first:
            raise FrameError(f"views[{i}] has shape {view.shape}, expected {first} like views[0]")
    if len(views) == 1:
        return views[0]
    return np.concatenate(list(views), axis=1)
