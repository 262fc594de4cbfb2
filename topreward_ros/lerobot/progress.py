"""The progress parquet LeRobot's reward-aligned sample weighting reads.

LeRobot's RA-BC weighting (``SampleWeightingConfig(type="rabc",
progress_path=...)``, ``--sample_weighting.type=rabc`` on ``lerobot-train``)
loads a parquet with one row per frame and looks rows up by the ``index``
every training batch carries (the dataset-wide frame index). It reads:

* ``index`` (int64): the dataset's global frame index;
* ``episode_index`` (int64): the episode, to keep progress deltas inside it;
* ``frame_index`` (int64): the frame within the episode;
* ``progress_sparse`` (float32): task progress in [0, 1] (the weighting's
  default ``head_mode="sparse"`` reads this column).

Here ``progress_sparse`` is the paper's offline curve: K prefixes scored,
min-max normalised per episode, interpolated to every frame (the frame
table's ``progress`` column). The file's schema metadata names the model
under ``vlm_name`` (the key LeRobot's own TOPReward labelling writes) and
carries how ``index`` was obtained under ``topreward_ros.index``.

Frames of episodes that were not scored are absent; the weighting gives
them its fallback weight.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from topreward_ros.files.atomic import write_atomic

PROGRESS_FILE = "topreward_progress.parquet"

PROGRESS_SCHEMA = pa.schema(
    [
        ("index", pa.int64()),
        ("episode_index", pa.int64()),
        ("frame_index", pa.int64()),
        ("progress_sparse", pa.float32()),
    ]
)

#: ``index`` is the row number over all episodes of the run (bags have no dataset index).
INDEX_RUNNING = "running"
#: ``index`` is the dataset's own ``index`` column.
INDEX_DATASET = "dataset"


def progress_table(
    frames: pa.Table, model_id: str, index: np.ndarray | None = None, extra_metadata: dict[str, Any] | None = None
) -> pa.Table:
    """The progress table for a frame table (``offline.tables.FRAME_SCHEMA`` rows).

    ``index``: the global frame index of each row; None numbers the rows
    0, 1, 2, ... in episode then frame order (the running index).
    """
    frames = frames.sort_by([("episode_index", "ascending"), ("frame_index", "ascending")])
    n = frames.num_rows
    if index is None:
        index_values, how = np.arange(n, dtype=np.int64), INDEX_RUNNING
    else:
        index_values, how = np.asarray(index, dtype=np.int64), INDEX_DATASET
        if len(index_values) != n:
            raise ValueError(f"index has {len(index_values)} values for {n} frames")
    table = pa.Table.from_arrays(
        [
            pa.array(index_values, pa.int64()),
            frames.column("episode_index").cast(pa.int64()),
            frames.column("frame_index").cast(pa.int64()),
            frames.column("progress").cast(pa.float32()),
        ],
        schema=PROGRESS_SCHEMA,
    )
    metadata = {
        "vlm_name": model_id,
        "topreward_ros.index": how,
        "topreward_ros.progress": "offline curve, min-max per episode, per frame",
    }
    metadata.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in (extra_metadata or {}).items()})
    return table.replace_schema_metadata({k.encode(): str(v).encode() for k, v in metadata.items()})


def write_progress_parquet(
    path: Path,
    frames: pa.Table,
    model_id: str,
    index: np.ndarray | None = None,
    extra_metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``progress_table(...)`` to ``path`` atomically."""
    table = progress_table(frames, model_id, index, extra_metadata)
    return write_atomic(Path(path), lambda f: pq.write_table(table, f))


def read_model_id(path: Path) -> str | None:
    """The model a progress parquet was computed with (its ``vlm_name`` metadata)."""
    metadata = pq.read_schema(path).metadata or {}
    value = metadata.get(b"vlm_name")
    return value.decode() if value is not None else None
