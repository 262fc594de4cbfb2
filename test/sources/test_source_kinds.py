"""The source-kind registry: what a path is, where it writes, how it opens.

Every kind is built from real files (a bag written with the bag writer, a
LeRobot dataset, a folder of PNG frames) through the registry the
evaluation uses, and read back; a kind added to the registry alone is
classified, placed and opened by the evaluation with no other change.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from topreward_ros.bag.writer import BagWriter, image_msg, string_msg
from topreward_ros.demo.scene import DEMO_SCENES
from topreward_ros.demo.synthetic_lerobot import DatasetCamera, write_lerobot_dataset
from topreward_ros.evaluation.inputs import classify
from topreward_ros.evaluation.labels import Label
from topreward_ros.evaluation.runner import EvalRunner, EvalSettings
from topreward_ros.sources import kinds
from topreward_ros.sources.bag import BagSource
from topreward_ros.sources.kinds import KINDS, SourceKind, kind_of, multi_episode_kinds, source_kind
from topreward_ros.sources.lerobot import DatasetSource
from topreward_ros.sources.video import VideoSource

SECOND = 1_000_000_000
CAMERA = "/rig/front/image_raw"
#: Four frames of a folder read at source_fps 2.
HALF_SECONDS = [0, SECOND // 2, SECOND, 3 * SECOND // 2]


def picture(level: int) -> np.ndarray:
    return np.full((24, 32, 3), level, dtype=np.uint8)


def write_bag(path: Path) -> Path:
    """Two episodes: an instruction, frames, a second instruction, frames."""
    with BagWriter(path, "mcap") as writer:
        for episode, task in enumerate(("pick up the cup", "stack the blocks")):
            start = (10 + 5 * episode) * SECOND
            writer.write("/instruction", string_msg(task), start)
            for k in range(3):
                stamp = start + (k + 1) * SECOND // 2
                writer.write(CAMERA, image_msg(picture(40 * k), stamp), stamp)
    return path


def write_frames(path: Path, count: int = 4) -> Path:
    from PIL import Image

    path.mkdir(parents=True)
    for k in range(count):
        Image.fromarray(picture(30 * k)).save(path / f"{k:03d}.png")
    return path


def planned(source) -> list[tuple]:
    """Each planned episode's number and instruction, and the stamps of its frames as read."""
    specs, _ = source.plan()
    return [(spec.index, spec.instruction, [frame.stamp_ns for frame in source.frames(spec)]) for spec in specs]


def test_each_kind_is_recognised_placed_and_opened_from_real_files(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "rig_bag")
    dataset = write_lerobot_dataset(
        tmp_path / "ds", DEMO_SCENES, cameras=(DatasetCamera("observation.images.front", 64, 48),), fps=4, duration_s=1
    )
    frames = write_frames(tmp_path / "run_07")
    settings = EvalSettings(camera_topics=(CAMERA,), source_fps=2.0)
    got = {}
    for path, instruction in ((bag, None), (dataset.root, None), (frames, "open the drawer")):
        kind = kind_of(path)
        source = kind.build(path, settings, instruction)
        got[kind.name] = (kind.output_dir, kind.multi_episode, type(source), planned(source))
    assert got["bag"] == (
        "bags",
        True,
        BagSource,
        [
            (0, "pick up the cup", [10 * SECOND + k * SECOND // 2 for k in (1, 2, 3)]),
            (1, "stack the blocks", [15 * SECOND + k * SECOND // 2 for k in (1, 2, 3)]),
        ],
    )
    assert got["dataset"][:3] == ("datasets", True, DatasetSource)
    assert got["dataset"][3] == [
        (e.episode_index, e.task, [round(t * SECOND) for t in e.timestamps]) for e in dataset.episodes
    ]
    assert got["frames"] == ("videos", False, VideoSource, [(0, "open the drawer", HALF_SECONDS)])
    assert multi_episode_kinds() == ("dataset", "bag")


def test_the_first_kind_that_recognises_a_path_is_its_kind(tmp_path: Path) -> None:
    dataset = write_lerobot_dataset(
        tmp_path / "ds", DEMO_SCENES[:1], cameras=(DatasetCamera("observation.images.front", 64, 48),), duration_s=1
    )
    (dataset.root / "stray.mcap").write_bytes(b"")  # a dataset holding a storage file is still a dataset
    (tmp_path / "clip.MP4").write_bytes(b"")
    (tmp_path / "single.MCAP").write_bytes(b"")
    (tmp_path / "recording").mkdir()
    (tmp_path / "recording" / "recording_0.db3").write_bytes(b"")
    (tmp_path / "pictures").mkdir()
    names = {p.name: kind_of(p).name for p in tmp_path.iterdir()}
    assert names == {
        "ds": "dataset",
        "clip.MP4": "video",
        "single.MCAP": "bag",
        "recording": "bag",
        "pictures": "frames",
    }


def test_a_video_kind_without_an_instruction_is_refused_by_name(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "run_07")
    with pytest.raises(ValueError, match="run_07: a video or frame folder carries no instruction"):
        source_kind("frames").build(frames, EvalSettings(), None)
    with pytest.raises(KeyError, match="no source kind 'zip'; known: dataset, bag, video, frames"):
        source_kind("zip")


def test_a_kind_added_to_the_registry_alone_is_classified_placed_and_opened_by_the_evaluation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``.frames`` pointer file naming a folder of frames: one registry line, nothing else."""
    frames = write_frames(tmp_path / "takes" / "take_3")
    pointer = tmp_path / "take_3.frames"
    pointer.write_text(str(frames))

    def build(path: Path, options, instruction: str | None) -> VideoSource:
        return VideoSource(Path(path.read_text()), instruction or "", options.source_fps)

    pointer_kind = SourceKind("pointer", "pointers", False, lambda p: p.suffix == ".frames", build)
    monkeypatch.setattr(kinds, "KINDS", (pointer_kind, *KINDS))
    item = classify(pointer)
    assert (item.kind, item.name, item.multi_episode) == ("pointer", "take_3", False)
    runner = EvalRunner(EvalSettings(source_fps=2.0), tmp_path / "out", "tiny")
    assert runner.output_dir(item) == tmp_path / "out" / "pointers" / "take_3"
    source = runner.make_source(
        item, {"take_3": Label("take_3", True, instruction="fold the towel", where="labels.csv:2")}
    )
    assert planned(source) == [(0, "fold the towel", HALF_SECONDS)]
