"""launch/scorer.launch.py run by real launch / launch_ros, checked on the ROS graph.

Each test starts ``test/support/launch_runner.py`` (what ``ros2 launch topreward_ros
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

import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

SKIP_REASON = (
    "launch / launch_ros / composition_interfaces are not importable: a ROS 2 install provides them, "
    "otherwise `make test` builds them from the ros-extras sources in shared/ beside the checkout "
    "(tools/install_ros_extras.sh)"
)
pytest.importorskip("launch", reason=SKIP_REASON)
pytest.importorskip("launch_ros.actions", reason=SKIP_REASON)

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from support.ros_process import GraphProbe, RosProcess, assert_clean_exit, rgb_frame, wait_for  # noqa: E402

from topreward_ros.msg import TaskProgress  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
RUNNER = ROOT / "test" / "support" / "launch_runner.py"
CONFIG = yaml.safe_load((ROOT / "config" / "scorer.yaml").read_text())["/**"]["ros__parameters"]


def missing_model_failure(model: Path | str) -> str:
    """The node's error line for a model it cannot load (it keeps serving and retries)."""
    return rf"\[ERROR\].*model '{re.escape(str(model))}' failed to load"


def start_runner(arguments: dict[str, str], workdir: Path) -> RosProcess:
    """``launch_runner.py topreward_ros scorer.launch.py name:=value ...`` as a child process."""
    return RosProcess(
        [
            sys.executable,
            str(RUNNER),
            "topreward_ros",
            "scorer.launch.py",
            *(f"{name}:={value}" for name, value in arguments.items()),
        ],
        workdir,
    )


@pytest.fixture
def probe() -> Iterator[GraphProbe]:
    the_probe = GraphProbe()
    yield the_probe
    the_probe.close()


@pytest.fixture
def start_launch(tmp_path: Path) -> Iterator[Callable[..., RosProcess]]:
    started: list[RosProcess] = []

    def start(**arguments: str) -> RosProcess:
        launch = start_runner(arguments, tmp_path)
        started.append(launch)
        return launch

    yield start
    for launch in started:
        launch.close()


def test_every_launch_argument_reaches_the_running_node(
    probe: GraphProbe, start_launch: Callable[..., RosProcess], tmp_path: Path
) -> None:
    # A rig's own parameters file: values that differ from the package's file.
    params_file = tmp_path / "rig.yaml"
    rig_params = dict(CONFIG, max_frames=17, sample_fps=3.0, success_window=5, model="not/this-model")
    params_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": rig_params}}))
    missing_model = tmp_path / "no-such-model"  # a local path: fails fast, the node keeps serving
    cameras = ["left/image_raw", "right/image_raw/compressed"]
    launch = start_launch(
        model=str(missing_model),
        cameras=repr(cameras),
        instruction_topic="/task/instruction",
        rate="3.5",
        device="cpu",
        params_file=str(params_file),
        use_sim_time="true",
        namespace="robot1",
    )

    params = probe.parameters(
        "/robot1/scorer_node",
        ["model", "camera_topics", "rate_hz", "device", "use_sim_time", "max_frames", "sample_fps", "success_window"],
        launch,
    )
    assert params == {
        "model": str(missing_model),
        "camera_topics": cameras,
        "rate_hz": 3.5,
        "device": "cpu",
        "use_sim_time": True,
        "max_frames": 17,
        "sample_fps": 3.0,
        "success_window": 5,
    }
    expected_subs = {
        "/task/instruction": ["std_msgs/msg/String"],
        "/robot1/left/image_raw": ["sensor_msgs/msg/Image"],
        "/robot1/right/image_raw/compressed": ["sensor_msgs/msg/CompressedImage"],
        "/clock": ["rosgraph_msgs/msg/Clock"],  # use_sim_time
    }
    subs = wait_for(
        "the node's subscriptions",
        lambda: s if expected_subs.items() <= (s := probe.topics_of("/robot1", "sub")).items() else None,
        launch,
    )
    assert "/robot1/instruction" not in subs, "instruction_topic did not remap the instruction subscription"
    pubs = wait_for(
        "the node's publishers",
        lambda: p if "/robot1/task_progress" in (p := probe.topics_of("/robot1", "pub")) else None,
        launch,
    )
    assert pubs["/robot1/task_progress"] == ["topreward_ros/msg/TaskProgress"]
    assert "/robot1/episode_success" in pubs

    # The missing model fails with an error that names it while the node keeps serving;
    # waited for, so the Ctrl-C below always comes after it.
    failure = missing_model_failure(missing_model)
    wait_for("the missing model's error", lambda: re.search(failure, launch.log()), launch)
    assert_clean_exit(launch, launch.interrupt(), expected_errors=[failure])


