"""The camera message types the package reads, named once.

The node subscribes to a camera topic with a message class, the bag source
accepts a topic by its recorded type name, the diagnostics name the type of
each camera, and a kept frame is converted to RGB by the converter of its
type. All four read this registry, so a new camera message type is one
``CameraType`` line here (and its converter in ``images``).

No ROS import: the node resolves the rclpy class from ``ros_module`` and
``class_name`` when it subscribes; the offline tools only use the type name
and the converter.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from topreward_ros.episode.images import ImageError, RGBImage, compressed_to_rgb, image_to_rgb


@dataclass(frozen=True)
class CameraType:
    """One camera message type: how it is named, subscribed to, recognised and converted.

    type_name: the ROS 2 type name a bag records (``sensor_msgs/msg/Image``).
    topic_suffix: the last topic name component that selects this type on the
        node (image_transport naming, ``.../compressed``); "" for the type
        used when no other suffix matches.
    field: a field only this type's messages carry; converting a message
        (of either binding, rclpy or rosbags) picks its type by it.
    convert: the message to RGB uint8 (raises ``ImageError``).
    """

    type_name: str
    topic_suffix: str
    field: str
    convert: Callable[[Any], RGBImage]

    @property
    def short_name(self) -> str:
        """``sensor_msgs/Image``: the name the diagnostics and logs use."""
        package, _, name = self.type_name.partition("/msg/")
        return f"{package}/{name}"

    @property
    def ros_module(self) -> str:
        return self.type_name.partition("/msg/")[0] + ".msg"

    @property
    def class_name(self) -> str:
        return self.type_name.rpartition("/")[2]

    def ros_class(self) -> type:
        """The rclpy message class (imports the ROS message package)."""
        return getattr(importlib.import_module(self.ros_module), self.class_name)


RAW = CameraType("sensor_msgs/msg/Image", "", "encoding", image_to_rgb)
COMPRESSED = CameraType("sensor_msgs/msg/CompressedImage", "compressed", "format", compressed_to_rgb)

#: Every camera type the package reads; exactly one has no topic suffix (the default).
CAMERA_TYPES: tuple[CameraType, ...] = (RAW, COMPRESSED)
CAMERA_TYPE_NAMES: tuple[str, ...] = tuple(t.type_name for t in CAMERA_TYPES)
DEFAULT_CAMERA_TYPE = next(t for t in CAMERA_TYPES if not t.topic_suffix)


def camera_type_named(type_name: str) -> CameraType | None:
    """The camera type a bag topic of ``type_name`` holds, or None for other messages."""
    return next((t for t in CAMERA_TYPES if t.type_name == type_name), None)


def camera_type_for_topic(topic: str) -> CameraType:
    """The type the node subscribes ``topic`` with: by its last name component, else raw Image."""
    last = topic.rstrip("/").rsplit("/", 1)[-1]
    return next((t for t in CAMERA_TYPES if t.topic_suffix and t.topic_suffix == last), DEFAULT_CAMERA_TYPE)


def to_rgb(msg: Any) -> RGBImage:
    """A camera message of any registered type (either binding) to RGB uint8."""
    for camera_type in CAMERA_TYPES:
        if hasattr(msg, camera_type.field):
            return camera_type.convert(msg)
    names = " or ".join(t.short_name for t in CAMERA_TYPES)
    raise ImageError(f"{type(msg).__name__} is not a camera message ({names})")
