"""launch/scorer.launch.py run by real launch / launch_ros, checked on the ROS graph.

Each test starts ``test/launch_runner.py`` (what ``ros2 launch topreward_ros
scorer.launch.py name:=value ...`` does) as a child process, then looks at
the running node from a separate rclpy context: its name and namespace, its
parameters through the parameter services, and the topics it subscribes to
and publishes. Ctrl-C is a SIGINT to the launch process; launch forwards it
to the node and escalates to SIGTERM if the node has not exited within its
5 s grace period, which these tests must never see.

Skipped, with the reason, where launch / launch_ros are not importable
(`make test` installs them from the ros-extras sources when those are there).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

SKIP_REASON = (
    "launch / launch_ros / composition_interfaces are not importable: a ROS 2 install provides them, "
    "otherwise `make test` builds them from the ros-extras sources in shared/ beside the checkout "
    "(tools/install_ros_extras.sh)"
)
pytest.importorskip("launch", reason=SKIP_REASON)
pytest.importorskip("launch_ros.actions", reason=SKIP_REASON)

import rclpy  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import parameter_value_to_python  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from topreward_ros.msg import TaskProgress  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "test" / "launch_runner.py"
CONFIG = yaml.safe_load((ROOT / "config" / "scorer.yaml").read_text())["/**"]["ros__parameters"]
NODE = "scorer_node"
T = TypeVar("T")


def wait_for(what: str, predicate: Callable[[], T | None], launch: LaunchProcess, timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if not launch.alive():
            pytest.fail(f"launch exited (rc {launch.proc.returncode}) while waiting for {what}:\n{launch.log()}")
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout} s waiting for {what}; launch output:\n{launch.log()[-4000:]}")


class LaunchProcess:
    """``scorer.launch.py`` under LaunchService in a child process, output in a file."""

    def __init__(self, arguments: dict[str, str], workdir: Path) -> None:
        self.workdir = workdir
        self.log_path = workdir / "launch.out"
        self.ros_log_dir = workdir / "ros_log"
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", RCUTILS_COLORIZED_OUTPUT="0",
                   ROS_LOG_DIR=str(self.ros_log_dir))
        argv = [sys.executable, str(RUNNER), "topreward_ros", "scorer.launch.py",
                *(f"{name}:={value}" for name, value in arguments.items())]
        self._out = open(self.log_path, "wb")
        # A shell starting us in the background may have set SIGINT to "ignore",
        # which children inherit: give launch the default, as a terminal would.
        # Its own process group, so a failed test can take the node down with it.
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def launch_log(self) -> str:
        """launch's own log file (timestamped lines) below ROS_LOG_DIR."""
        files = sorted(self.ros_log_dir.glob("*/launch.log"))
        return files[-1].read_text(errors="replace") if files else ""

    def interrupt(self, timeout: float = 60.0) -> int:
        """Ctrl-C: SIGINT to launch, then wait for it to finish (no escalation of our own)."""
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"launch still running {timeout} s after SIGINT:\n{self.log()[-4000:]}")

    def close(self) -> None:
        if self.alive():
            # Only reached when a test failed before interrupting: leave nothing behind.
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._out.close()


