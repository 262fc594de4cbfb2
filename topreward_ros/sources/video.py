"""A video file or a folder of frames as an episode source: one episode each.

A video's frames are stamped with their own presentation timestamps; a
folder's images, read in name order, are stamped ``i / source_fps``.
Frames are decoded as the file is read (a video has to be), but turned
into pictures only when the 2 fps schedule keeps them, so a long video
never sits in memory. The instruction is given (a label's, or a fixed
one): a video carries none.

``read_episode`` is the direct form for ``topreward score``: the sampled,
model-sized frames of a whole recording, by the same sampling rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from topreward_ros.offline import source as src
from topreward_ros.scoring.stamps import NS_PER_S

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
END_REASON = "end of the recording"


class InputError(src.SourceError):
    """The video or frame directory cannot be used (message for the user)."""


@dataclass
class SampledEpisode:
    """The frames the model sees: model-sized views, their stamps and origin."""

    views: list[np.ndarray]
    stamps_ns: list[int]
    source_indices: list[int]
    source_frames: int
    kind: str


def frame_files(path: Path) -> list[Path]:
    """The images of a frame folder, in name order."""
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def read_episode(path: Path, source_fps: float, sample_fps: float, view_size: int) -> SampledEpisode:
    """Sample and prepare the frames of a video file or an image directory.

    The frames ``VideoSource`` reads, sampled online by the node's 2 fps
    rule: only the kept frames are converted, so a long video never sits in
    memory.
    """
    from topreward_ros.scoring.frames import prepare_view
    from topreward_ros.scoring.schedule import FrameSampler

    if not path.exists():
        raise InputError(f"{path} does not exist")
    sampler = FrameSampler(sample_fps)
    views: list[np.ndarray] = []
    stamps: list[int] = []
    indices: list[int] = []
    count = 0
    for i, (stamp, item) in enumerate(stamped_frames(path, source_fps)):
        count += 1
        if sampler.offer(stamp):
            try:
                views.append(prepare_view(_picture(item), view_size))
            except src.FrameDecodeError as exc:
                raise InputError(str(exc)) from exc
            stamps.append(stamp)
            indices.append(i)
    if not views:
        raise InputError(f"{path} has no decodable video frames")
    return SampledEpisode(views, stamps, indices, count, "image" if path.is_dir() else "video")


def stamped_frames(path: Path, source_fps: float) -> Iterator[tuple[int, Any]]:
    """(stamp_ns, frame) pairs: a video's decoded av frames, or a folder's image paths."""
    if path.is_dir():
        for i, file in enumerate(frame_files(path)):
            yield round(i * NS_PER_S / source_fps), file
    else:
        yield from _video_frames(path)


def _video_frames(path: Path) -> Iterator[tuple[int, Any]]:
    """(stamp_ns, av.VideoFrame) of every decoded frame, in presentation order."""
    try:
        import av
    except ImportError as exc:
        raise InputError("reading videos needs PyAV: install the 'video' extra (pip install av)") from exc
    try:
        container = av.open(str(path))
    except Exception as exc:
        raise InputError(f"cannot open {path} as a video: {exc}") from exc
    with container:
        if not container.streams.video:
            raise InputError(f"{path} has no video stream")
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 0) or None
        index = 0
        try:
            for frame in container.decode(stream):
                if frame.pts is not None and frame.time_base is not None:
                    stamp = round(frame.pts * frame.time_base * 1_000_000_000)
                elif rate:
                    stamp = round(index * 1_000_000_000 / rate)
                else:
                    raise InputError(f"{path}: frame {index} has no timestamp and the stream no frame rate")
                index += 1
                yield int(stamp), frame
        except av.error.FFmpegError as exc:
            raise InputError(f"cannot decode {path} (frame {index}): {exc}") from exc


def _picture(item: Any) -> np.ndarray:
    """The RGB picture of a ``stamped_frames`` item; ``FrameDecodeError`` if it cannot be read."""
    if isinstance(item, Path):
        return _read_image(item)
    return item.to_ndarray(format="rgb24")


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise src.FrameDecodeError(f"cannot read image {path}: {exc}") from exc


class VideoSource(src.EpisodeSource):
    """One video file or frame folder, one episode with a given instruction (see the module doc)."""

    def __init__(self, path: Path | str, instruction: str, source_fps: float = 30.0) -> None:
        self.path = Path(path)
        self.instruction = instruction
        self.source_fps = float(source_fps)
        self.kind = "frames" if self.path.is_dir() else "video"
        self.cameras = (self.kind,)

    def check(self) -> None:
        if not self.path.exists():
            raise InputError(f"{self.path} does not exist")
        if not self.instruction.strip():
            raise InputError(f"{self.path}: no instruction")
        if self.path.is_dir():
            frame_files(self.path)
        else:
            next(iter(stamped_frames(self.path, self.source_fps)), None)

    def fingerprint(self) -> str:
        from topreward_ros.files.atomic import files_fingerprint

        files = frame_files(self.path) if self.path.is_dir() else [self.path]
        return files_fingerprint(files, [f.name for f in files])

    def settings_record(self) -> dict[str, Any]:
        return {"instruction": self.instruction, "source_fps": self.source_fps if self.kind == "frames" else None}

    def plan(self) -> tuple[list[src.EpisodeSpec], src.SourceNotes]:
        # The start is the first frame's stamp; the end is known once the frames are read.
        first = next(iter(stamped_frames(self.path, self.source_fps)), None)
        start = int(first[0]) if first is not None else 0
        spec = src.EpisodeSpec(
            0,
            self.instruction,
            start,
            start,
            start,
            END_REASON,
            key=0,
            record={"input": str(self.path), "input_kind": self.kind},
            episode_id=f"{self.kind}-{self.path.stem}",
        )
        if first is None:
            spec.error = f"{self.path} has no frames"
        return [spec], src.SourceNotes()

    def frames(self, spec: src.EpisodeSpec) -> Iterator[src.SourceFrame]:
        last = spec.start_ns
        try:
            for stamp, item in stamped_frames(self.path, self.source_fps):
                last = max(last, stamp)
                label = (
                    f"{item.name} (stamped {stamp} ns)" if isinstance(item, Path) else f"video frame stamped {stamp} ns"
                )
                yield src.SourceFrame(0, stamp, stamp, label, decode=_decoder(item, self.path.name))
        except InputError as exc:
            raise src.SourceReadError(str(exc)) from exc
        spec.end_ns = last


def _decoder(item: Any, name: str) -> Any:
    def decode(view_size: int) -> tuple[Any, str]:
        from topreward_ros.episode.camera_view import DeferredView

        return DeferredView(lambda: _picture(item), view_size), name

    return decode
