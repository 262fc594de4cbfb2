"""Camera QoS: sensor-data by default, overridable per topic (REP 2003).

An in-process node is enough here (no model is needed to subscribe): the
subscriptions' QoS is read back from the ROS graph.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")


from rclpy.context import Context  # noqa: E402
from rclpy.qos import ReliabilityPolicy  # noqa: E402
from support.modelless_node import modelless_node  # noqa: E402

CAMERAS = ["cam0/image_raw", "cam1/image_raw/compressed"]


@pytest.fixture
def context() -> Iterator[Context]:
    ctx = Context()
    rclpy.init(
        context=ctx, args=["--ros-args", "-p", "qos_overrides./cam0/image_raw.subscription.reliability:=reliable"]
    )
    yield ctx
    rclpy.shutdown(context=ctx)


def test_override_applies_to_its_topic_only(context: Context, tmp_path) -> None:
    node = modelless_node(context, tmp_path, camera_topics=CAMERAS)
    try:
        got = {
            topic: [i.qos_profile.reliability for i in node.get_subscriptions_info_by_topic("/" + topic)]
            for topic in CAMERAS
        }
        assert got["cam0/image_raw"] == [ReliabilityPolicy.RELIABLE]
        # The other camera keeps the sensor-data default.
        assert got["cam1/image_raw/compressed"] == [ReliabilityPolicy.BEST_EFFORT]
        types = {name: t for name, t in node.get_topic_names_and_types()}
        assert types["/cam0/image_raw"] == ["sensor_msgs/msg/Image"]
        assert types["/cam1/image_raw/compressed"] == ["sensor_msgs/msg/CompressedImage"]
    finally:
        node.destroy_node()


RIG_EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "rig_example.yaml"


@pytest.fixture
def rig_example_context() -> Iterator[Context]:
    ctx = Context()
    rclpy.init(context=ctx, args=["--ros-args", "--params-file", str(RIG_EXAMPLE)])
    yield ctx
    rclpy.shutdown(context=ctx)


def test_rig_example_params_file_sets_per_topic_qos(rig_example_context: Context, tmp_path) -> None:
    """config/rig_example.yaml as shipped: its cameras, and the QoS override of the raw one."""
    node = modelless_node(rig_example_context, tmp_path)
    try:
        cameras = ["/camera/image_raw", "/wrist_camera/image_raw/compressed"]
        assert node.get_parameter("camera_topics").value == cameras
        # Reliability as the graph sees it (what a publisher matches against) ...
        graph = {
            topic: [i.qos_profile.reliability for i in node.get_subscriptions_info_by_topic(topic)]
            for topic in ("/camera/image_raw", "/wrist_camera/image_raw/compressed")
        }
        assert graph == {
            "/camera/image_raw": [ReliabilityPolicy.RELIABLE],
            "/wrist_camera/image_raw/compressed": [ReliabilityPolicy.BEST_EFFORT],
        }
        # ... and the queue depth, which discovery does not carry, from the subscriptions themselves.
        local = {sub.topic_name: (sub.qos_profile.reliability, sub.qos_profile.depth) for sub in node.subscriptions}
        assert local["/camera/image_raw"] == (ReliabilityPolicy.RELIABLE, 30)
        # The compressed camera keeps the sensor-data default.
        assert local["/wrist_camera/image_raw/compressed"] == (ReliabilityPolicy.BEST_EFFORT, 5)
    finally:
        node.destroy_node()