class GraphProbe:
    """A node in its own context that looks at the graph and talks to the scorer."""

    def __init__(self) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("launch_graph_probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin(self, seconds: float = 0.1) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)

    def node_present(self, namespace: str) -> bool:
        self.spin()
        return (NODE, namespace) in self.node.get_node_names_and_namespaces()

    def topics_of(self, namespace: str, kind: str) -> dict[str, list[str]]:
        self.spin()
        get = (self.node.get_subscriber_names_and_types_by_node if kind == "sub"
               else self.node.get_publisher_names_and_types_by_node)
        try:
            return dict(get(NODE, namespace))
        except Exception:  # the node left the graph between the two calls
            return {}

    def parameters(self, full_name: str, names: list[str], launch: LaunchProcess) -> dict[str, Any]:
        client = AsyncParameterClient(self.node, full_name)
        wait_for(f"the parameter services of {full_name}", lambda: (self.spin(), client.services_are_ready())[1],
                 launch)
        future = client.get_parameters(names)
        wait_for("the get_parameters answer", lambda: (self.spin(0.05), future.done())[1], launch, timeout=30)
        return {n: parameter_value_to_python(v) for n, v in zip(names, future.result().values)}

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture
def probe() -> Iterator[GraphProbe]:
    the_probe = GraphProbe()
    yield the_probe
    the_probe.close()


@pytest.fixture
def start_launch(tmp_path: Path) -> Iterator[Callable[..., LaunchProcess]]:
    started: list[LaunchProcess] = []

    def start(**arguments: str) -> LaunchProcess:
        launch = LaunchProcess(arguments, tmp_path)
        started.append(launch)
        return launch

    yield start
    for launch in started:
        launch.close()


def assert_clean_exit(launch: LaunchProcess, returncode: int) -> None:
    """Ctrl-C ended the node inside launch's grace period, with nothing logged as an error."""
    out = launch.log()
    assert returncode == 0, f"launch exit code {returncode}:\n{out}"
    assert re.search(rf"\[{NODE}-1\]: process has finished cleanly", out), out
    assert "SIGTERM" not in out, f"launch escalated to SIGTERM:\n{out}"
    assert "SIGKILL" not in out, out
    assert "[ERROR]" not in out, out
    assert "Traceback" not in out, out
    print(f"shutdown after SIGINT, from launch's log: {shutdown_seconds(launch.launch_log()):.2f} s")


def shutdown_seconds(launch_log: str) -> float:
    """Seconds from launch's 'user interrupted' line to the node's 'finished cleanly' line."""
    stamps: dict[str, float] = {}
    for line in launch_log.splitlines():
        for key in ("user interrupted", "finished cleanly"):
            if key in line and key not in stamps:
                stamps[key] = float(line.split()[0])
    if len(stamps) != 2:
        return float("nan")
    return stamps["finished cleanly"] - stamps["user interrupted"]


def test_every_launch_argument_reaches_the_running_node(
        probe: GraphProbe, start_launch: Callable[..., LaunchProcess], tmp_path: Path) -> None:
    # A rig's own parameters file: values that differ from the package's file.
    params_file = tmp_path / "rig.yaml"
    rig_params = dict(CONFIG, max_frames=17, sample_fps=3.0, success_window=5, model="not/this-model")
    params_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": rig_params}}))
    missing_model = tmp_path / "no-such-model"  # a local path: fails fast, the node keeps serving
    cameras = ["left/image_raw", "right/image_raw/compressed"]
    launch = start_launch(
        model=str(missing_model), cameras=repr(cameras), instruction_topic="/task/instruction", rate="3.5",
        device="cpu", params_file=str(params_file), use_sim_time="true", namespace="robot1")

    wait_for("/robot1/scorer_node on the graph", lambda: probe.node_present("/robot1"), launch)
    params = probe.parameters("/robot1/scorer_node", [
        "model", "camera_topics", "rate_hz", "device", "use_sim_time", "max_frames", "sample_fps",
        "success_window"], launch)
    assert params == {
        "model": str(missing_model), "camera_topics": cameras, "rate_hz": 3.5, "device": "cpu",
        "use_sim_time": True, "max_frames": 17, "sample_fps": 3.0, "success_window": 5,
    }
    expected_subs = {
        "/task/instruction": ["std_msgs/msg/String"],
        "/robot1/left/image_raw": ["sensor_msgs/msg/Image"],
        "/robot1/right/image_raw/compressed": ["sensor_msgs/msg/CompressedImage"],
        "/clock": ["rosgraph_msgs/msg/Clock"],  # use_sim_time
    }
    subs = wait_for("the node's subscriptions", lambda: (
        s if expected_subs.items() <= (s := probe.topics_of("/robot1", "sub")).items() else None), launch)
    assert "/robot1/instruction" not in subs, "instruction_topic did not remap the instruction subscription"
    pubs = wait_for("the node's publishers", lambda: (
        p if "/robot1/task_progress" in (p := probe.topics_of("/robot1", "pub")) else None), launch)
    assert pubs["/robot1/task_progress"] == ["topreward_ros/msg/TaskProgress"]
    assert "/robot1/episode_success" in pubs

    assert_clean_exit(launch, launch.interrupt())


def test_empty_arguments_keep_the_package_params_file(
        probe: GraphProbe, start_launch: Callable[..., LaunchProcess]) -> None:
    launch = start_launch()
    wait_for("/scorer_node on the graph", lambda: probe.node_present("/"), launch)
    names = ["model", "camera_topics", "rate_hz", "device", "max_frames", "sample_fps"]
    params = probe.parameters("/scorer_node", [*names, "use_sim_time"], launch)
    assert params == {**{n: CONFIG[n] for n in names}, "use_sim_time": False}
    subs = wait_for("the node's subscriptions", lambda: (
        s if {"/instruction", "/camera/image_raw"} <= set(s := probe.topics_of("/", "sub")) else None), launch)
    assert "/clock" not in subs, "use_sim_time defaults to false"
    assert_clean_exit(launch, launch.interrupt())


def test_calibration_file_overrides_the_rig_file_and_use_sim_time_stays_the_files(
        probe: GraphProbe, start_launch: Callable[..., LaunchProcess], tmp_path: Path) -> None:
    """params_file:= and calibration_file:= (the second wins); use_sim_time not given keeps the
    file's true; cameras given as a YAML flow list without quotes."""
    rig = tmp_path / "rig.yaml"
    rig.write_text(yaml.safe_dump({"/**": {"ros__parameters": dict(
        CONFIG, model=str(tmp_path / "no-such-model"), max_frames=17, sample_fps=3.0, success_threshold=-5.0,
        use_sim_time=True)}}))
    calibrated = tmp_path / "calibrated.yaml"
    calibrated.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "success_threshold": -2.5, "max_frames": 19, "success_window": 4}}}))
    launch = start_launch(params_file=str(rig), calibration_file=str(calibrated), namespace="robot3",
                          cameras="[left/image_raw, right/image_raw/compressed]")
    wait_for("/robot3/scorer_node on the graph", lambda: probe.node_present("/robot3"), launch)
    params = probe.parameters("/robot3/scorer_node", [
        "success_threshold", "max_frames", "success_window", "sample_fps", "use_sim_time", "camera_topics"], launch)
    assert params == {"success_threshold": -2.5, "max_frames": 19, "success_window": 4, "sample_fps": 3.0,
                      "use_sim_time": True, "camera_topics": ["left/image_raw", "right/image_raw/compressed"]}
    subs = wait_for("the node's subscriptions", lambda: (
        s if {"/robot3/left/image_raw", "/robot3/right/image_raw/compressed"} <= set(
            s := probe.topics_of("/robot3", "sub")) else None), launch)
    assert "/clock" in subs, "use_sim_time from the params file was overridden by the launch default"
    assert_clean_exit(launch, launch.interrupt())


