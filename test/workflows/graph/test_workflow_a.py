"""README's Workflow A, step by step, with a rig's own names: one rig file from recording to relabelling.

The rig publishes its instruction on ``/task/instruction`` (not the default
``instruction``) and has two cameras, listed wrist first, front second (not
alphabetical order). The commands are README's, with nothing added:

1. record: bags with those topics (written with rosbags, the rig's layout);
2. ``topreward eval BAG -l labels.csv -o eval_out --params-file rig.yaml``;
3. ``ros2 launch topreward_ros scorer.launch.py params_file:=rig.yaml
   calibration_file:=eval_out/calibrated.yaml`` (launch's own LaunchService);
4. ``topreward bag new_bag -o out --params-file eval_out/calibrated.yaml``.

Each step must score with the rig's camera order and the calibrated
threshold, and read the instruction from the rig's topic; the test checks
each against the others. The model is the tiny random one (a CPU rig file).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

SKIP_REASON = (
    "launch / launch_ros are not importable: a ROS 2 install provides them, otherwise `make test` builds "
    "them from the ros-extras sources in shared/ beside the checkout (tools/install_ros_extras.sh)"
)
pytest.importorskip("rclpy")
pytest.importorskip("launch", reason=SKIP_REASON)
pytest.importorskip("launch_ros.actions", reason=SKIP_REASON)

from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from support.ros_process import GraphProbe, RosProcess, assert_clean_exit, wait_for  # noqa: E402

from topreward_ros.commands.cli import main as topreward  # noqa: E402
from topreward_ros.demo.scene import DEMO_SCENES  # noqa: E402
from topreward_ros.demo.synthetic_bag import CameraSpec, write_episodes_bag  # noqa: E402
from topreward_ros.msg import TaskProgress  # noqa: E402

pytestmark = [pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[3]
RUNNER = ROOT / "test" / "support" / "launch_runner.py"
INSTRUCTION_TOPIC = "/task/instruction"
#: The rig file's order (relative names, as a rig file holds them): wrist first.
CAMERAS = ["wrist_camera/color/image_raw/compressed", "front_camera/color/image_raw"]
BAG_CAMERAS = [f"/{c}" for c in CAMERAS]
assert BAG_CAMERAS != sorted(BAG_CAMERAS)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
        code = topreward(argv)
    return code, out.getvalue(), err.getvalue()


def record(path: Path) -> None:
    """Step 1: two episodes (a success and a failure) on the rig's topics, wrist camera compressed."""
    write_episodes_bag(
        path,
        "mcap",
        DEMO_SCENES[:2],
        cameras=(
            CameraSpec(BAG_CAMERAS[0], "compressed", rate_hz=8.0),
            CameraSpec(BAG_CAMERAS[1], "raw", rate_hz=8.0, offset_ns=7_000_000),
        ),
        duration_s=3.0,
        instruction_topic=INSTRUCTION_TOPIC,
    )


