"""calibrated.yaml from `topreward eval` starts the real node as its only parameters file.

A small evaluation (two frame folders, one success, one failure, the tiny
random model) writes calibrated.yaml; the INSTALLED scorer_node executable is
started with ``--ros-args --params-file calibrated.yaml`` and nothing else;
its parameters are read back over the parameter services and its published
``TaskProgress`` must carry the calibrated threshold and model.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image as PILImage

pytest.importorskip("rclpy")

import rclpy  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import parameter_value_to_python  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from support.command_line import command_line
from support.ros_process import stop_child  # noqa: E402
from support.scorer_node_rig import EXECUTABLE  # noqa: E402

from topreward_ros.commands.cli import main as topreward  # noqa: E402
from topreward_ros.demo.scene import DEMO_SCENES, render_episode  # noqa: E402
from topreward_ros.msg import TaskProgress  # noqa: E402

pytestmark = [pytest.mark.timeout(300)]
# Videos have no topics: every other setting the threshold depends on is written.
KEYS = (
    "success_threshold",
    "success_window",
    "success_consecutive",
    "model",
    "rate_hz",
    "sample_fps",
    "max_frames",
    "view_size",
    "sync_tolerance_s",
)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("eval_node")
    for name, spec in (("good", DEMO_SCENES[0]), ("bad", DEMO_SCENES[1])):
        (root / name).mkdir()
        for i, rgb in enumerate(render_episode(spec, 4.0, 96, 72)[:8]):
            PILImage.fromarray(rgb).save(root / name / f"{i:03d}.png")
    (root / "labels.yaml").write_text(
        "good: {success: 1, instruction: put the red block in the bowl}\n"
        "bad: {success: 0, instruction: put the red block in the bowl}\n"
    )
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        code = topreward(
            command_line(
                "eval {} {} -l {} -o {} --model {} --local-files-only "
                "--view-size 64 --source-fps 4 --success-window 2 "
                "--success-consecutive 4 -q",
                root / "good",
                root / "bad",
                root / "labels.yaml",
                root / "out",
                tiny_model_dir,
            )
        )
    assert code == 0, err.getvalue()
    return root / "out" / "calibrated.yaml"


class Client:
    """A graph participant in its own context: parameter client, camera, instruction, progress."""

    def __init__(self) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("calibrated_yaml_client", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.params = AsyncParameterClient(self.node, "scorer_node")
        latched = QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        self.camera = self.node.create_publisher(Image, "camera/image_raw", 10)
        self.instruction = self.node.create_publisher(String, "instruction", latched)
        self.progress: list[TaskProgress] = []
        self.node.create_subscription(
            TaskProgress,
            "task_progress",
            self.progress.append,
            QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE),
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def wait_for(
    what: str,
    predicate: Callable[[], Any],
    proc: subprocess.Popen,
    log: Path,
    timeout: float = 90.0,
    tick: Callable[[], None] | None = None,
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"scorer_node exited ({proc.returncode}) waiting for {what}:\n{log.read_text()[-3000:]}")
        if tick:
            tick()
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def node(calibrated: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Client, Path]]:
    if not EXECUTABLE.exists():
        pytest.fail(f"{EXECUTABLE} missing: run `make build` first")
    log = tmp_path_factory.mktemp("eval_node_log") / "node.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(EXECUTABLE), "--ros-args", "--params-file", str(calibrated)], stdout=out, stderr=subprocess.STDOUT
        )
    client = Client()
    try:
        yield proc, client, log
    finally:
        client.close()
        stop_child(proc)


def test_node_parameters_equal_the_calibrated_yaml(calibrated: Path, node: tuple[Any, Client, Path]) -> None:
    proc, client, log = node
    expected = yaml.safe_load(calibrated.read_text())["/**"]["ros__parameters"]
    assert sorted(expected) == sorted(KEYS)
    assert (expected["success_window"], expected["success_consecutive"]) == (2, 4)
    wait_for("the node's parameter services", client.params.services_are_ready, proc, log)
    future = client.params.get_parameters(list(KEYS))
    wait_for("get_parameters", future.done, proc, log, timeout=30)
    got = {k: parameter_value_to_python(v) for k, v in zip(KEYS, future.result().values)}
    assert got == expected


def test_node_publishes_with_the_calibrated_threshold_and_model(
    calibrated: Path, node: tuple[Any, Client, Path]
) -> None:
    proc, client, log = node
    expected = yaml.safe_load(calibrated.read_text())["/**"]["ros__parameters"]
    wait_for(
        "the node to subscribe to the camera and instruction",
        lambda: client.camera.get_subscription_count() > 0 and client.instruction.get_subscription_count() > 0,
        proc,
        log,
    )
    client.instruction.publish(String(data="put the red block in the bowl"))
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[10:20, 10:30] = (200, 40, 40)

    def publish_frame() -> None:
        msg = Image(height=48, width=64, encoding="rgb8", step=64 * 3, data=frame.tobytes())
        msg.header.stamp = client.node.get_clock().now().to_msg()
        client.camera.publish(msg)

    progress = wait_for("a TaskProgress", lambda: list(client.progress), proc, log, timeout=120, tick=publish_frame)
    assert progress[0].success_threshold == expected["success_threshold"]
    assert progress[0].model_id == expected["model"]
