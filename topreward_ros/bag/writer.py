"""Writing rosbag2 bags (sqlite3 or MCAP) with rosbags, atomically.

Used for each scored episode's ``progress.mcap`` (the node's messages at
their tick times, ``offline.progress_mcap``), for the demo episode and for
test and benchmark bags. A bag is built in
a temporary sibling directory and moved into place only once it is complete
and closed, so a crash never leaves a half-written bag under the final name
(and a later run never mistakes one for finished output).
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.writer import Writer as _RosbagsWriter
from rosbags.typesys.store import Typestore

from topreward_ros.bag.types import typestore as default_typestore
from topreward_ros.scoring.stamps import NS_PER_S

Storage = Literal["mcap", "sqlite3"]
STORAGES: tuple[Storage, ...] = ("mcap", "sqlite3")

# rosbag2 metadata version written (9 = Jazzy and later).
BAG_VERSION = 9


class BagWriteError(RuntimeError):
    """A bag could not be written (bad destination, bad message)."""


class BagWriter:
    """A rosbag2 bag written message by message; appears at ``path`` on close.

    Use as a context manager. Topics are declared on first write from the
    message's own type. On an exception inside the ``with`` block the partial
    bag is deleted and ``path`` is left untouched.
    """

    def __init__(
        self, path: Path | str, storage: Storage = "mcap", typestore: Typestore | None = None, overwrite: bool = False
    ) -> None:
        if storage not in STORAGES:
            raise BagWriteError(f"storage must be one of {STORAGES}, got {storage!r}")
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise BagWriteError(f"{self.path} already exists (pass overwrite=True to replace it)")
        self.storage = storage
        self.typestore = typestore or default_typestore()
        self._tmpdir: Path | None = None
        self._writer: _RosbagsWriter | None = None
        self._connections: dict[str, Any] = {}
        self.message_count = 0

    def __enter__(self) -> BagWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmpdir = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self._tmpdir / "bag", version=BAG_VERSION, storage_plugin=plugin)
        self._writer.open()
        return self

    def declare(self, topic: str, msgtype: str) -> None:
        """Add ``topic`` without a message (a recorded topic that stayed silent)."""
        if self._writer is None:
            raise BagWriteError("BagWriter is not open: use it as a context manager")
        if topic not in self._connections:
            self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=self.typestore)

    def write(self, topic: str, msg: Any, log_time_ns: int) -> None:
        """Append ``msg`` (a rosbags message object) on ``topic`` at ``log_time_ns``."""
        if self._writer is None:
            raise BagWriteError("BagWriter is not open: use it as a context manager")
        msgtype = msg.__msgtype__
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._writer.add_connection(topic, msgtype, typestore=self.typestore)
            self._connections[topic] = connection
        elif connection.msgtype != msgtype:
            raise BagWriteError(f"topic {topic} already carries {connection.msgtype}, cannot write {msgtype}")
        data = self.typestore.serialize_cdr(msg, msgtype)
        self._writer.write(connection, int(log_time_ns), data)
        self.message_count += 1

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        writer, tmpdir = self._writer, self._tmpdir
        self._writer = None
        assert writer is not None and tmpdir is not None
        try:
            if exc_type is None:
                writer.close()
                _replace_path(tmpdir / "bag", self.path)
            else:
                try:
                    writer.close()
                except Exception:  # noqa: BLE001 - already failing; the temp dir goes anyway
                    pass
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)


def _replace_path(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``, replacing an existing file or directory."""
    if dst.is_dir() and not dst.is_symlink():
        trash = dst.with_name(f".{dst.name}.old")
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(dst, trash)
        os.replace(src, dst)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(src, dst)


def write_single_mcap(
    path: Path | str, messages: list[tuple[str, Any, int]], typestore: Typestore | None = None
) -> Path:
    """Write ``(topic, msg, log_time_ns)`` messages into one ``.mcap`` file.

    A bare MCAP file (no rosbag2 directory around it) is what Foxglove opens
    and what rosbags' ``Reader`` and ``ros2 bag play`` accept directly. The
    file appears at ``path`` only when complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as tmp:
        bag_dir = Path(tmp) / "bag"
        with BagWriter(bag_dir, "mcap", typestore=typestore) as writer:
            for topic, msg, log_time_ns in messages:
                writer.write(topic, msg, log_time_ns)
        (mcap_file,) = bag_dir.glob("*.mcap")
        os.replace(mcap_file, path)
    return path


# -- message builders (rosbags objects) -------------------------------------------------


def stamp_fields(stamp_ns: int, store: Typestore | None = None) -> Any:
    """builtin_interfaces/Time for integer nanoseconds."""
    store = store or default_typestore()
    time_cls = store.types["builtin_interfaces/msg/Time"]
    sec, nanosec = divmod(int(stamp_ns), NS_PER_S)
    return time_cls(sec=sec, nanosec=nanosec)


def header(stamp_ns: int, frame_id: str = "", store: Typestore | None = None) -> Any:
    store = store or default_typestore()
    return store.types["std_msgs/msg/Header"](stamp=stamp_fields(stamp_ns, store), frame_id=frame_id)


def image_msg(
    rgb: np.ndarray, stamp_ns: int, frame_id: str = "camera", encoding: str = "rgb8", store: Typestore | None = None
) -> Any:
    """sensor_msgs/Image from an HxWx3 RGB array, in ``encoding`` (rgb8/bgr8/mono8)."""
    store = store or default_typestore()
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if encoding == "rgb8":
        pixels = rgb
    elif encoding == "bgr8":
        pixels = np.ascontiguousarray(rgb[..., ::-1])
    elif encoding == "mono8":
        pixels = np.ascontiguousarray(rgb.mean(axis=2).astype(np.uint8))
    else:
        # Any other encoding name is written with rgb8 pixel bytes: tests use
        # this to produce images a reader must refuse.
        pixels = rgb
    height, width = pixels.shape[:2]
    step = pixels.strides[0]
    return store.types["sensor_msgs/msg/Image"](
        header=header(stamp_ns, frame_id, store),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=step,
        data=np.frombuffer(pixels.tobytes(), dtype=np.uint8),
    )


def compressed_image_msg(
    rgb: np.ndarray,
    stamp_ns: int,
    frame_id: str = "camera",
    fmt: str = "jpeg",
    quality: int = 90,
    store: Typestore | None = None,
) -> Any:
    """sensor_msgs/CompressedImage (JPEG or PNG) from an HxWx3 RGB array."""
    from PIL import Image as PILImage

    store = store or default_typestore()
    buffer = io.BytesIO()
    pil_format = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG"}.get(fmt.lower())
    if pil_format is None:
        raise BagWriteError(f"compressed image format must be jpeg or png, got {fmt!r}")
    PILImage.fromarray(np.asarray(rgb, dtype=np.uint8)).save(
        buffer, format=pil_format, **({"quality": quality} if pil_format == "JPEG" else {})
    )
    return store.types["sensor_msgs/msg/CompressedImage"](
        header=header(stamp_ns, frame_id, store), format=fmt, data=np.frombuffer(buffer.getvalue(), dtype=np.uint8)
    )


def string_msg(text: str, store: Typestore | None = None) -> Any:
    store = store or default_typestore()
    return store.types["std_msgs/msg/String"](data=text)


def empty_msg(store: Typestore | None = None) -> Any:
    store = store or default_typestore()
    return store.types["std_msgs/msg/Empty"]()