@pytest.fixture(scope="module")
def workflow(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("workflow_a")
    rig = root / "rig.yaml"
    rig.write_text(
        yaml.safe_dump(
            {
                "/**": {
                    "ros__parameters": {
                        "model": str(tiny_model_dir),
                        "device": "cpu",
                        "dtype": "float32",
                        "local_files_only": True,
                        "camera_topics": CAMERAS,
                        "instruction_topic": INSTRUCTION_TOPIC,
                        "rate_hz": 2.0,
                        "success_threshold": -8.0,
                        "success_window": 2,
                        "success_consecutive": 1,
                        "view_size": 64,
                        "torch_threads": 1,
                    }
                }
            },
            sort_keys=False,
        )
    )
    record(root / "rig_2026_11_30")
    record(root / "new_bag")
    (root / "labels.csv").write_text("episode,success\nrig_2026_11_30/0,1\nrig_2026_11_30/1,0\n")

    # Step 2, as README writes it.
    code, out, err = run_cli(
        [
            "eval",
            str(root / "rig_2026_11_30"),
            "-l",
            str(root / "labels.csv"),
            "-o",
            str(root / "eval_out"),
            "--params-file",
            str(rig),
            "-q",
        ]
    )
    assert code == 0, out + err
    calibrated = root / "eval_out" / "calibrated.yaml"
    params = yaml.safe_load(calibrated.read_text())["/**"]["ros__parameters"]

    # Step 4 (offline, needs no graph), as README writes it.
    code, out, err = run_cli(
        ["bag", str(root / "new_bag"), "-o", str(root / "out"), "--params-file", str(calibrated), "-q"]
    )
    assert code == 0, out + err
    return {"root": root, "rig": rig, "calibrated": calibrated, "params": params, "bag_err": err}


def test_eval_writes_the_rigs_topics_in_order_and_a_threshold(workflow: dict[str, Any]) -> None:
    params = workflow["params"]
    assert params["camera_topics"] == BAG_CAMERAS
    assert params["instruction_topic"] == INSTRUCTION_TOPIC
    assert "reset_topic" not in params
    assert params["success_threshold"] != -8.0  # fitted, not the rig's placeholder
    assert (params["view_size"], params["rate_hz"], params["success_window"]) == (64, 2.0, 2)
    # eval scored with the rig's cameras, in its order, cut at its instruction topic.
    manifest = json.loads((workflow["root"] / "eval_out" / "bags" / "rig_2026_11_30" / "manifest.json").read_text())
    assert manifest["settings"]["camera_topics"] == BAG_CAMERAS
    assert manifest["settings"]["instruction_topic"] == INSTRUCTION_TOPIC


def test_bag_relabels_with_the_calibrated_cameras_threshold_and_topic(workflow: dict[str, Any]) -> None:
    params = workflow["params"]
    out = workflow["root"] / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["camera_topics"] == BAG_CAMERAS
    assert manifest["settings"]["instruction_topic"] == INSTRUCTION_TOPIC
    assert manifest["settings"]["success_threshold"] == params["success_threshold"]
    curves = sorted(out.glob("episode_*/curve.json"))
    assert len(curves) == 2
    for path in curves:
        curve = json.loads(path.read_text())
        assert curve["success_threshold"] == params["success_threshold"]
    instructions = [json.loads(p.read_text())["instruction"] for p in curves]
    assert instructions == [s.instruction for s in DEMO_SCENES[:2]]
    assert "overrides" not in workflow["bag_err"]  # nothing on the command line to override the file


@pytest.fixture
def probe() -> Iterator[GraphProbe]:
    the_probe = GraphProbe("workflow_a_probe")
    yield the_probe
    the_probe.close()


def jpeg_frame(stamp: Any, index: int) -> CompressedImage:
    from PIL import Image as PILImage

    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[10:20, (index * 3) % 40 : (index * 3) % 40 + 12] = (220, 60, 40)
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="JPEG")
    msg = CompressedImage(format="jpeg", data=buf.getvalue())
    msg.header.stamp = stamp
    return msg


def raw_frame(stamp: Any, index: int) -> Image:
    msg = Image(
        height=48, width=64, encoding="rgb8", step=64 * 3, data=bytes((x + index * 5) % 256 for x in range(64 * 48 * 3))
    )
    msg.header.stamp = stamp
    return msg


def test_the_launched_node_scores_with_the_calibrated_cameras_threshold_and_topic(
    workflow: dict[str, Any], probe: GraphProbe, tmp_path: Path
) -> None:
    params = workflow["params"]
    launch = RosProcess(
        [
            sys.executable,
            str(RUNNER),
            "topreward_ros",
            "scorer.launch.py",
            f"params_file:={workflow['rig']}",
            f"calibration_file:={workflow['calibrated']}",
        ],
        tmp_path,
    )
    try:
        got = probe.parameters(
            "/scorer_node",
            ["camera_topics", "instruction_topic", "success_threshold", "view_size", "rate_hz", "model"],
            launch,
        )
        assert got == {
            "camera_topics": BAG_CAMERAS,
            "instruction_topic": INSTRUCTION_TOPIC,
            "success_threshold": params["success_threshold"],
            "view_size": 64,
            "rate_hz": 2.0,
            "model": params["model"],
        }
        node = probe.node
        instruction = node.create_publisher(String, INSTRUCTION_TOPIC, 10)
        wrist = node.create_publisher(CompressedImage, BAG_CAMERAS[0], 10)
        front = node.create_publisher(Image, BAG_CAMERAS[1], 10)
        progress: list[TaskProgress] = []
        node.create_subscription(
            TaskProgress,
            "/task_progress",
            progress.append,
            QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE),
        )
        wait_for(
            "the node to subscribe to the rig's instruction topic and both cameras",
            lambda: (
                probe.spin(),
                instruction.get_subscription_count() > 0
                and wrist.get_subscription_count() > 0
                and front.get_subscription_count() > 0,
            )[1],
            launch,
        )
        instruction.publish(String(data=DEMO_SCENES[0].instruction))
        frames = iter(range(1_000_000))

        def scored() -> list[TaskProgress]:
            index = next(frames)
            stamp = node.get_clock().now().to_msg()
            wrist.publish(jpeg_frame(stamp, index))
            front.publish(raw_frame(stamp, index))
            probe.spin(0.1)
            return [m for m in progress if m.instruction == DEMO_SCENES[0].instruction]

        mine = wait_for("TaskProgress of the instruction sent on the rig's topic", scored, launch, timeout=180)
        assert mine[0].success_threshold == params["success_threshold"]
        assert mine[0].model_id == params["model"]
        assert_clean_exit(launch, launch.interrupt())
    finally:
        launch.close()
