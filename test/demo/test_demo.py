"""The demo: its drawn scene, and `python -m topreward_ros.demo` end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from topreward_ros.demo.run import CAMERA_TOPIC, INSTRUCTION_TOPIC, write_demo_bag
from topreward_ros.demo.scene import DEMO_SCENES, SceneSpec, render_episode, render_frame

ROOT = Path(__file__).resolve().parents[2]


def test_scene_is_deterministic_and_the_task_visibly_progresses():
    spec = DEMO_SCENES[0]
    first = render_frame(spec, 0.0)
    assert first.shape == (240, 320, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, render_frame(spec, 0.0))
    end = render_frame(spec, spec.duration_s)
    red = np.array(spec.block_color)

    # The block's pixels move from its start position to the bowl.
    def block_x(img):
        return np.nonzero(np.all(img == red, axis=2))[1].mean() / img.shape[1]

    assert block_x(first) == pytest.approx(spec.block_x, abs=0.03)
    assert block_x(end) == pytest.approx(spec.bowl_x, abs=0.03)
    frames = render_episode(spec, rate_hz=12.0)
    assert len(frames) == 72
    assert sum(not np.array_equal(a, b) for a, b in zip(frames, frames[1:])) > 60


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"instruction": " "}, "instruction must not be empty"),
        ({"instruction": "x", "block_x": 0.95}, "block_x must lie in"),
        ({"instruction": "x", "duration_s": 0}, "duration_s must be > 0"),
    ],
)
def test_scene_spec_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SceneSpec(**kwargs)


def test_demo_bag_layout(tmp_path):
    from topreward_ros.bag.reader import BagReader

    with BagReader(write_demo_bag(tmp_path / "bag", rate_hz=6.0, size=(96, 72))) as reader:
        assert reader.topics[CAMERA_TOPIC].msgtype == "sensor_msgs/msg/CompressedImage"
        assert reader.topics[CAMERA_TOPIC].message_count == 2 * 36
        texts = [reader.deserialize(m).data for m in reader.messages([INSTRUCTION_TOPIC])]
    assert texts == [s.instruction for s in DEMO_SCENES]


@pytest.mark.slow
def test_make_demo_entry_point_scores_the_demo_and_says_the_model_is_random(tmp_path):
    """What `make demo` runs, as a separate process from the repository root."""
    env = dict(os.environ, OMP_NUM_THREADS="2")
    proc = subprocess.run(
        [sys.executable, "-m", "topreward_ros.demo", "--out", str(tmp_path / "demo")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "RANDOMLY INITIALISED" in out
    assert "MODEL=Qwen/Qwen3-VL-8B-Instruct make demo" in out
    scores = tmp_path / "demo" / "scores"
    for index in range(2):
        ep_dir = scores / f"episode_{index:04d}"
        assert f"{ep_dir}/plot.png" in out
        png = (ep_dir / "plot.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    table = pq.read_table(scores / "frames.parquet").to_pydict()
    assert sorted(set(table["episode_index"])) == [0, 1]
    assert len(table["frame_index"]) == 2 * 72
