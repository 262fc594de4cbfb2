"""One camera's frames of one episode, decoded with PyAV from a shared mp4.

A v3 dataset concatenates episodes in one mp4 per camera and file, so an
episode is a time range ``[from_s, to_s)`` of the file. ``EpisodeVideo``
seeks to the key frame before ``from_s`` once, then decodes forward and hands
out, for each queried time (``from_s`` + the frame's dataset timestamp), the
decoded frame whose presentation time is nearest. Queries come in increasing
order, so the file is decoded front to back, holding two frames.

The 2 fps schedule asks for one frame in fifteen of a 30 fps camera. Where
key frames are close together (LeRobot encodes with a GOP of 2), a query
far ahead of the decoded position seeks to a key frame shortly before it
instead of decoding every frame in between: the same pictures (the decoder
is deterministic), a fraction of the decoding. Where key frames are far
apart (a GOP of seconds), seeking would decode the same frames again, so
the file is decoded straight through.

A query with no decoded frame within ``tolerance_s`` (a dropped or damaged
frame, a span past the file's end) returns None with the reason; the caller
leaves that frame out, as the bag tool does with an undecodable image.
RGB conversion happens only for the frames the caller asks to convert.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from topreward_ros.lerobot.dataset import DatasetError, VideoSpan


class VideoDecodeError(DatasetError):
    """The video file cannot be opened or decoded."""


#: Key frames at most this many frames apart make seeking ahead cheaper than decoding through.
SEEK_MAX_GOP = 8


@dataclass
class DecodedFrame:
    """A decoded picture and its presentation time in the file, in seconds."""

    time_s: float
    frame: Any  # av.VideoFrame

    def rgb(self) -> np.ndarray:
        return self.frame.to_ndarray(format="rgb24")


class EpisodeVideo:
    """Nearest-frame access to one episode's span of a camera file."""

    def __init__(self, span: VideoSpan, tolerance_s: float, seek: bool = True) -> None:
        import av

        self.span = span
        self.tolerance_s = float(tolerance_s)
        self.seek = seek
        # The widest key-frame interval decoded so far, in frames and seconds.
        self._gop_frames: int | None = None
        self._gop_s = 0.0
        self.decoded = 0  # frames decoded (the cost seeking saves)
        self._av = av
        try:
            self._container = av.open(str(span.path))
            self._stream = self._container.streams.video[0]
        except (av.error.FFmpegError, OSError, IndexError) as exc:
            raise VideoDecodeError(f"{span.path}: cannot open the video ({exc})") from exc
        self._stream.thread_type = "AUTO"
        self._frames = self._decode(self.span.from_s)
        self._prev: DecodedFrame | None = None
        self._next: DecodedFrame | None = None
        self._started = False

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> EpisodeVideo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _decode(self, from_s: float) -> Iterator[DecodedFrame]:
        """Frames from the key frame at or before ``from_s`` on, within the span."""
        stream = self._stream
        time_base = stream.time_base
        start, stop = self.span.from_s - self.tolerance_s, self.span.to_s + self.tolerance_s
        try:
            if from_s > 0:
                self._container.seek(int(from_s / time_base), stream=stream, backward=True, any_frame=False)
            key: tuple[int, float] | None = None  # frames decoded and time at the last key frame
            for frame in self._container.decode(stream):
                if frame.pts is None:
                    raise VideoDecodeError(f"{self.span.path}: a frame has no presentation time")
                t = float(frame.pts * time_base)
                self.decoded += 1
                if frame.key_frame:
                    if key is not None:
                        self._gop_frames = max(self._gop_frames or 0, self.decoded - key[0])
                        self._gop_s = max(self._gop_s, t - key[1])
                    key = (self.decoded, t)
                if t < start:
                    continue
                if t > stop:
                    return
                yield DecodedFrame(t, frame)
        except self._av.error.FFmpegError as exc:
            raise VideoDecodeError(f"{self.span.path}: decoding failed ({exc})") from exc

    def _advance(self) -> None:
        self._prev = self._next
        self._next = next(self._frames, None)

    def _seek_gap_s(self) -> float:
        """How far ahead a query must be for seeking to decode fewer frames than going through.

        A seek decodes from a key frame up to two intervals before the query:
        at most ``2 * gop + 1`` frames, against the frames of the gap.
        """
        assert self._gop_frames
        frame_s = self._gop_s / self._gop_frames
        return (2 * self._gop_frames + 2) * frame_s

    def frame_at(self, offset_s: float) -> tuple[DecodedFrame | None, str]:
        """The frame shown ``offset_s`` after the span's start, or None and why not."""
        query = self.span.from_s + offset_s
        if not self._started:
            self._started = True
            self._next = next(self._frames, None)
        if (
            self.seek
            and self._gop_frames is not None
            and self._gop_frames <= SEEK_MAX_GOP
            and self._next is not None
            and query - self._next.time_s > self._seek_gap_s()
        ):
            # From a key frame at least one interval before the query (never after it,
            # so the frame before the query is decoded too).
            self._frames = self._decode(query - self._gop_s)
            self._prev, self._next = None, next(self._frames, None)
        while self._next is not None and self._next.time_s <= query:
            self._advance()
        candidates = [f for f in (self._prev, self._next) if f is not None]
        if not candidates:
            return None, f"no frame decoded near {query:.4f} s of {self.span.path.name}"
        best = min(candidates, key=lambda f: abs(f.time_s - query))
        if abs(best.time_s - query) > self.tolerance_s:
            return None, (
                f"nearest frame of {self.span.path.name} to {query:.4f} s is at "
                f"{best.time_s:.4f} s (tolerance {self.tolerance_s:.4f} s)"
            )
        return best, ""


def open_episode_videos(spans: list[VideoSpan], tolerance_s: float, seek: bool = True) -> list[EpisodeVideo]:
    """Open every camera's span; on a failure close the ones already open."""
    videos: list[EpisodeVideo] = []
    try:
        for span in spans:
            videos.append(EpisodeVideo(span, tolerance_s, seek))
    except BaseException:
        for video in videos:
            video.close()
        raise
    return videos
