"""Episode sources: what a replica reads for one episode is what the whole walk gives it.

The in-process engine walks a bag once; a Ray replica gets one planned
episode and reads only its log-time range. Both must give the runner the
same episodes with the same frames, also where episodes touch: an
instruction logged at the same time as camera frames on both sides of it,
a stamp jump or gap that cuts an episode at a frame, a reset, a fixed
instruction, several storage formats. No model is involved: these are the
frames the runner would see, compared one by one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from topreward_ros.bag.writer import BagWriter, image_msg, string_msg
from topreward_ros.demo.scene import DEMO_SCENES, SceneSpec
from topreward_ros.demo.synthetic_lerobot import DatasetCamera, write_lerobot_dataset
from topreward_ros.offline.source import EpisodeSpec, SourceNotes
from topreward_ros.scoring.frames import prepare_view
from topreward_ros.sources.bag import BagSource, BagSourceOptions
from topreward_ros.sources.lerobot import DatasetSource, DatasetSourceOptions
from topreward_ros.sources.video import VideoSource

MS = 1_000_000
START = 1_700_000_000 * 1_000_000_000
CAM, WRIST = "/camera/image_raw", "/wrist/image_raw"


def picture(k: int) -> np.ndarray:
    return np.full((8, 8, 3), k % 250, dtype=np.uint8)


def spec_key(spec: EpisodeSpec) -> tuple:
    return (
        spec.index,
        spec.instruction,
        spec.start_ns,
        spec.end_ns,
        spec.end_reason,
        spec.tick_phase_ns,
        spec.episode_index,
    )


def frame_list(frames) -> list[tuple]:
    return [(f.camera, f.stamp_ns, f.log_ns, f.label, f.error) for f in frames]


def walked(source) -> list[tuple]:
    out = []
    for spec, frames in source.walk(SourceNotes()):
        listed = frame_list(frames)  # the spec's end is final once its frames are read
        out.append((spec_key(spec), listed))
    return out


def ranged(source) -> list[tuple]:
    specs, _ = source.plan()
    out = []
    for spec in specs:
        listed = frame_list(source.frames(spec))
        out.append((spec_key(spec), listed))
    return out


def write_touching_bag(path: Path, storage: str) -> None:
    """Three episodes whose boundaries share log times with frames on both sides.

    Episode 0 starts with an instruction; a second instruction is logged at
    the very time of a primary and a wrist frame written before it, and of
    frames written after it. A reset follows, then the primary stamp jumps
    back by 5 s (a new episode at that frame) and later forward by 90 s.
    """
    with BagWriter(path, storage) as w:
        w.write("/instruction", string_msg("pick up the cup"), START)
        t = START
        stamp = START
        k = 0

        def frames(n: int) -> None:
            nonlocal t, stamp, k
            for _ in range(n):
                t += 100 * MS
                stamp += 100 * MS
                k += 1
                w.write(CAM, image_msg(picture(k), stamp), t)
                w.write(WRIST, image_msg(picture(k + 1), stamp + 3 * MS), t + 3 * MS)

        frames(5)
        tie = t + 100 * MS
        stamp += 100 * MS
        w.write(CAM, image_msg(picture(90), stamp), tie)  # before the instruction, same time
        w.write(WRIST, image_msg(picture(89), stamp - MS), tie)
        w.write("/instruction", string_msg("stack the blocks"), tie)
        w.write(WRIST, image_msg(picture(91), stamp + MS), tie)  # after it, same time
        t = tie
        frames(4)
        w.write("/reset", string_msg("again"), t + 50 * MS)
        t += 50 * MS
        frames(3)
        stamp -= 5_000 * MS  # the driver restarted: stamps jump back
        frames(3)
        stamp += 90_000 * MS  # and far forward
        frames(2)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_bag_episode_read_by_its_range_is_the_episode_of_the_whole_walk(tmp_path, storage):
    bag = tmp_path / "bag"
    write_touching_bag(bag, storage)
    source = BagSource(bag, BagSourceOptions(camera_topics=(CAM, WRIST), reset_topic="/reset", episode_offset=3))
    whole = walked(source)
    assert [(s[1], s[4]) for s, _ in whole] == [
        ("pick up the cup", "instruction"),
        ("stack the blocks", "reset"),
        ("stack the blocks", "camera stamp jumped back by 4.900 s"),
        ("stack the blocks", "camera stamp jumped forward by 90.100 s"),
        ("stack the blocks", "end of bag"),
    ]
    assert [s[6] for s, _ in whole] == [3, 4, 5, 6, 7]
    # The frames logged at the instruction's time: those before it end episode 0,
    # the one after it starts episode 1.
    assert [f[0] for f in whole[0][1][-2:]] == [0, 1] and whole[1][1][0][0] == 1
    assert whole[0][1][-1][2] == whole[0][1][-2][2] == whole[1][1][0][2] == whole[1][0][2]
    # Each episode's first primary frame after a stamp cut is the frame that cut it.
    for cut in whole[3:]:
        assert cut[1][0][2] == cut[0][2] and cut[1][0][0] == 0
    assert ranged(source) == whole


def test_a_fixed_instruction_bag_read_by_range_equals_the_walk(tmp_path):
    bag = tmp_path / "bag"
    write_touching_bag(bag, "mcap")
    source = BagSource(bag, BagSourceOptions(camera_topics=(CAM,), instruction="tidy up"))
    whole = walked(source)
    assert [s[1] for s, _ in whole] == ["tidy up"] * 3  # cut by the two stamp jumps only
    assert ranged(source) == whole


def test_the_plan_counts_frames_outside_episodes_and_each_episodes_frames(tmp_path):
    bag = tmp_path / "bag"
    with BagWriter(bag, "mcap") as w:
        for k in range(3):  # before any instruction
            w.write(CAM, image_msg(picture(k), START + k * 100 * MS), START + k * 100 * MS)
        w.write("/instruction", string_msg("wave"), START + 300 * MS)
        for k in range(3, 7):
            w.write(CAM, image_msg(picture(k), START + k * 100 * MS), START + k * 100 * MS)
    specs, notes = BagSource(bag, BagSourceOptions(camera_topics=(CAM,))).plan()
    assert notes.frames_outside_episodes == 3
    assert [(s.instruction, s.num_frames, s.start_ns, s.end_ns) for s in specs] == [
        ("wave", 4, START + 300 * MS, START + 600 * MS)
    ]


def test_a_dataset_plan_gives_each_episode_its_index_task_span_and_frames(tmp_path):
    scenes = (*DEMO_SCENES, SceneSpec("push the green block to the left", (40, 160, 60), 0.6, 0.3))
    written = write_lerobot_dataset(
        tmp_path / "ds",
        scenes,
        cameras=(DatasetCamera("observation.images.front", 64, 48),),
        fps=10,
        duration_s=0.5,
        episodes_per_file=2,
    )
    source = DatasetSource(written.root, DatasetSourceOptions(("observation.images.front",), episodes=(0, 2)))
    specs, _ = source.plan()
    assert [(s.index, s.instruction) for s in specs] == [
        (e.episode_index, e.task) for e in written.episodes if e.episode_index in (0, 2)
    ]
    for spec in specs:
        episode = written.episodes[spec.index]
        stamps = [round(t * 1e9) for t in episode.timestamps]
        frames, views = [], []
        for frame in source.frames(spec):  # a frame decodes while it is the current one
            frames.append(frame)
            view, frame_id = frame.decode(16)
            views.append((view.view(), frame_id))  # converted when its sample is composed
        assert [f.stamp_ns for f in frames] == stamps
        assert (spec.start_ns, spec.end_ns, spec.num_frames) == (stamps[0], stamps[-1], len(stamps))
        expected = [prepare_view(rgb, 16) for rgb in episode.frames["observation.images.front"]]
        for (view, frame_id), want in zip(views, expected):
            assert frame_id == "observation.images.front"
            assert np.abs(view.astype(int) - want.astype(int)).mean() < 12  # AV1 at crf 12


def test_a_frame_folder_is_one_episode_stamped_at_the_source_rate(tmp_path):
    from PIL import Image

    folder = tmp_path / "run_07"
    folder.mkdir()
    for k in range(5):
        Image.fromarray(picture(k * 40)).save(folder / f"{k:03d}.png")
    (folder / "002.png").write_bytes(b"not a png")
    source = VideoSource(folder, "open the drawer", source_fps=4.0)
    whole = walked(source)
    assert whole == ranged(source)
    ((key, frames),) = whole
    assert key[1:4] == ("open the drawer", 0, 1_000_000_000)
    assert [f[1] for f in frames] == [0, 250_000_000, 500_000_000, 750_000_000, 1_000_000_000]
    specs, _ = source.plan()
    results = []
    for frame in source.frames(specs[0]):
        try:
            results.append(int(frame.decode(8)[0].view().mean()))
        except ValueError as exc:
            results.append(str(exc))
    assert results[:2] + results[3:] == [0, 40, 120, 160]
    assert "cannot read image" in results[2] and "002.png" in results[2]


def test_a_truncated_bag_plans_its_whole_episodes_and_marks_the_one_cut_short(tmp_path):
    """The plan a Ray driver makes of a damaged bag: what the walk would score, the rest failed."""
    from topreward_ros.demo.synthetic_bag import CameraSpec, write_episodes_bag

    scenes = (*DEMO_SCENES, SceneSpec("push the green block to the left", (40, 160, 60), 0.6, 0.3))
    layout = write_episodes_bag(
        tmp_path / "bag", "mcap", scenes, (CameraSpec("/camera/image_raw", width=160, height=120),), duration_s=2.0
    )
    (mcap_file,) = layout.path.glob("*.mcap")
    data = mcap_file.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: int(len(data) * 0.75)])
    source = BagSource(cut, BagSourceOptions(camera_topics=("/camera/image_raw",)))
    specs, notes = source.plan()
    walk_notes = SourceNotes()
    walked_specs = []
    with pytest.raises(Exception, match="truncated"):
        for spec, frames in source.walk(walk_notes):
            walked_specs.append(spec)
            list(frames)
    assert "truncated" in (notes.read_error or "")
    assert [s.error is None for s in specs] == [True] * (len(specs) - 1) + [False]
    assert "unreadable before the episode ended" in specs[-1].error
    # The episodes the walk finished are the planned ones, with the same spans.
    assert [spec_key(s) for s in specs[:-1]] == [spec_key(s) for s in walked_specs[:-1]]
    for spec in specs[:-1]:
        assert frame_list(source.frames(spec))
