"""A local LeRobot v3 dataset as an episode source.

Each dataset episode is one episode with its own ``episode_index``. Frames
are the dataset's rows in ``frame_index`` order, stamped with the
``timestamp`` column as integer nanoseconds (also the axis the node's timer
ticks on); one ``SourceFrame`` per camera per row, the primary camera
first. A camera frame is decoded from its video (the nearest decoded
picture, within ``video_tolerance_frames`` frame periods) only when the
2 fps schedule keeps it. The instruction is the task of the episode's first
frame unless a fixed one is given.

The progress parquet of a dataset run is keyed by the dataset's own
``index`` (``rabc_index``), ready for LeRobot's RA-BC sample weighting.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from topreward_ros.files.atomic import files_fingerprint
from topreward_ros.lerobot.dataset import DatasetError, EpisodeInfo, LeRobotDatasetDir
from topreward_ros.offline import source as src

END_REASON = "end of the dataset episode"


class DatasetSetupError(DatasetError, src.SourceError):
    """The options do not fit the dataset (unknown camera, episode, missing video)."""


@dataclass(frozen=True)
class DatasetSourceOptions:
    """What to read from the dataset.

    camera_keys: video features (e.g. ``observation.images.front``); the
        first is the primary camera that drives the 2 fps schedule.
    episodes: dataset episode indices to score (None: all).
    instruction: fixed instruction for every episode (instead of its task).
    video_tolerance_frames: a frame is left out when the nearest decoded
        picture is further than this many frame periods from its timestamp.
    """

    camera_keys: tuple[str, ...]
    episodes: tuple[int, ...] | None = None
    instruction: str | None = None
    video_tolerance_frames: float = 0.5

    def __post_init__(self) -> None:
        src.check_camera_names("camera_keys", self.camera_keys, "video feature")
        if self.instruction is not None and not self.instruction.strip():
            raise ValueError("instruction must not be empty (omit it to use the dataset's tasks)")
        if not (0 < self.video_tolerance_frames <= 1):
            raise ValueError(f"video_tolerance_frames must lie in (0, 1], got {self.video_tolerance_frames!r}")


def pick_camera_keys(dataset: LeRobotDatasetDir, cameras: list[str] | None) -> tuple[str, ...]:
    """The video features to use: those given, else the dataset's only one."""
    if cameras:
        return tuple(cameras)
    keys = dataset.camera_keys
    if len(keys) == 1:
        return (keys[0],)
    if not keys:
        raise DatasetSetupError(f"{dataset.root}: the dataset has no video feature")
    raise DatasetSetupError(
        f"{dataset.root}: several video features ({', '.join(keys)}); choose "
        f"with --camera (repeat it for several cameras, the first is the primary)"
    )


class DatasetSource(src.EpisodeSource):
    """One dataset with its options (see the module doc); picklable, opens the dataset on use."""

    kind = "dataset"

    def __init__(self, root: Path | str, options: DatasetSourceOptions) -> None:
        self.path = Path(root)
        self.options = options
        self.cameras = options.camera_keys
        self._dataset: LeRobotDatasetDir | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Sent to replicas without the opened dataset: each opens it where it runs.
        return {**self.__dict__, "_dataset": None}

    @property
    def dataset(self) -> LeRobotDatasetDir:
        if self._dataset is None:
            self._dataset = LeRobotDatasetDir(self.path)
        return self._dataset

    def check(self) -> None:
        self.selected()

    def selected(self) -> list[EpisodeInfo]:
        """The episodes to score; raises ``DatasetError`` unless the options fit."""
        dataset = self.dataset
        try:
            dataset.check_cameras(self.options.camera_keys)
            episodes = dataset.select(self.options.episodes)
            dataset.check_videos(episodes, self.options.camera_keys)
        except DatasetSetupError:
            raise
        except DatasetError as exc:
            raise DatasetSetupError(str(exc)) from exc
        return episodes

    def fingerprint(self) -> str:
        """Sizes and sampled blocks of the dataset files that decide the scores."""
        files = self.dataset.fingerprint_files(self.options.camera_keys)
        return files_fingerprint(files, [f"{file.parent.name}/{file.name}" for file in files])

    def settings_record(self) -> dict[str, Any]:
        return {
            "camera_keys": list(self.options.camera_keys),
            "instruction": self.options.instruction,
            "video_tolerance_frames": self.options.video_tolerance_frames,
        }

    def plan(self) -> tuple[list[src.EpisodeSpec], src.SourceNotes]:
        notes = src.SourceNotes()
        specs = []
        for info in self.selected():
            index = info.episode_index
            record = {"dataset_episode": index, "camera_keys": list(self.options.camera_keys)}
            instruction = self.options.instruction or ""
            try:
                frames = self.dataset.frames(info)
                if self.options.instruction is None:
                    tasks = sorted(set(frames.task_index.tolist()))
                    instruction = self.dataset.task_text(int(frames.task_index[0]))
                    if len(tasks) > 1:
                        notes.notes.append(
                            f"episode {index} has {len(tasks)} tasks; scored with the "
                            f"task of its first frame: {instruction!r}"
                        )
            except DatasetError as exc:
                specs.append(
                    src.EpisodeSpec(
                        index, instruction, 0, 0, 0, END_REASON, record=record, error=f"unreadable episode: {exc}"
                    )
                )
                continue
            stamps = frames.stamps_ns
            start, end = int(stamps[0]), int(stamps[-1])
            specs.append(
                src.EpisodeSpec(
                    index,
                    instruction,
                    start,
                    end,
                    start,
                    END_REASON,
                    key=index,
                    record=record,
                    num_frames=len(stamps),
                    episode_id=f"lerobot-episode-{index:06d}",
                )
            )
        return specs, notes

    def frames(self, spec: src.EpisodeSpec) -> Iterator[src.SourceFrame]:
        from topreward_ros.lerobot.video import open_episode_videos

        dataset = self.dataset
        info = dataset.episodes[spec.key]
        rows = dataset.frames(info)
        keys = self.options.camera_keys
        tolerance_s = self.options.video_tolerance_frames / dataset.fps
        videos = open_episode_videos([info.videos[k] for k in keys], tolerance_s)
        try:
            for offset_s, stamp in zip(rows.timestamp.tolist(), rows.stamps_ns.tolist()):
                for camera, (key, video) in enumerate(zip(keys, videos)):
                    yield src.SourceFrame(
                        camera, stamp, stamp, f"{key} frame at {offset_s:.4f} s", decode=_decoder(video, offset_s, key)
                    )
        finally:
            for video in videos:
                video.close()

    def rabc_index(self, frames: Any) -> tuple[Any, dict[str, str]]:
        from topreward_ros.lerobot.join import dataset_index

        return (
            dataset_index(self.dataset, frames, check_timestamps=False),
            {"topreward_ros.dataset": str(self.dataset.root.resolve())},
        )


def _decoder(video: Any, offset_s: float, key: str) -> Any:
    def decode(view_size: int) -> tuple[Any, str]:
        from topreward_ros.episode.camera_view import DeferredView

        decoded, why = video.frame_at(offset_s)
        if decoded is None:
            raise src.FrameDecodeError(why)
        return DeferredView(decoded.rgb, view_size), key

    return decode
