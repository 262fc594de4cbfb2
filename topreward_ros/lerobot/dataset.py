"""A local LeRobot dataset in the v3 layout, read episode by episode.

The v3 layout (LeRobot's ``codebase_version`` "v3.0") keeps many episodes per
file, so an episode is found through its metadata row rather than by a file
name:

* ``meta/info.json``: ``fps``, the path templates ``data_path`` and
  ``video_path``, and ``features`` (camera streams have ``dtype`` "video").
* ``meta/tasks.parquet``: one row per task, a ``task_index`` column and the
  task text (written by pandas as the frame's index, so it shows up as a
  ``task`` or ``__index_level_0__`` column).
* ``meta/episodes/chunk-*/file-*.parquet``: one row per episode with
  ``episode_index``, ``length``, ``tasks``, ``dataset_from_index`` /
  ``dataset_to_index``, ``data/chunk_index`` / ``data/file_index`` and, per
  camera, ``videos/<key>/chunk_index`` / ``file_index`` / ``from_timestamp``
  / ``to_timestamp``: where the episode's frames sit inside a shared mp4.
* ``data/chunk-*/file-*.parquet``: one row per frame with ``index`` (the
  dataset-wide frame index training batches carry), ``episode_index``,
  ``frame_index``, ``timestamp`` (seconds since the episode's first frame)
  and ``task_index``.

Frame ``i`` of an episode is the video frame shown at
``from_timestamp + timestamp[i]`` in its camera's file, which is how LeRobot
itself queries its videos. Only pyarrow is used here, so nothing depends on
the ``lerobot`` package or pandas.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

INFO_PATH = "meta/info.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
SUPPORTED_MAJOR = "v3"
FRAME_COLUMNS = ("index", "episode_index", "frame_index", "timestamp", "task_index")


class DatasetError(ValueError):
    """The directory is not a usable LeRobot v3 dataset, or an option does not fit it."""


@dataclass(frozen=True)
class VideoSpan:
    """Where one camera's frames of one episode lie: a file and a time range in it."""

    path: Path
    from_s: float
    to_s: float


@dataclass(frozen=True)
class EpisodeInfo:
    """One row of the episodes metadata, with its files resolved."""

    episode_index: int
    length: int
    tasks: tuple[str, ...]
    data_path: Path
    videos: dict[str, VideoSpan]


@dataclass(frozen=True)
class EpisodeFrames:
    """The data rows of one episode, in frame order."""

    index: np.ndarray  # int64, dataset-wide frame index
    frame_index: np.ndarray  # int64
    timestamp: np.ndarray  # float64 seconds
    task_index: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.index)

    @property
    def stamps_ns(self) -> np.ndarray:
        """Timestamps as integer nanoseconds, the time axis the window works in."""
        return np.round(self.timestamp * 1e9).astype(np.int64)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{path.parent.parent}: not a LeRobot dataset (no {INFO_PATH})") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable ({exc})") from exc


def _read_parquet(path: Path, columns: list[str] | None = None) -> pa.Table:
    try:
        return pq.read_table(path, columns=columns)
    except FileNotFoundError:
        raise DatasetError(f"missing dataset file {path}") from None
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DatasetError(f"{path}: unreadable parquet ({exc})") from exc


