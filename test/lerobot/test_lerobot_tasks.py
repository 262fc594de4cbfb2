"""A LeRobot episode whose frames carry two tasks is scored with the task of its FIRST frame.

The instruction is what the operator was asked at the start; a task that
changes part-way (a relabelled tail, a second subtask) does not rename the
episode. The source says so in a note. The dataset is written by
``topreward_ros.demo.synthetic_lerobot`` and the tail of episode 0 relabelled with
episode 1's task in the data parquet.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from topreward_ros.demo.scene import DEMO_SCENES
from topreward_ros.demo.synthetic_lerobot import DatasetCamera, write_lerobot_dataset
from topreward_ros.sources.lerobot import DatasetSource, DatasetSourceOptions

FRONT = "observation.images.front"


def test_an_episode_with_two_tasks_takes_its_first_frames_task(tmp_path: Path) -> None:
    written = write_lerobot_dataset(
        tmp_path / "ds", DEMO_SCENES[:2], (DatasetCamera(FRONT, 64, 48),), fps=10, duration_s=2.0, episodes_per_file=2
    )
    data = written.root / "data" / "chunk-000" / "file-000.parquet"
    table = pq.read_table(data)
    first = table.filter(pc.equal(table["episode_index"], 0))["task_index"].to_pylist()
    other = table.filter(pc.equal(table["episode_index"], 1))["task_index"][0].as_py()
    assert len(set(first)) == 1 and other != first[0]
    tail = pc.and_(pc.equal(table["episode_index"], 0), pc.greater_equal(table["frame_index"], 10))
    relabelled = pc.if_else(tail, pa.scalar(other, table.schema.field("task_index").type), table["task_index"])
    pq.write_table(table.set_column(table.schema.get_field_index("task_index"), "task_index", relabelled), data)

    specs, notes = DatasetSource(written.root, DatasetSourceOptions(camera_keys=(FRONT,))).plan()
    assert [s.instruction for s in specs] == [DEMO_SCENES[0].instruction, DEMO_SCENES[1].instruction]
    assert (
        f"episode 0 has 2 tasks; scored with the task of its first frame: {DEMO_SCENES[0].instruction!r}"
    ) in notes.notes
