"""The camera-type registry: the one place the node, the bag source and the converter learn a type."""

from __future__ import annotations

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import CompressedImage, Image

from topreward_ros.episode.cameras import (
    CAMERA_TYPE_NAMES,
    CAMERA_TYPES,
    COMPRESSED,
    RAW,
    camera_type_for_topic,
    camera_type_named,
    to_rgb,
)
from topreward_ros.episode.images import ImageError


def test_the_node_picks_the_type_by_the_topic_name_like_image_transport() -> None:
    assert camera_type_for_topic("wrist/image_raw/compressed") is COMPRESSED
    assert camera_type_for_topic("/cam/compressed/") is COMPRESSED
    assert camera_type_for_topic("wrist/image_raw") is RAW
    assert camera_type_for_topic("wrist/compressed_raw") is RAW
    assert camera_type_for_topic("compressed") is COMPRESSED


def test_names_and_classes_come_from_the_registry() -> None:
    assert CAMERA_TYPE_NAMES == ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
    assert [t.short_name for t in CAMERA_TYPES] == ["sensor_msgs/Image", "sensor_msgs/CompressedImage"]
    assert RAW.ros_class() is Image and COMPRESSED.ros_class() is CompressedImage
    assert camera_type_named("sensor_msgs/msg/CompressedImage") is COMPRESSED
    assert camera_type_named("std_msgs/msg/String") is None
    assert sum(1 for t in CAMERA_TYPES if not t.topic_suffix) == 1  # one default


@pytest.mark.parametrize("binding", ["rclpy", "rosbags"])
def test_a_message_of_either_binding_is_converted_by_its_type(binding: str) -> None:
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    if binding == "rclpy":
        msg = Image(height=2, width=3, encoding="bgr8", step=9, data=rgb[:, :, ::-1].tobytes())
    else:
        store = get_typestore(Stores.ROS2_JAZZY)
        header = store.types["std_msgs/msg/Header"](
            stamp=store.types["builtin_interfaces/msg/Time"](sec=0, nanosec=0), frame_id=""
        )
        msg = store.types["sensor_msgs/msg/Image"](
            header=header,
            height=2,
            width=3,
            encoding="bgr8",
            is_bigendian=0,
            step=9,
            data=np.frombuffer(rgb[:, :, ::-1].tobytes(), np.uint8),
        )
    np.testing.assert_array_equal(to_rgb(msg), rgb)


def test_a_message_of_no_registered_type_is_refused_with_the_names() -> None:
    with pytest.raises(
        ImageError,
        match=r"String is not a camera message \(sensor_msgs/Image or "
        r"sensor_msgs/CompressedImage\)",
    ):
        from std_msgs.msg import String

        to_rgb(String(data="x"))