def test_empty_arguments_keep_the_package_params_file(
    probe: GraphProbe, start_launch: Callable[..., RosProcess]
) -> None:
    launch = start_launch()
    names = ["model", "camera_topics", "rate_hz", "device", "max_frames", "sample_fps"]
    params = probe.parameters("/scorer_node", [*names, "use_sim_time"], launch)
    assert params == {**{n: CONFIG[n] for n in names}, "use_sim_time": False}
    subs = wait_for(
        "the node's subscriptions",
        lambda: s if {"/instruction", "/camera/image_raw"} <= set(s := probe.topics_of("/", "sub")) else None,
        launch,
    )
    assert "/clock" not in subs, "use_sim_time defaults to false"
    # The package's model is not on this machine (offline, no weights): its load fails with an
    # error that names it; waited for, so the Ctrl-C always comes after it.
    failure = missing_model_failure(CONFIG["model"])
    wait_for("the model's load error", lambda: re.search(failure, launch.log()), launch)
    assert_clean_exit(launch, launch.interrupt(), expected_errors=[failure])


def test_calibration_file_overrides_the_rig_file_and_use_sim_time_stays_the_files(
    probe: GraphProbe, start_launch: Callable[..., RosProcess], tmp_path: Path
) -> None:
    """params_file:= and calibration_file:= (the second wins); use_sim_time not given keeps the
    file's true; cameras given as a YAML flow list without quotes."""
    rig = tmp_path / "rig.yaml"
    rig.write_text(
        yaml.safe_dump(
            {
                "/**": {
                    "ros__parameters": dict(
                        CONFIG,
                        model=str(tmp_path / "no-such-model"),
                        max_frames=17,
                        sample_fps=3.0,
                        success_threshold=-5.0,
                        use_sim_time=True,
                    )
                }
            }
        )
    )
    calibrated = tmp_path / "calibrated.yaml"
    calibrated.write_text(
        yaml.safe_dump({"/**": {"ros__parameters": {"success_threshold": -2.5, "max_frames": 19, "success_window": 4}}})
    )
    launch = start_launch(
        params_file=str(rig),
        calibration_file=str(calibrated),
        namespace="robot3",
        cameras="[left/image_raw, right/image_raw/compressed]",
    )
    params = probe.parameters(
        "/robot3/scorer_node",
        ["success_threshold", "max_frames", "success_window", "sample_fps", "use_sim_time", "camera_topics"],
        launch,
    )
    assert params == {
        "success_threshold": -2.5,
        "max_frames": 19,
        "success_window": 4,
        "sample_fps": 3.0,
        "use_sim_time": True,
        "camera_topics": ["left/image_raw", "right/image_raw/compressed"],
    }
    subs = wait_for(
        "the node's subscriptions",
        lambda: (
            s
            if {"/robot3/left/image_raw", "/robot3/right/image_raw/compressed"}
            <= set(s := probe.topics_of("/robot3", "sub"))
            else None
        ),
        launch,
    )
    assert "/clock" in subs, "use_sim_time from the params file was overridden by the launch default"
    failure = missing_model_failure(tmp_path / "no-such-model")
    wait_for("the missing model's error", lambda: re.search(failure, launch.log()), launch)
    assert_clean_exit(launch, launch.interrupt(), expected_errors=[failure])


@pytest.mark.parametrize("moment", ["while the model loads", "between ticks", "inside a long tick"])
def test_ctrl_c_ends_the_node_inside_the_grace_period(
    moment: str, probe: GraphProbe, start_launch: Callable[..., RosProcess], tiny_model_dir: Path, tmp_path: Path
) -> None:
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
    launch = start_launch(
        model=str(tiny_model_dir),
        rate=rate,
        device="cpu",
        namespace="robot2",
        instruction_topic="/robot2/task/instruction",
        cameras="['cam/image_raw']",
        params_file=str(params_file),
        **grace,
    )
    if moment == "while the model loads":
        wait_for("the model load to start", lambda: "loading model" in launch.log(), launch)
        assert_clean_exit(launch, launch.interrupt())
        return
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    instruction_pub = probe.node.create_publisher(String, "/robot2/task/instruction", latched)
    camera_pub = probe.node.create_publisher(Image, "/robot2/cam/image_raw", 10)
    progress: list[TaskProgress] = []
    probe.node.create_subscription(TaskProgress, "/robot2/task_progress", progress.append, 10)
    wait_for(
        "the node to subscribe to the remapped instruction topic and the camera",
        lambda: (
            probe.spin(),
            instruction_pub.get_subscription_count() > 0 and camera_pub.get_subscription_count() > 0,
        )[1],
        launch,
    )
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
        wait_for(
            "a tick running for over 0.5 s",
            lambda: stream_until(lambda: bool(running) and running[-1] > 0.5),
            launch,
            timeout=180,
        )
    assert_clean_exit(launch, launch.interrupt())