def rgb_frame(stamp: Any, index: int) -> Image:
    msg = Image()
    msg.header.stamp = stamp
    msg.height, msg.width, msg.encoding, msg.step = 48, 64, "rgb8", 64 * 3
    msg.data = bytes(((x + index * 7) % 256 for x in range(64 * 48 * 3)))
    return msg


@pytest.mark.parametrize("moment", ["while the model loads", "between ticks", "inside a long tick"])
def test_ctrl_c_ends_the_node_inside_the_grace_period(
        moment: str, probe: GraphProbe, start_launch: Callable[..., LaunchProcess], tiny_model_dir: Path,
        tmp_path: Path) -> None:
    """SIGINT to launch: the node exits by itself, launch finishes with 0 and logs no error.

    "inside a long tick": the largest views, a high sample rate and a slow
    timer make each tick score some fifty large frames in one forward (seconds
    with the small model, the way a large VLM is on a CPU); Ctrl-C is sent
    while the node's diagnostics report such a tick running, and the node must
    not wait for that forward to end.
    """
    params_file = tmp_path / "params.yaml"
    rate = "4.0"
    grace: dict[str, str] = {}
    if moment == "inside a long tick":
        params = dict(CONFIG, view_size=1024, sample_fps=10.0, diagnostics_period_s=0.2)
        rate = "0.2"
        # A tick of this size runs for several seconds after Ctrl-C; launch's
        # grace period is shortened below that, so a node that waited for the
        # forward to end (no os._exit) is always caught by SIGTERM, and one that
        # exits at once (well under a second) always fits.
        grace = {"sigterm_timeout": "2.5"}
    else:
        params = dict(CONFIG, view_size=64)
    params_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
    launch = start_launch(model=str(tiny_model_dir), rate=rate, device="cpu", namespace="robot2",
                          instruction_topic="/robot2/task/instruction", cameras="['cam/image_raw']",
                          params_file=str(params_file), **grace)
    if moment == "while the model loads":
        wait_for("the model load to start", lambda: "loading model" in launch.log(), launch)
        assert_clean_exit(launch, launch.interrupt())
        return
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    instruction_pub = probe.node.create_publisher(String, "/robot2/task/instruction", latched)
    camera_pub = probe.node.create_publisher(Image, "/robot2/cam/image_raw", 10)
    progress: list[TaskProgress] = []
    probe.node.create_subscription(TaskProgress, "/robot2/task_progress", progress.append, 10)
    wait_for("the node to subscribe to the remapped instruction topic and the camera", lambda: (
        probe.spin(), instruction_pub.get_subscription_count() > 0 and camera_pub.get_subscription_count() > 0)[1],
        launch)
    instruction = "stack the red cup on the blue cup"
    instruction_pub.publish(String(data=instruction))
    index = 0

    def stream_until(done: Callable[[], bool]) -> bool:
        nonlocal index
        camera_pub.publish(rgb_frame(probe.node.get_clock().now().to_msg(), index))
        index += 1
        probe.spin(0.1)
        return done()

    if moment == "between ticks":
        wait_for("three progress messages", lambda: stream_until(lambda: len(progress) >= 3), launch, timeout=120)
        assert {m.instruction for m in progress} == {instruction}
        for _ in range(10):  # frames keep coming while Ctrl-C arrives
            stream_until(lambda: True)
    else:
        # The node's scoring diagnostic says how long the running tick has run:
        # Ctrl-C is sent once it reports a tick that has run for a while.
        running: list[float] = []

        def on_diagnostics(msg: DiagnosticArray) -> None:
            for status in msg.status:
                if status.name.endswith(": scoring"):
                    values = {kv.key: kv.value for kv in status.values}
                    running.append(float(values.get("tick_running_s", "0")))

        probe.node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
        wait_for("a tick running for over 0.5 s", lambda: stream_until(
            lambda: bool(running) and running[-1] > 0.5), launch, timeout=180)
    assert_clean_exit(launch, launch.interrupt())
