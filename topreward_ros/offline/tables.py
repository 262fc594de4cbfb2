"""Per-frame relabel tables (Parquet and CSV), shaped to join a LeRobot dataset.

One row per frame of the primary camera in an episode, so the table lines up
with a dataset converted from the same bag at the camera's rate. LeRobot
datasets identify a frame by ``episode_index`` and ``frame_index`` and carry
``timestamp`` (seconds since the episode's first frame); the same three
columns here are the join keys (join on the two indices, check that the
timestamps agree to within one frame period).

Columns (``FRAME_SCHEMA``):

* ``episode_index`` (int64): episode number in the bag, plus ``--episode-offset``.
* ``frame_index`` (int64): index of the primary camera frame in the episode.
* ``timestamp`` (float32): seconds since the episode's first primary frame (header stamps).
* ``stamp_ns`` (int64): the frame's header stamp.
* ``log_time_ns`` (int64): when the recorder logged the frame.
* ``sampled`` (bool): the frame is one of the 2 fps frames the model saw.
* ``progress`` (float32): the paper's offline curve (min-max over K prefixes),
  linearly interpolated between prefix end stamps.
* ``reward`` (float32): the paper's dense reward (Eq. 3) for this frame.
* ``success`` (bool): the live success flag as the node would have latched it by this frame.
* ``live_progress`` (float32): the node's causal progress from its latest
  score covering this frame (NaN before the first score).
* ``live_log_prob_true`` (float64): that score's raw log p(" True") (NaN before the first score).
* ``episode_success`` (bool): the offline verdict for the whole episode
  (success score of the full curve > threshold, strictly, as the live detector).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from topreward_ros.files.atomic import write_atomic

FRAME_SCHEMA = pa.schema(
    [
        ("episode_index", pa.int64()),
        ("frame_index", pa.int64()),
        ("timestamp", pa.float32()),
        ("stamp_ns", pa.int64()),
        ("log_time_ns", pa.int64()),
        ("sampled", pa.bool_()),
        ("progress", pa.float32()),
        ("reward", pa.float32()),
        ("success", pa.bool_()),
        ("live_progress", pa.float32()),
        ("live_log_prob_true", pa.float64()),
        ("episode_success", pa.bool_()),
    ]
)

#: The columns a LeRobot dataset can be joined on.
JOIN_KEYS = ("episode_index", "frame_index", "timestamp")


class TableError(ValueError):
    """Columns do not fit the frame table schema."""


def frame_table(columns: Mapping[str, Sequence[Any] | np.ndarray]) -> pa.Table:
    """Build a table with exactly ``FRAME_SCHEMA``'s columns, in its order and types."""
    missing = [f.name for f in FRAME_SCHEMA if f.name not in columns]
    extra = sorted(set(columns) - set(FRAME_SCHEMA.names))
    if missing or extra:
        raise TableError(f"frame table columns: missing {missing}, unexpected {extra}")
    lengths = {name: len(columns[name]) for name in FRAME_SCHEMA.names}
    if len(set(lengths.values())) > 1:
        raise TableError(f"frame table columns differ in length: {lengths}")
    arrays = [pa.array(np.asarray(columns[f.name]), type=f.type) for f in FRAME_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=FRAME_SCHEMA)


def write_parquet(path: Path, table: pa.Table) -> Path:
    return write_atomic(path, lambda f: pq.write_table(table, f))


def write_csv(path: Path, table: pa.Table) -> Path:
    return write_atomic(path, lambda f: pacsv.write_csv(table, f))


def read_parquet(path: Path) -> pa.Table:
    return pq.read_table(path)


def concat_frame_tables(paths: Sequence[Path]) -> pa.Table:
    """All episodes' tables in one, ordered by episode then frame."""
    if not paths:
        return FRAME_SCHEMA.empty_table()
    table = pa.concat_tables([pq.read_table(p, schema=FRAME_SCHEMA) for p in paths])
    return table.sort_by([("episode_index", "ascending"), ("frame_index", "ascending")])
