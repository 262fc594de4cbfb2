"""Reading rosbag2 bags (MCAP or sqlite3, directory or single file) without ROS.

Messages come out in log-time order as raw CDR bytes; deserialising is a
separate step, so tools that skip most frames (the 2 fps schedule keeps a
handful of a 30 Hz stream) never pay for decoding what they drop.

Damaged recordings are the normal case for robot data (a recorder killed with
the robot), so the reader goes as far as the data allows and says exactly
where it stopped:

* a bag directory without ``metadata.yaml`` (recorder killed before writing
  it) is read from its storage files directly;
* an MCAP file without its footer and index (truncated) is read record by
  record up to the damage;
* an error in the middle of reading is raised as ``BagReadError`` carrying
  how many messages were good and the last good log time, after those
  messages were delivered.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from rosbags.rosbag2 import Reader
from rosbags.rosbag2.errors import ReaderError
from rosbags.typesys import get_types_from_msg
from rosbags.typesys.store import Typestore

from topreward_ros.bag.base import (  # noqa: F401 (re-exported: the errors are part of the reader's API)
    STORAGE_SUFFIXES,
    BagError,
    BagOpenError,
    BagReadError,
    MessageDecodeError,
    storage_files,
)
from topreward_ros.bag.types import typestore as default_typestore


@dataclass(frozen=True)
class BagMessage:
    """One message as stored: topic, type, log (receive) time and CDR bytes."""

    topic: str
    msgtype: str
    log_time_ns: int
    data: bytes


@dataclass(frozen=True)
class TopicInfo:
    topic: str
    msgtype: str
    message_count: int | None  # None when the bag has no index to tell
    msgdef: str = ""  # .msg text stored with the topic, when the bag has one


# -- sources: one per storage file / directory -------------------------------------------


class _RosbagsSource:
    """A bag rosbags can open with its index (healthy directory or file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reader = Reader(path)
        self._reader.open()
        self.recovered = False
        self.topics: dict[str, TopicInfo] = {}
        for conn in self._reader.connections:
            msgdef = getattr(conn.msgdef, "data", "") if conn.msgdef is not None else ""
            previous = self.topics.get(conn.topic)
            count = conn.msgcount + (previous.message_count or 0 if previous else 0)
            self.topics[conn.topic] = TopicInfo(conn.topic, conn.msgtype, count, msgdef or "")
        count = self._reader.message_count
        self.start_ns = self._reader.start_time if count else None
        self.end_ns = self._reader.end_time - 1 if count else None

    def messages(
        self, topics: set[str], start_ns: int | None = None, stop_ns: int | None = None
    ) -> Iterator[BagMessage]:
        conns = [c for c in self._reader.connections if c.topic in topics]
        if not conns:
            return
        # The storage index finds the start: a range costs what it holds.
        for conn, log_time, data in self._reader.messages(conns, start=start_ns, stop=stop_ns):
            yield BagMessage(conn.topic, conn.msgtype, int(log_time), bytes(data))

    def close(self) -> None:
        self._reader.close()


class _McapStreamSource:
    """An MCAP file without a usable footer/index, read record by record.

    A first pass finds the channels and how far the file is readable; the
    message pass then stops at the same place and reports it.
    """

    def __init__(self, path: Path, open_error: str) -> None:
        from mcap.records import Channel, Message, Schema

        self.path = path
        self.recovered = True
        self.topics: dict[str, TopicInfo] = {}
        self._channels: dict[int, tuple[str, str]] = {}
        schemas: dict[int, tuple[str, str]] = {}
        counts: dict[str, int] = {}
        self.start_ns: int | None = None
        self.end_ns: int | None = None
        self.damage: str | None = None
        self.good_messages = 0
        try:
            for record in self._records():
                if isinstance(record, Schema):
                    schemas[record.id] = (record.name, record.data.decode("utf-8", "replace"))
                elif isinstance(record, Channel):
                    name, msgdef = schemas.get(record.schema_id, ("", ""))
                    self._channels[record.id] = (record.topic, name)
                    if record.topic not in self.topics:
                        self.topics[record.topic] = TopicInfo(record.topic, name, None, msgdef)
                elif isinstance(record, Message):
                    topic = self._channels.get(record.channel_id, ("?", ""))[0]
                    counts[topic] = counts.get(topic, 0) + 1
                    self.good_messages += 1
                    self.start_ns = record.log_time if self.start_ns is None else min(self.start_ns, record.log_time)
                    self.end_ns = record.log_time if self.end_ns is None else max(self.end_ns, record.log_time)
        except Exception as exc:  # noqa: BLE001 - any parse failure marks the damage point
            self.damage = _describe_stream_error(exc)
        if not self.topics and self.good_messages == 0:
            raise BagOpenError(
                f"{path}: not a readable MCAP file ({open_error}; record scan: {self.damage or 'no channels'})"
            )
        self.damage = self.damage or f"file has no MCAP footer ({open_error})"
        self.topics = {t: TopicInfo(t, info.msgtype, counts.get(t, 0), info.msgdef) for t, info in self.topics.items()}

    def _records(self) -> Iterator[Any]:
        from mcap.stream_reader import StreamReader

        with open(self.path, "rb") as stream:
            yield from StreamReader(stream, validate_crcs=True).records

    def messages(
        self, topics: set[str], start_ns: int | None = None, stop_ns: int | None = None
    ) -> Iterator[BagMessage]:
        from mcap.records import Message

        delivered = 0
        for record in self._records():  # no index: a range is found by reading up to it
            if delivered >= self.good_messages:
                break
            if isinstance(record, Message):
                delivered += 1
                topic, msgtype = self._channels.get(record.channel_id, ("", ""))
                if (start_ns is not None and record.log_time < start_ns) or (
                    stop_ns is not None and record.log_time >= stop_ns
                ):
                    continue
                if topic in topics:
                    yield BagMessage(topic, msgtype, int(record.log_time), bytes(record.data))

    def close(self) -> None:
        pass


def _describe_stream_error(exc: Exception) -> str:
    from mcap.exceptions import EndOfFile

    if isinstance(exc, (EndOfFile, struct.error, EOFError)):
        return "file ends in the middle of a record (truncated)"
    return f"damaged record ({type(exc).__name__}: {exc})"


def _open_storage_file(path: Path) -> _RosbagsSource | _McapStreamSource:
    if path.stat().st_size == 0:
        raise BagOpenError(f"{path}: file is empty (0 bytes)")
    try:
        return _RosbagsSource(path)
    except ReaderError as exc:
        if path.suffix == ".mcap":
            return _McapStreamSource(path, str(exc))
        kind = STORAGE_SUFFIXES[path.suffix]
        raise BagOpenError(f"{path}: cannot read {kind} bag: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - rosbags raises assorted errors on garbage
        if path.suffix == ".mcap":
            return _McapStreamSource(path, f"{type(exc).__name__}: {exc}")
        raise BagOpenError(f"{path}: cannot read bag: {type(exc).__name__}: {exc}") from exc


# -- public reader -----------------------------------------------------------------------


class BagReader:
    """One rosbag2 bag: its topics and its messages in log-time order.

    ``path`` may be a rosbag2 directory (with or without ``metadata.yaml``) or
    a single ``.mcap`` / ``.db3`` file. Raises ``BagOpenError`` with a clear
    message when nothing can be read.
    """

    def __init__(self, path: Path | str, typestore: Typestore | None = None) -> None:
        self.path = Path(path)
        self.typestore = typestore or default_typestore()
        self._stack = ExitStack()
        self.notes: list[str] = []
        if not self.path.exists():
            raise BagOpenError(f"{self.path}: no such file or directory")
        if self.path.is_file() and self.path.suffix not in STORAGE_SUFFIXES:
            raise BagOpenError(f"{self.path}: not a rosbag2 storage file (expected .mcap or .db3, or a bag directory)")
        self._sources: list[_RosbagsSource | _McapStreamSource] = []
        try:
            if self.path.is_dir() and (self.path / "metadata.yaml").is_file():
                try:
                    self._sources.append(_RosbagsSource(self.path))
                except (ReaderError, OSError, ValueError, KeyError) as exc:
                    self.notes.append(f"metadata.yaml unusable ({exc}); reading storage files")
                    self._open_files()
            else:
                if self.path.is_dir():
                    self.notes.append("no metadata.yaml; reading the storage files directly")
                self._open_files()
        except BaseException:
            self.close()
            raise
        for source in self._sources:
            self._stack.callback(source.close)
            if isinstance(source, _McapStreamSource):
                self.notes.append(
                    f"{source.path.name}: {source.damage}; read without index, {source.good_messages} messages readable"
                )
        self.storage = STORAGE_SUFFIXES.get(next((f.suffix for f in storage_files(self.path)), ""), "unknown")

    def _open_files(self) -> None:
        files = storage_files(self.path)
        if not files:
            raise BagOpenError(f"{self.path}: directory holds no rosbag2 storage file (.mcap or .db3)")
        for file in files:
            self._sources.append(_open_storage_file(file))

    # -- metadata -------------------------------------------------------------------
    @property
    def topics(self) -> dict[str, TopicInfo]:
        merged: dict[str, TopicInfo] = {}
        for source in self._sources:
            for topic, info in source.topics.items():
                if topic in merged:
                    old = merged[topic]
                    count = (
                        None
                        if old.message_count is None or info.message_count is None
                        else old.message_count + info.message_count
                    )
                    merged[topic] = TopicInfo(topic, old.msgtype, count, old.msgdef)
                else:
                    merged[topic] = info
        return merged

    @property
    def recovered(self) -> bool:
        """True when some storage file had to be read without its index."""
        return any(s.recovered for s in self._sources)

    @property
    def damage(self) -> str | None:
        """Why the readable part ends before the file does, if it does."""
        notes = [f"{s.path.name}: {s.damage}" for s in self._sources if isinstance(s, _McapStreamSource) and s.damage]
        return "; ".join(notes) or None

    @property
    def start_ns(self) -> int | None:
        starts = [s.start_ns for s in self._sources if s.start_ns is not None]
        return min(starts) if starts else None

    @property
    def end_ns(self) -> int | None:
        """Log time of the last readable message."""
        ends = [s.end_ns for s in self._sources if s.end_ns is not None]
        return max(ends) if ends else None

    @property
    def message_count(self) -> int | None:
        counts = [info.message_count for info in self.topics.values()]
        return None if any(c is None for c in counts) else sum(c for c in counts if c)

    # -- messages -------------------------------------------------------------------
    def messages(
        self, topics: Iterable[str] | None = None, start_ns: int | None = None, stop_ns: int | None = None
    ) -> Iterator[BagMessage]:
        """Messages of ``topics`` (all when None), in log-time order.

        ``start_ns`` / ``stop_ns`` limit them to log times in ``[start_ns,
        stop_ns)``. Raises ``BagReadError`` when the data ends or breaks
        before the bag does, after yielding every message read before that
        point.
        """
        wanted = set(self.topics) if topics is None else set(topics)
        count, last = 0, None
        for source in self._sources:
            try:
                for message in source.messages(wanted, start_ns, stop_ns):
                    count += 1
                    last = message.log_time_ns
                    yield message
            except (BagError, GeneratorExit):
                raise
            except Exception as exc:  # noqa: BLE001 - storage errors vary by backend
                raise BagReadError(
                    f"{source.path}: reading stopped after {count} messages: {type(exc).__name__}: {exc}", count, last
                ) from exc
            if isinstance(source, _McapStreamSource) and source.damage:
                raise BagReadError(f"{source.path}: {source.damage}; {count} messages read before it", count, last)

    def deserialize(self, message: BagMessage) -> Any:
        """The message as a rosbags object (same field names as rclpy messages)."""
        if message.msgtype not in self.typestore.types:
            self._register(message.topic, message.msgtype)
        try:
            return self.typestore.deserialize_cdr(message.data, message.msgtype)
        except Exception as exc:  # noqa: BLE001 - corrupt bytes raise assorted errors
            raise MessageDecodeError(
                f"{message.topic} at log time {message.log_time_ns} ns: bytes do not decode "
                f"as {message.msgtype}: {type(exc).__name__}: {exc}"
            ) from exc

    def _register(self, topic: str, msgtype: str) -> None:
        info = self.topics.get(topic)
        if info is None or not info.msgdef:
            raise MessageDecodeError(f"{topic}: type {msgtype} is unknown and the bag stores no definition for it")
        try:
            self.typestore.register(_types_from_concatenated(info.msgdef, msgtype))
        except Exception as exc:  # noqa: BLE001
            raise MessageDecodeError(f"{topic}: cannot parse the definition of {msgtype}: {exc}")

    # -- lifetime -------------------------------------------------------------------
    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> BagReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _types_from_concatenated(msgdef: str, msgtype: str) -> dict[str, Any]:
    """Types of a ros2msg definition with its ``MSG:`` dependency sections."""
    sections = msgdef.split("\n" + "=" * 80 + "\n")
    types: dict[str, Any] = dict(get_types_from_msg(sections[0], msgtype))
    for section in sections[1:]:
        first, _, body = section.partition("\n")
        if first.startswith("MSG: "):
            name = first[5:].strip()
            if "/msg/" not in name:
                pkg, _, base = name.partition("/")
                name = f"{pkg}/msg/{base}"
            types.update(get_types_from_msg(body, name))
    return types
