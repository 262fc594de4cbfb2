"""The kinds of input the offline commands take, in one registry.

``topreward eval`` is handed paths and has to decide, for each, what it is
(a rosbag2 bag, a LeRobot dataset, a video, a folder of frames), where its
outputs go, whether it holds one episode or many, and how to open it as an
``EpisodeSource``. Those four answers are one ``SourceKind`` line in
``KINDS``; the evaluation reads them from here and names no kind itself. A
new input format is a module in ``sources/`` with its ``EpisodeSource`` and
one line here.

The builders import their source module when called, so classifying a path
loads neither the bag reader nor the video decoder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from topreward_ros.bag.base import STORAGE_SUFFIXES
from topreward_ros.offline.source import EpisodeSource

#: A single storage file, or a directory holding one, is a bag (any case of the suffix).
BAG_SUFFIXES = tuple(STORAGE_SUFFIXES)
DATASET_INFO = Path("meta") / "info.json"


class SourceOptions(Protocol):
    """The run's settings a builder reads (``EvalSettings`` has them all)."""

    camera_topics: tuple[str, ...] | None
    instruction_topic: str
    reset_topic: str | None
    stamp_jump_restart_s: float
    stamp_gap_restart_s: float
    dataset_cameras: tuple[str, ...] | None
    video_tolerance_frames: float
    source_fps: float


#: Opens a path as an episode source: (path, options, instruction) -> source.
#: ``instruction`` is the label's or the fixed one; sources that carry their
#: own (a bag's topic, a dataset's tasks) ignore it.
Builder = Callable[[Path, SourceOptions, "str | None"], EpisodeSource]


@dataclass(frozen=True)
class SourceKind:
    """One kind of input.

    name: what records, reports and messages call it (``record["kind"]``).
    output_dir: the folder under the output directory its outputs go in.
    multi_episode: holds several episodes, named ``<input name>/<index>``
        (the index being the kind's own episode number); otherwise the
        input is one episode named after it.
    recognises: whether a path is of this kind; ``KINDS`` asks in order and
        the first kind that says yes is the path's.
    build: opens the path as an ``EpisodeSource`` (nothing heavy yet).
    """

    name: str
    output_dir: str
    multi_episode: bool
    recognises: Callable[[Path], bool]
    build: Builder


def is_dataset_directory(path: Path) -> bool:
    """A LeRobot dataset root: the directory holding ``meta/info.json``."""
    return (Path(path) / DATASET_INFO).is_file()


def _is_bag(path: Path) -> bool:
    if path.is_file():
        return path.suffix.lower() in BAG_SUFFIXES
    return (path / "metadata.yaml").is_file() or any(
        p.suffix.lower() in BAG_SUFFIXES for p in path.iterdir() if p.is_file()
    )


def _build_bag(path: Path, options: SourceOptions, instruction: str | None) -> EpisodeSource:
    from topreward_ros.sources.bag import BagSource, BagSourceOptions, pick_cameras

    return BagSource(
        path,
        BagSourceOptions(
            camera_topics=pick_cameras(path, options.camera_topics),
            instruction_topic=options.instruction_topic,
            reset_topic=options.reset_topic,
            stamp_jump_restart_s=options.stamp_jump_restart_s,
            stamp_gap_restart_s=options.stamp_gap_restart_s,
        ),
    )


def _build_dataset(path: Path, options: SourceOptions, instruction: str | None) -> EpisodeSource:
    from topreward_ros.lerobot.dataset import LeRobotDatasetDir
    from topreward_ros.sources.lerobot import DatasetSource, DatasetSourceOptions, pick_camera_keys

    cameras = list(options.dataset_cameras) if options.dataset_cameras else None
    keys = pick_camera_keys(LeRobotDatasetDir(path), cameras)
    tolerance = options.video_tolerance_frames
    return DatasetSource(path, DatasetSourceOptions(camera_keys=keys, video_tolerance_frames=tolerance))


def _build_video(path: Path, options: SourceOptions, instruction: str | None) -> EpisodeSource:
    from topreward_ros.sources.video import VideoSource

    if instruction is None:
        raise ValueError(f"{path}: a video or frame folder carries no instruction; give one")
    return VideoSource(path, instruction, options.source_fps)


#: Every kind, in the order a path is tested against them.
KINDS: tuple[SourceKind, ...] = (
    SourceKind("dataset", "datasets", True, lambda p: p.is_dir() and is_dataset_directory(p), _build_dataset),
    SourceKind("bag", "bags", True, _is_bag, _build_bag),
    SourceKind("video", "videos", False, Path.is_file, _build_video),
    SourceKind("frames", "videos", False, Path.is_dir, _build_video),
)


def source_kind(name: str) -> SourceKind:
    """The registered kind called ``name``."""
    for kind in KINDS:
        if kind.name == name:
            return kind
    raise KeyError(f"no source kind {name!r}; known: {', '.join(k.name for k in KINDS)}")


def kind_of(path: Path) -> SourceKind | None:
    """The first kind that recognises ``path`` (None: no kind does)."""
    return next((kind for kind in KINDS if kind.recognises(path)), None)


def multi_episode_kinds() -> tuple[str, ...]:
    """The names of the kinds that hold several episodes (a bag, a dataset)."""
    return tuple(kind.name for kind in KINDS if kind.multi_episode)
