"""Per-task success thresholds: read from calibrated.yaml, applied by the node and `topreward bag`.

One parameters file holds a global threshold and a map from instruction to
threshold. `topreward bag` judges each episode with its instruction's
threshold and an instruction not in the map with the global one; the node,
loading the same file, names the threshold of the running episode on
/diagnostics and in each EpisodeResult. The thresholds are chosen so that
each rule gives a different verdict with the tiny model's scores (about
-20 nats): the global one (-100) and one task's (-200) pass, the other
task's (-0.5) does not.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.command_line import command_line
from support.modelless_node import modelless_node

from topreward_ros.commands.cli import main as topreward_main
from topreward_ros.demo.scene import DEMO_SCENES, SceneSpec
from topreward_ros.demo.synthetic_bag import write_episodes_bag
from topreward_ros.files.params_file import params_file_text
from topreward_ros.scoring.thresholds import SuccessThresholds, thresholds_from_params

SCENES = (*DEMO_SCENES, SceneSpec("push the green block to the left", (40, 160, 60), 0.6, 0.3))[:3]
STRICT, LENIENT, GLOBAL = SCENES[0].instruction, SCENES[1].instruction, -100.0
UNKNOWN = SCENES[2].instruction
THRESHOLDS = {STRICT: -0.5, LENIENT: -200.0}


def write_calibration(path: Path) -> Path:
    path.write_text(
        params_file_text(
            {
                "success_threshold": GLOBAL,
                # Extra spaces: instructions match with whitespace runs as one space.
                "task_instructions": [f"  {STRICT} ", LENIENT.replace(" ", "  ")],
                "task_success_thresholds": [THRESHOLDS[STRICT], THRESHOLDS[LENIENT]],
            }
        )
    )
    return path


def test_lookup_falls_back_to_the_global_threshold() -> None:
    thresholds = thresholds_from_params(
        {"success_threshold": -9.0, "task_instructions": ["open  the drawer"], "task_success_thresholds": [-7.0]},
        default=-8.0,
    )
    assert thresholds.for_instruction(" open the  drawer") == -7.0
    assert thresholds.for_instruction("Open the drawer") == -9.0  # case counts: the model sees it
    assert thresholds.for_instruction("wipe the table") == -9.0
    assert thresholds_from_params({}, default=-8.0) == SuccessThresholds(-8.0)
    with pytest.raises(ValueError, match="pair up one to one"):
        thresholds_from_params({"task_instructions": ["a"], "task_success_thresholds": []}, -8.0)
    with pytest.raises(ValueError, match="must be <= 0"):
        thresholds_from_params({"task_instructions": ["a"], "task_success_thresholds": [1.0]}, -8.0)
    with pytest.raises(ValueError, match="two per-task thresholds"):
        SuccessThresholds(-8.0, (("a b", -1.0), ("a  b", -2.0)))


def test_bag_judges_each_episode_with_its_instruction_threshold(tmp_path: Path, tiny_model_dir: Path) -> None:
    bag = tmp_path / "bag"
    write_episodes_bag(bag, "mcap", SCENES, duration_s=3.0)
    calibration = write_calibration(tmp_path / "calibrated.yaml")
    out = tmp_path / "out"
    assert (
        topreward_main(
            command_line(
                "bag {} -o {} --model {} --device cpu --dtype float32 "
                "--local-files-only --torch-threads 1 --view-size 64 --rate 2.0 "
                "--no-plot -q --params-file {}",
                bag,
                out,
                tiny_model_dir,
                calibration,
            )
        )
        == 0
    )
    curves = {c["instruction"]: c for c in (json.loads(p.read_text()) for p in out.glob("episode_*/curve.json"))}
    expected = {STRICT: (-0.5, False), LENIENT: (-200.0, True), UNKNOWN: (GLOBAL, True)}
    for instruction, (threshold, success) in expected.items():
        curve = curves[instruction]
        assert curve["success_threshold"] == curve["result"]["threshold"] == threshold, instruction
        assert curve["result"]["success"] is success, instruction
        assert any(t["success"] for t in curve["live"]) is success
        assert curve["episode_success"] is (curve["offline"]["success_score"] > threshold)
    settings = json.loads((out / "manifest.json").read_text())["settings"]
    assert settings["success_threshold"] == GLOBAL
    assert settings["task_thresholds"] == THRESHOLDS


# -- the node ----------------------------------------------------------------------------------
rclpy = pytest.importorskip("rclpy")


@pytest.fixture
def node_context(tmp_path: Path) -> Iterator[Any]:
    from rclpy.context import Context

    ctx = Context()
    calibration = write_calibration(tmp_path / "calibrated.yaml")
    rclpy.init(context=ctx, args=["--ros-args", "--params-file", str(calibration)])
    yield ctx
    rclpy.shutdown(context=ctx)


def test_node_names_the_threshold_of_each_episode(node_context: Any, tmp_path: Path) -> None:
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from topreward_ros.msg import EpisodeResult

    node = modelless_node(node_context, tmp_path, rate_hz=20.0)
    listener = rclpy.create_node("threshold_listener", context=node_context)
    results: list[Any] = []
    listener.create_subscription(
        EpisodeResult,
        "episode_result",
        results.append,
        QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL),
    )
    executor = SingleThreadedExecutor(context=node_context)
    executor.add_node(node)
    executor.add_node(listener)

    def episode_status() -> dict[str, str]:
        (status,) = [s for s in node.diagnostic_statuses() if s.name.endswith(": episode")]
        return {kv.key: kv.value for kv in status.values}

    try:
        seen = []
        for instruction in (STRICT, UNKNOWN, LENIENT):
            node.set_parameters([Parameter("instruction", value=instruction)])
            values = episode_status()
            seen.append((values["instruction"], float(values["success_threshold"]), values["success_threshold_source"]))
        assert seen == [(STRICT, -0.5, "task"), (UNKNOWN, GLOBAL, "global"), (LENIENT, -200.0, "task")]
        deadline = time.monotonic() + 60.0
        while len(results) < 2:
            assert time.monotonic() < deadline, f"received {len(results)} results"
            executor.spin_once(timeout_sec=0.1)
        assert [(r.instruction, r.threshold) for r in results] == [(STRICT, -0.5), (UNKNOWN, GLOBAL)]
    finally:
        executor.shutdown()
        listener.destroy_node()
        node.destroy_node()