def read_tasks(path: Path) -> dict[int, str]:
    """``task_index`` -> task text, whichever column pandas put the text in."""
    table = _read_parquet(path)
    if "task_index" not in table.column_names:
        raise DatasetError(f"{path}: no task_index column (columns: {table.column_names})")
    text_column = None
    candidates = ["task"]
    pandas_meta = table.schema.pandas_metadata or {}
    candidates += [c for c in pandas_meta.get("index_columns", []) if isinstance(c, str)]
    candidates += [f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    for name in candidates:
        if name in table.column_names and name != "task_index":
            text_column = name
            break
    if text_column is None:
        raise DatasetError(f"{path}: no column holds the task text (columns: {table.column_names})")
    indices = table.column("task_index").to_pylist()
    texts = table.column(text_column).to_pylist()
    return {int(i): str(t) for i, t in zip(indices, texts)}


class LeRobotDatasetDir:
    """Metadata of a local v3 dataset and per-episode access to its frames."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: no such dataset directory")
        self.info = _read_json(self.root / INFO_PATH)
        version = str(self.info.get("codebase_version", ""))
        if not version.startswith(SUPPORTED_MAJOR):
            raise DatasetError(
                f"{self.root}: codebase_version {version or 'missing'!r}; only the v3 layout is "
                f"read (convert older datasets with LeRobot's v2.1 -> v3.0 converter)"
            )
        try:
            self.fps = float(self.info["fps"])
            self.data_path_template = str(self.info["data_path"])
            self.video_path_template = self.info.get("video_path")
            self.features: dict[str, dict[str, Any]] = dict(self.info["features"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{self.root / INFO_PATH}: missing or bad field {exc}") from exc
        if not self.fps > 0:
            raise DatasetError(f"{self.root / INFO_PATH}: fps must be > 0, got {self.fps!r}")
        self.tasks = read_tasks(self.root / TASKS_PATH)
        self.episodes = self._read_episodes()
        self._data_cache: tuple[Path, pa.Table] | None = None

    # -- metadata ----------------------------------------------------------------------
    @property
    def camera_keys(self) -> list[str]:
        """Features stored as video, in the dataset's order."""
        return [k for k, f in self.features.items() if isinstance(f, dict) and f.get("dtype") == "video"]

    def check_cameras(self, keys: tuple[str, ...]) -> None:
        cameras = self.camera_keys
        for key in keys:
            if key not in cameras:
                kind = self.features.get(key, {}).get("dtype") if key in self.features else None
                what = f"a {kind!r} feature, not a video" if kind else "not a feature of the dataset"
                raise DatasetError(f"camera {key!r} is {what}; video features: {', '.join(cameras) or 'none'}")

    def _episode_files(self) -> list[Path]:
        files = sorted((self.root / EPISODES_DIR).glob("chunk-*/file-*.parquet"))
        if not files:
            raise DatasetError(f"{self.root}: no episode metadata ({EPISODES_DIR}/chunk-*/file-*.parquet)")
        return files

    def _read_episodes(self) -> dict[int, EpisodeInfo]:
        episodes: dict[int, EpisodeInfo] = {}
        for path in self._episode_files():
            table = _read_parquet(path)
            needed = ["episode_index", "length", "data/chunk_index", "data/file_index"]
            missing = [c for c in needed if c not in table.column_names]
            if missing:
                raise DatasetError(f"{path}: missing columns {missing}")
            for row in table.to_pylist():
                info = self._episode_info(row, path)
                episodes[info.episode_index] = info
        return dict(sorted(episodes.items()))

    def _episode_info(self, row: dict[str, Any], source: Path) -> EpisodeInfo:
        index = int(row["episode_index"])
        data_path = self.root / self.data_path_template.format(
            chunk_index=int(row["data/chunk_index"]), file_index=int(row["data/file_index"])
        )
        videos = {}
        for key in self.camera_keys:
            columns = [f"videos/{key}/{c}" for c in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")]
            if not all(c in row and row[c] is not None for c in columns):
                continue  # reported when the camera is asked for
            if not self.video_path_template:
                raise DatasetError(f"{self.root / INFO_PATH}: video features but no video_path")
            path = self.root / str(self.video_path_template).format(
                video_key=key, chunk_index=int(row[columns[0]]), file_index=int(row[columns[1]])
            )
            videos[key] = VideoSpan(path, float(row[columns[2]]), float(row[columns[3]]))
        tasks = tuple(str(t) for t in (row.get("tasks") or []))
        return EpisodeInfo(index, int(row["length"]), tasks, data_path, videos)

    def select(self, wanted: tuple[int, ...] | None) -> list[EpisodeInfo]:
        """The episodes to score, in index order; unknown indices are an error."""
        if wanted is None:
            return list(self.episodes.values())
        unknown = sorted(set(wanted) - set(self.episodes))
        if unknown:
            first, last = min(self.episodes), max(self.episodes)
            raise DatasetError(
                f"episodes {unknown} are not in the dataset (it has {len(self.episodes)} "
                f"episodes, indices {first}..{last})"
            )
        return [self.episodes[i] for i in sorted(set(wanted))]

    def check_videos(self, episodes: list[EpisodeInfo], keys: tuple[str, ...]) -> None:
        """Every selected episode has a span in an existing file for every camera."""
        for episode in episodes:
            for key in keys:
                span = episode.videos.get(key)
                if span is None:
                    raise DatasetError(f"episode {episode.episode_index} has no videos/{key}/... metadata columns")
                if not span.path.is_file():
                    raise DatasetError(f"episode {episode.episode_index}: missing video file {span.path}")
                if not span.to_s > span.from_s:
                    raise DatasetError(
                        f"episode {episode.episode_index}: empty video span [{span.from_s}, {span.to_s}] s of {key}"
                    )

    def task_text(self, task_index: int) -> str:
        try:
            return self.tasks[int(task_index)]
        except KeyError:
            raise DatasetError(f"task_index {task_index} is not in {TASKS_PATH}") from None

    # -- frames --------------------------------------------------------------------------
    def _data_file(self, path: Path) -> pa.Table:
        if self._data_cache is None or self._data_cache[0] != path:
            table = _read_parquet(path)
            missing = [c for c in FRAME_COLUMNS if c not in table.column_names]
            if missing:
                raise DatasetError(f"{path}: missing columns {missing}")
            self._data_cache = (path, table.select(list(FRAME_COLUMNS)))
        return self._data_cache[1]

    def frames(self, episode: EpisodeInfo) -> EpisodeFrames:
        """The episode's data rows in frame order; checks they are whole and increasing."""
        table = self._data_file(episode.data_path)
        ep = np.asarray(table.column("episode_index").to_numpy(), dtype=np.int64)
        rows = np.flatnonzero(ep == episode.episode_index)
        pick = {c: table.column(c).take(pa.array(rows)).to_numpy() for c in FRAME_COLUMNS}
        order = np.argsort(pick["frame_index"], kind="stable")
        frames = EpisodeFrames(
            index=np.asarray(pick["index"][order], dtype=np.int64),
            frame_index=np.asarray(pick["frame_index"][order], dtype=np.int64),
            timestamp=np.asarray(pick["timestamp"][order], dtype=np.float64),
            task_index=np.asarray(pick["task_index"][order], dtype=np.int64),
        )
        where = f"episode {episode.episode_index} in {episode.data_path}"
        if len(frames) == 0:
            raise DatasetError(f"{where}: no frames")
        if len(frames) != episode.length:
            raise DatasetError(f"{where}: {len(frames)} frames, the metadata says {episode.length}")
        if not np.array_equal(frames.frame_index, np.arange(len(frames))):
            raise DatasetError(f"{where}: frame_index is not 0..{len(frames) - 1}")
        if np.any(np.diff(frames.stamps_ns) <= 0):
            bad = int(np.flatnonzero(np.diff(frames.stamps_ns) <= 0)[0]) + 1
            raise DatasetError(f"{where}: timestamp does not increase at frame {bad}")
        return frames

    def fingerprint_files(self, keys: tuple[str, ...]) -> list[Path]:
        """The files whose content decides the scores of the given cameras."""
        files = [self.root / INFO_PATH, self.root / TASKS_PATH, *self._episode_files()]
        files += sorted(self.root.glob("data/chunk-*/file-*.parquet"))
        for key in keys:
            files += sorted({span.path for e in self.episodes.values() for k, span in e.videos.items() if k == key})
        return files
