"""A kept camera frame whose conversion to a model view is put off until it is needed.

A camera callback must stay cheap whatever the encoding: decoding a JPEG or
demosaicing a large Bayer frame and resizing it takes milliseconds, and the
callback of a camera is serialised with that camera's next frame. So the
callback stores the message itself in a ``CameraView`` (no copy, no decode)
and the scoring thread converts it when the window composes the frame's
sample (``EpisodeWindow.finalize``). The bag tools store their frames the same
way, so a frame is converted by the same code at the same point of the
episode live and offline.

The conversion runs at most once: its result, or the ``ImageError`` saying
why the frame is unusable, is kept, so a frame the window uses for several
samples (a secondary camera's last frame) is neither decoded nor reported
twice.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from topreward_ros.episode.cameras import to_rgb
from topreward_ros.episode.images import ImageError


class CameraView:
    """An Image or CompressedImage message (either binding) and the view size it is wanted at."""

    __slots__ = ("_msg", "_size", "_view", "_error")

    def __init__(self, msg: Any, size: int) -> None:
        self._msg: Any = msg
        self._size = int(size)
        self._view: np.ndarray | None = None
        self._error: ImageError | None = None

    @property
    def converted(self) -> bool:
        """Has the conversion run (successfully or not)?"""
        return self._msg is None

    def view(self) -> np.ndarray:
        """The ``size x size`` RGB view; raises ``ImageError`` if the frame is unusable."""
        msg = self._msg
        if msg is not None:
            try:
                self._view = convert(msg, self._size)
            except ImageError as exc:
                self._error = exc
            self._msg = None  # the camera image is let go once converted
        if self._error is not None:
            raise self._error
        assert self._view is not None
        return self._view


def convert(msg: Any, size: int) -> np.ndarray:
    """An image message to its model view: RGB, resized to ``size`` x ``size``."""
    from topreward_ros.scoring.frames import prepare_view

    rgb = to_rgb(msg)
    try:
        return prepare_view(rgb, size)
    except ValueError as exc:
        raise ImageError(str(exc)) from exc


class DeferredView:
    """A decoded picture (a video frame, an image file) converted when its sample is composed.

    The offline sources' twin of ``CameraView``: the window keeps more frames
    than it uses (a secondary camera's frames near every possible sample), so
    the conversion to RGB and the resize run only for the frames a sample
    takes, once. ``rgb`` returns the picture's RGB array.
    """

    __slots__ = ("_rgb", "_size", "_view", "_error")

    def __init__(self, rgb: Any, size: int) -> None:
        self._rgb: Any = rgb
        self._size = int(size)
        self._view: np.ndarray | None = None
        self._error: ImageError | None = None

    def view(self) -> np.ndarray:
        """The ``size x size`` RGB view; raises ``ImageError`` if the picture is unusable."""
        if self._rgb is not None:
            from topreward_ros.scoring.frames import prepare_view

            try:
                self._view = prepare_view(self._rgb(), self._size)
            except (ValueError, OSError) as exc:
                self._error = ImageError(str(exc))
            self._rgb = None
        if self._error is not None:
            raise self._error
        assert self._view is not None
        return self._view
