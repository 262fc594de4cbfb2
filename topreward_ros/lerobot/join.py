"""Key a per-frame table to a LeRobot dataset's own frame ``index``.

A bag has no dataset-wide frame index, so ``topreward bag`` numbers its rows
0, 1, 2, ... across the run's episodes. When a LeRobot dataset was converted
from the same recording (one dataset frame per primary camera frame,
episodes in the same order, shifted by ``--episode-offset``), its rows line
up with the table's on ``episode_index`` + ``frame_index``; ``timestamp`` is
the check (equal within one frame period). This module does that join
against the dataset's data files and refuses, naming the first mismatch,
when the two do not line up, so progress values never land on the wrong
training frames.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from topreward_ros.lerobot.dataset import DatasetError, LeRobotDatasetDir
from topreward_ros.lerobot.progress import PROGRESS_FILE, read_model_id, write_progress_parquet


class JoinError(DatasetError):
    """The table's episodes or frames do not line up with the dataset's."""


def dataset_index(dataset: LeRobotDatasetDir, frames: pa.Table, check_timestamps: bool = True) -> np.ndarray:
    """The dataset ``index`` of every row of ``frames`` sorted by episode then frame."""
    frames = frames.sort_by([("episode_index", "ascending"), ("frame_index", "ascending")])
    episodes = np.asarray(frames.column("episode_index").to_numpy(), dtype=np.int64)
    frame_index = np.asarray(frames.column("frame_index").to_numpy(), dtype=np.int64)
    timestamps = np.asarray(frames.column("timestamp").to_numpy(), dtype=np.float64)
    index = np.empty(len(episodes), dtype=np.int64)
    period = 1.0 / dataset.fps
    for episode in np.unique(episodes):
        rows = np.flatnonzero(episodes == episode)
        info = dataset.episodes.get(int(episode))
        if info is None:
            raise JoinError(
                f"episode {episode} of the table is not in the dataset "
                f"(it has episodes {min(dataset.episodes)}..{max(dataset.episodes)}; "
                f"was --episode-offset right?)"
            )
        ours = dataset.frames(info)
        if len(rows) != len(ours):
            raise JoinError(
                f"episode {episode}: {len(rows)} frames in the table, {len(ours)} in the "
                f"dataset; they were not made from the same recording"
            )
        index[rows] = ours.index[frame_index[rows]]
        if check_timestamps:
            gap = np.abs(timestamps[rows] - ours.timestamp[frame_index[rows]])
            if np.any(gap >= period):
                bad = int(np.argmax(gap >= period))
                raise JoinError(
                    f"episode {episode} frame {int(frame_index[rows][bad])}: timestamp "
                    f"{timestamps[rows][bad]:.4f} s in the table, "
                    f"{ours.timestamp[frame_index[rows][bad]]:.4f} s in the dataset "
                    f"(more than one frame period apart)"
                )
    return index


def _model_of(out_dir: Path) -> str:
    progress = out_dir / PROGRESS_FILE
    if progress.is_file():
        model = read_model_id(progress)
        if model:
            return model
    try:
        return str(json.loads((out_dir / "manifest.json").read_text())["settings"]["model"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise JoinError(
            f"{out_dir}: cannot tell which model scored it (no {PROGRESS_FILE} and no readable manifest.json)"
        ) from exc


def write_dataset_progress(out_dir: Path, dataset_dir: Path, path: Path) -> int:
    """Write ``path``: the progress of a scored output directory, keyed by the dataset's index.

    Returns the number of rows written.
    """
    out_dir = Path(out_dir)
    frames_path = out_dir / "frames.parquet"
    if not frames_path.is_file():
        raise JoinError(f"{out_dir}: no frames.parquet (score something into it first)")
    frames = pq.read_table(frames_path)
    dataset = LeRobotDatasetDir(Path(dataset_dir))
    index = dataset_index(dataset, frames)
    write_progress_parquet(
        Path(path),
        frames,
        _model_of(out_dir),
        index=index,
        extra_metadata={"topreward_ros.dataset": str(dataset.root.resolve())},
    )
    return frames.num_rows
