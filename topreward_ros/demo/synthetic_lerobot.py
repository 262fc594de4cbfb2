"""Synthetic LeRobot v3 datasets for tests, benchmarks and examples.

The ``lerobot`` package pins its own torch, torchvision and av (older than
this package's), so it cannot share an environment with us. This module
writes a dataset the way LeRobot 0.4 lays one out on disk instead, with the
same tools LeRobot uses for the bytes: pyarrow parquet tables and PyAV mp4
files (LeRobot's default codec, SVT-AV1 in yuv420p with a GOP of 2).
Several episodes share one mp4 per camera and file, one after the other, each
episode's range given by ``from_timestamp`` / ``to_timestamp`` in the
episodes metadata; with ``episodes_per_file`` smaller than the episode count
the data and video files roll over to ``file-001`` and on. Frames are drawn
with the demo scene. The layout it wrote (indices, timestamps, tasks and the
exact RGB frames handed to the encoder) is returned, so a test can check a
reader against it without reading the dataset back through that reader.
Per-episode ``stats/...`` columns are not written (nothing here reads them).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from topreward_ros.demo.scene import DEMO_SCENES, SceneSpec, render_frame

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"


@dataclass(frozen=True)
class DatasetCamera:
    """One camera feature: its key, picture size and how its view differs."""

    key: str
    width: int = 128
    height: int = 96
    mirrored: bool = False  # a second viewpoint: the scene seen mirrored


@dataclass
class EpisodeWritten:
    """What was written for one episode."""

    episode_index: int
    task: str
    index: list[int]
    timestamps: list[float]
    from_timestamp: float
    to_timestamp: float
    file_index: int
    frames: dict[str, list[np.ndarray]] = field(default_factory=dict)


@dataclass
class DatasetWritten:
    root: Path
    fps: int
    cameras: tuple[DatasetCamera, ...]
    episodes: list[EpisodeWritten]


def _camera_frame(camera: DatasetCamera, scene: SceneSpec, t_s: float) -> np.ndarray:
    frame = render_frame(scene, t_s, camera.width, camera.height)
    return np.ascontiguousarray(frame[:, ::-1]) if camera.mirrored else frame


@contextlib.contextmanager
def _calling_thread_scheduling_kept() -> Iterator[None]:
    """Undo what SVT-AV1 does to the calling thread's scheduling.

    Run as root, the SVT-AV1 encoder switches the thread that drives it to
    real-time scheduling (SCHED_FIFO, priority 99) and leaves it so; every
    process started from it afterwards inherits that policy, and a busy
    real-time thread starves the rest of the machine (nodes miss their ticks).
    """
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        yield
    finally:
        if (os.sched_getscheduler(0), os.sched_getparam(0)) != (policy, param):
            os.sched_setscheduler(0, policy, param)


def _encode(path: Path, frames: list[np.ndarray], fps: int, crf: int) -> None:
    import av

    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration otherwise
    path.parent.mkdir(parents=True, exist_ok=True)
    with _calling_thread_scheduling_kept(), av.open(str(path), "w") as container:
        stream = container.add_stream("libsvtav1", rate=fps, options={"crf": str(crf), "g": "2", "preset": "12"})
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _tasks_table(tasks: list[str]) -> pa.Table:
    """tasks.parquet as pandas writes LeRobot's task frame: the text is the frame's index."""
    table = pa.table(
        {"task_index": pa.array(range(len(tasks)), pa.int64()), "__index_level_0__": pa.array(tasks, pa.string())}
    )
    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": None,
                "field_name": "__index_level_0__",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.3.3",
    }
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


def write_lerobot_dataset(
    root: Path,
    scenes: tuple[SceneSpec, ...] = DEMO_SCENES,
    cameras: tuple[DatasetCamera, ...] = (DatasetCamera("observation.images.front"),),
    fps: int = 10,
    duration_s: float = 3.0,
    episodes_per_file: int = 2,
    crf: int = 12,
) -> DatasetWritten:
    """Write one episode per scene (its instruction as the task) under ``root``."""
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty")
    tasks = list(dict.fromkeys(s.instruction for s in scenes))
    num_frames = int(round(duration_s * fps))
    written: list[EpisodeWritten] = []
    episode_rows: list[dict] = []
    files: dict[int, list[EpisodeWritten]] = {}
    global_index = 0
    for episode_index, scene in enumerate(scenes):
        scene_t = [i / fps * scene.duration_s / duration_s for i in range(num_frames)]
        file_index = episode_index // episodes_per_file
        earlier = files.setdefault(file_index, [])
        start_s = sum(len(e.index) for e in earlier) / fps
        episode = EpisodeWritten(
            episode_index,
            scene.instruction,
            index=list(range(global_index, global_index + num_frames)),
            timestamps=[float(np.float32(i / fps)) for i in range(num_frames)],
            from_timestamp=start_s,
            to_timestamp=start_s + num_frames / fps,
            file_index=file_index,
            frames={c.key: [_camera_frame(c, scene, t) for t in scene_t] for c in cameras},
        )
        earlier.append(episode)
        written.append(episode)
        global_index += num_frames
        row = {
            "episode_index": episode_index,
            "tasks": [scene.instruction],
            "length": num_frames,
            "data/chunk_index": 0,
            "data/file_index": file_index,
            "dataset_from_index": episode.index[0],
            "dataset_to_index": episode.index[-1] + 1,
        }
        for camera in cameras:
            row.update(
                {
                    f"videos/{camera.key}/chunk_index": 0,
                    f"videos/{camera.key}/file_index": file_index,
                    f"videos/{camera.key}/from_timestamp": episode.from_timestamp,
                    f"videos/{camera.key}/to_timestamp": episode.to_timestamp,
                }
            )
        row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
        episode_rows.append(row)

    for file_index, episodes in files.items():
        for camera in cameras:
            frames = [f for e in episodes for f in e.frames[camera.key]]
            _encode(
                root / VIDEO_PATH.format(video_key=camera.key, chunk_index=0, file_index=file_index), frames, fps, crf
            )
        n = sum(len(e.index) for e in episodes)
        state = np.stack([np.linspace(0, 1, n), np.linspace(1, 0, n)], axis=1).astype(np.float32)
        data = pa.table(
            {
                "observation.state": pa.array(list(state), pa.list_(pa.float32(), 2)),
                "action": pa.array(list(state[:, ::-1].copy()), pa.list_(pa.float32(), 2)),
                "timestamp": pa.array([t for e in episodes for t in e.timestamps], pa.float32()),
                "frame_index": pa.array([i for e in episodes for i in range(len(e.index))], pa.int64()),
                "episode_index": pa.array([e.episode_index for e in episodes for _ in e.index], pa.int64()),
                "index": pa.array([i for e in episodes for i in e.index], pa.int64()),
                "task_index": pa.array([tasks.index(e.task) for e in episodes for _ in e.index], pa.int64()),
            }
        )
        path = root / DATA_PATH.format(chunk_index=0, file_index=file_index)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(data, path)

    (root / "meta").mkdir(parents=True, exist_ok=True)
    pq.write_table(_tasks_table(tasks), root / "meta" / "tasks.parquet")
    episodes_path = root / EPISODES_PATH.format(chunk_index=0, file_index=0)
    episodes_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(episode_rows), episodes_path)
    features: dict[str, dict] = {}
    for camera in cameras:
        features[camera.key] = {
            "dtype": "video",
            "shape": [camera.height, camera.width, 3],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": camera.height,
                "video.width": camera.width,
                "video.codec": "av1",
                "video.pix_fmt": "yuv420p",
                "video.is_depth_map": False,
                "video.fps": fps,
                "video.channels": 3,
                "has_audio": False,
            },
        }
    features.update(
        {
            "observation.state": {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
            "action": {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
            "timestamp": {"dtype": "float32", "shape": [1], "names": None},
            "frame_index": {"dtype": "int64", "shape": [1], "names": None},
            "episode_index": {"dtype": "int64", "shape": [1], "names": None},
            "index": {"dtype": "int64", "shape": [1], "names": None},
            "task_index": {"dtype": "int64", "shape": [1], "names": None},
        }
    )
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": "so101_follower",
        "total_episodes": len(written),
        "total_frames": global_index,
        "total_tasks": len(tasks),
        "chunks_size": 1000,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 500,
        "fps": fps,
        "splits": {"train": f"0:{len(written)}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH,
        "features": features,
    }
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    return DatasetWritten(root, fps, tuple(cameras), written)
