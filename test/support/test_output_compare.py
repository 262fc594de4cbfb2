"""The output comparison used by the Ray-vs-local and resume tests reads every file's content.

A run's outputs (tables, CSV, progress.mcap, plots, video) are compared with
an untouched copy (equal) and with copies where one file was changed in a
way a broken engine could change it (unequal, naming the file).
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support.command_line import command_line
from support.output_compare import assert_same_outputs
from topreward_ros.bag.writer import BagWriter, string_msg
from topreward_ros.commands.cli import main
from topreward_ros.demo.scene import DEMO_SCENES
from topreward_ros.demo.synthetic_bag import write_episodes_bag


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("compare")
    bag = write_episodes_bag(root / "bag", "mcap", DEMO_SCENES[:1], duration_s=2.0).path
    out = root / "out"
    assert (
        main(
            command_line(
                "bag {} -o {} --model {} --device cpu --dtype float32 "
                "--local-files-only --torch-threads 1 --view-size 48 "
                "--num-prefixes 3 --rate 2.0 --video -q",
                bag,
                out,
                tiny_model_dir,
            )
        )
        == 0
    )
    return out


def changed_copy(outputs: Path, tmp_path: Path, name: str, change) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(outputs, copy)
    path = sorted(copy.rglob(name))[0]  # the episode's own file (a combined one may exist too)
    change(path)
    return copy


def test_identical_outputs_compare_equal_and_every_kind_is_read(outputs: Path, tmp_path: Path) -> None:
    compared = assert_same_outputs(outputs, changed_copy(outputs, tmp_path, "curve.json", lambda p: None))
    kinds = {Path(rel).suffix for rel in compared}
    assert {".json", ".parquet", ".csv", ".mcap", ".png", ".mp4"} <= kinds


def _progress_mcap_with_another_instruction(path: Path) -> None:
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    from topreward_ros.offline.progress_mcap import PROGRESS_TOPIC

    with open(path, "rb") as f:
        ticks = [
            (m.log_time, d)
            for _, c, m, d in make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages()
            if c.topic == PROGRESS_TOPIC
        ]
    path.unlink()
    # The same number of messages at the same times, on another topic: the content differs.
    with BagWriter(path.with_suffix(""), "mcap") as writer:
        for log_time, _ in ticks:
            writer.write("/task_progress_other", string_msg("x"), log_time)
    (written,) = list(path.with_suffix("").glob("*.mcap"))
    written.rename(path)
    shutil.rmtree(path.with_suffix(""))


def _csv_cell(path: Path) -> None:
    rows = list(csv.reader(open(path, newline="")))
    rows[1][rows[0].index("progress")] = "0.123456"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def _png_pixels(path: Path) -> None:
    pixels = np.asarray(Image.open(path).convert("RGB")).copy()
    pixels[: pixels.shape[0] // 2] = 255 - pixels[: pixels.shape[0] // 2]
    Image.fromarray(pixels).save(path)


def _video_frames(path: Path) -> None:
    from topreward_ros.rendering.video import write_video

    write_video(path, iter([np.zeros((40, 40, 3), np.uint8)] * 3), 2.0)


@pytest.mark.parametrize(
    "name, change",
    [
        ("progress.mcap", _progress_mcap_with_another_instruction),
        ("frames.csv", _csv_cell),
        ("plot.png", _png_pixels),
        ("progress.mp4", _video_frames),
    ],
)
def test_a_changed_file_is_found(outputs: Path, tmp_path: Path, name: str, change) -> None:
    with pytest.raises(AssertionError, match=name.split(".")[0]):
        assert_same_outputs(outputs, changed_copy(outputs, tmp_path, name, change))


def test_a_changed_yaml_value_is_found_and_comments_are_not_content(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for d, threshold, comment in ((a, -3.25, "# fitted on 12 episodes"), (b, -3.25, "# another run")):
        d.mkdir()
        (d / "calibrated.yaml").write_text(
            f"{comment}\nscorer_node:\n  ros__parameters:\n    success_threshold: {threshold}\n"
        )
    assert assert_same_outputs(a, b) == ["calibrated.yaml"]
    (b / "calibrated.yaml").write_text("scorer_node:\n  ros__parameters:\n    success_threshold: -2.5\n")
    with pytest.raises(AssertionError, match="calibrated"):
        assert_same_outputs(a, b)
