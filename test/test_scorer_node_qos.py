"""Camera QoS: sensor-data by default, overridable per topic (REP 2003).

An in-process node is enough here (no model is needed to subscribe): the
subscriptions' QoS is read back from the ROS graph.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.context import Context  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import ReliabilityPolicy  # noqa: E402

from topreward_ros.scorer_node import ScorerNode  # noqa: E402

CAMERAS = ["cam0/image_raw", "cam1/image_raw/compressed"]


@pytest.fixture
def context() -> Iterator[Context]:
    ctx = Context()
    rclpy.init(
        context=ctx,
        args=["--ros-args", "-p", "qos_overrides./cam0/image_raw.subscription.reliability:=reliable"],
    )
    yield ctx
    rclpy.shutdown(context=ctx)


def test_override_applies_to_its_topic_only(context: Context, tmp_path) -> None:
    node = ScorerNode(
        context=context,
        parameter_overrides=[
            Parameter("model", value=str(tmp_path / "no-model")),
            Parameter("model_retry_s", value=3600.0),
            Parameter("camera_topics", value=CAMERAS),
        ],
    )
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
