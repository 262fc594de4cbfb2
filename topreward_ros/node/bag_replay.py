"""Replaying a bag into a live ROS graph with /clock: `topreward replay`.

``ros2 bag play --clock`` is not available everywhere this package runs (it
has no Python wheel), and testing the node against a recording needs
exactly that: every message on its topic, in log-time order, paced in real
time (times a rate), with ``/clock`` carrying bag time so nodes running with
``use_sim_time:=true`` see the recording's time instead of the wall clock.

Messages are published as the CDR bytes stored in the bag (rclpy's raw
publishing), so nothing is decoded or re-encoded on the way: what the node
receives is byte for byte what was recorded. The Python message class of
each topic is still needed to create its publisher; topics whose type is
not installed are left out and reported.

QoS: publishers are RELIABLE (or BEST_EFFORT on request) and TRANSIENT_LOCAL
with a deep history; that combination matches every subscriber (reliable or
best effort, volatile or latched), and reliable delivery into subscribers
that ask for it means nothing is dropped on the way. Before the first
message the replayer can wait until chosen topics have subscribers, so a
node that is still starting misses nothing.
"""

from __future__ import annotations

import importlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from topreward_ros.bag.base import DEFAULT_CLOCK_HZ
from topreward_ros.bag.reader import BagReader, BagReadError
from topreward_ros.rendering.progress_bar import progress_bar
from topreward_ros.scoring.stamps import NS_PER_S

CLOCK_TOPIC = "/clock"
#: DEFAULT_CLOCK_HZ (defined in bag.base, which the parser imports without
#: importing this module): /clock messages per wall second.


class ReplayError(RuntimeError):
    """The replay cannot start (no ROS, unusable topics, no subscriber in time)."""


@dataclass(frozen=True)
class ReplayOptions:
    """How to replay.

    topics: only these topics (None: every topic in the bag).
    rate: playback speed multiplier (2.0 = twice real time).
    clock_hz: /clock messages per second of wall time between messages.
    publish_clock: publish /clock at all.
    reliable: RELIABLE publishers (else BEST_EFFORT).
    depth: publisher history depth (a reliable publisher keeps this many
        unacknowledged messages for a slow subscriber).
    wait_for: topics that must have a subscriber before the replay starts;
        an empty tuple means every replayed topic; None means do not wait.
    wait_timeout_s: how long to wait for those subscribers.
    linger_s: keep advancing /clock this long (wall time) after the last
        message, so timers of sim-time nodes fire for the final messages.
    ack_timeout_s: at the end, how long to wait for reliable subscribers to
        acknowledge every message.
    """

    topics: tuple[str, ...] | None = None
    rate: float = 1.0
    clock_hz: float = DEFAULT_CLOCK_HZ
    publish_clock: bool = True
    reliable: bool = True
    depth: int = 50
    wait_for: tuple[str, ...] | None = None
    wait_timeout_s: float = 30.0
    linger_s: float = 1.0
    ack_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        for name in ("rate", "clock_hz", "wait_timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        for name in ("linger_s", "ack_timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1, got {self.depth!r}")


@dataclass
class ReplayResult:
    """What was published, and what could not be."""

    bag: str
    published: dict[str, int] = field(default_factory=dict)
    skipped_topics: dict[str, str] = field(default_factory=dict)
    clock_messages: int = 0
    wall_s: float = 0.0
    bag_span_s: float = 0.0
    read_error: str | None = None
    not_acknowledged: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not (self.read_error or self.interrupted or self.not_acknowledged)

    def summary(self) -> str:
        lines = [
            f"replayed {self.bag}: {sum(self.published.values())} messages, "
            f"{self.bag_span_s:.2f} s of bag time in {self.wall_s:.2f} s, "
            f"{self.clock_messages} /clock messages"
        ]
        lines += [f"  {topic}: {count}" for topic, count in sorted(self.published.items())]
        lines += [f"  skipped {topic}: {why}" for topic, why in sorted(self.skipped_topics.items())]
        if self.not_acknowledged:
            lines.append(
                "WARNING: not every subscriber acknowledged every message on: " + ", ".join(self.not_acknowledged)
            )
        if self.read_error:
            lines.append(f"READ ERROR: {self.read_error}")
        if self.interrupted:
            lines.append("INTERRUPTED")
        return "\n".join(lines)


def message_class(msgtype: str) -> Any:
    """The installed Python class of ``pkg/msg/Name`` (raises ReplayError if absent)."""
    parts = msgtype.split("/")
    if len(parts) != 3 or parts[1] != "msg":
        raise ReplayError(f"unsupported message type name {msgtype!r}")
    try:
        return getattr(importlib.import_module(f"{parts[0]}.msg"), parts[2])
    except (ImportError, AttributeError) as exc:
        raise ReplayError(f"message type {msgtype} is not installed ({exc})") from exc


class _Pacer:
    """Maps bag time to wall time and keeps /clock moving in between."""

    def __init__(self, node: Any, clock_pub: Any | None, options: ReplayOptions, bag_start_ns: int) -> None:
        self.clock_pub = clock_pub
        self.options = options
        self.bag_start_ns = bag_start_ns
        self.wall_start = time.monotonic()
        self.last_clock_ns = -1
        self.sent = 0
        from rosgraph_msgs.msg import Clock

        self._clock_cls = Clock

    def bag_now_ns(self) -> int:
        elapsed = (time.monotonic() - self.wall_start) * self.options.rate
        return self.bag_start_ns + int(elapsed * NS_PER_S)

    def publish_clock(self, bag_ns: int) -> None:
        if self.clock_pub is None or bag_ns <= self.last_clock_ns:
            return
        msg = self._clock_cls()
        msg.clock.sec, msg.clock.nanosec = divmod(int(bag_ns), NS_PER_S)
        self.clock_pub.publish(msg)
        self.last_clock_ns = bag_ns
        self.sent += 1

    def wait_until(self, bag_ns: int) -> None:
        """Sleep until ``bag_ns`` is due, publishing /clock at clock_hz meanwhile."""
        target = self.wall_start + (bag_ns - self.bag_start_ns) / NS_PER_S / self.options.rate
        period = 1.0 / self.options.clock_hz
        while True:
            now = time.monotonic()
            if now >= target:
                break
            time.sleep(min(period, target - now))
            if time.monotonic() < target:
                self.publish_clock(self.bag_now_ns())
        self.publish_clock(bag_ns)


def replay_bag(path: Path | str, options: ReplayOptions | None = None, progress: bool = True) -> ReplayResult:
    """Publish ``path``'s messages into the ROS graph (see the module doc)."""
    options = options or ReplayOptions()
    try:
        import rclpy
        from rclpy.duration import Duration
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    except ImportError as exc:
        raise ReplayError(f"rclpy is not importable ({exc}); source the ROS environment (source tools/env.sh)") from exc

    result = ReplayResult(str(path))
    with BagReader(path) as reader:
        topics = dict(reader.topics)
        if options.topics is not None:
            missing = [t for t in options.topics if t not in topics]
            if missing:
                raise ReplayError(
                    f"topics not in the bag: {', '.join(missing)}; the bag has: {', '.join(sorted(topics))}"
                )
            topics = {t: topics[t] for t in options.topics}
        if reader.start_ns is None or not topics:
            raise ReplayError(f"{path}: nothing to replay (the bag is empty)")
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=options.depth,
            reliability=ReliabilityPolicy.RELIABLE if options.reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        context = rclpy.Context()
        rclpy.init(context=context)
        node = None
        try:
            node = rclpy.create_node("topreward_replay", context=context, start_parameter_services=False)
            publishers: dict[str, Any] = {}
            for topic, info in sorted(topics.items()):
                try:
                    publishers[topic] = node.create_publisher(message_class(info.msgtype), topic, qos)
                except ReplayError as exc:
                    result.skipped_topics[topic] = str(exc)
            if not publishers:
                raise ReplayError(
                    "no topic of the bag can be published: "
                    + "; ".join(f"{t}: {w}" for t, w in result.skipped_topics.items())
                )
            clock_pub = None
            if options.publish_clock:
                from rosgraph_msgs.msg import Clock

                clock_pub = node.create_publisher(
                    Clock, CLOCK_TOPIC, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
                )
            _wait_for_subscribers(publishers, clock_pub, options)
            pacer = _Pacer(node, clock_pub, options, reader.start_ns)
            pacer.publish_clock(reader.start_ns)
            result.published = {t: 0 for t in publishers}
            bar = progress_bar(reader.message_count, progress, "replay")
            try:
                for message in reader.messages(publishers):
                    pacer.wait_until(message.log_time_ns)
                    publishers[message.topic].publish(message.data)
                    result.published[message.topic] += 1
                    bar.update(1)
                    result.bag_span_s = (message.log_time_ns - reader.start_ns) / NS_PER_S
            except BagReadError as exc:
                result.read_error = str(exc)
            except KeyboardInterrupt:
                result.interrupted = True
            finally:
                bar.close()
            if not result.interrupted:
                linger_end = time.monotonic() + options.linger_s
                while time.monotonic() < linger_end:
                    time.sleep(1.0 / options.clock_hz)
                    pacer.publish_clock(pacer.bag_now_ns())
                if options.reliable:
                    for topic, pub in publishers.items():
                        if not pub.wait_for_all_acked(Duration(seconds=options.ack_timeout_s)):
                            result.not_acknowledged.append(topic)
            result.clock_messages = pacer.sent
            result.wall_s = time.monotonic() - pacer.wall_start
        finally:
            if node is not None:
                node.destroy_node()
            rclpy.shutdown(context=context)
    return result


def _wait_for_subscribers(publishers: dict[str, Any], clock_pub: Any | None, options: ReplayOptions) -> None:
    if options.wait_for is None:
        return
    waited = list(options.wait_for) or list(publishers)
    unknown = [t for t in waited if t not in publishers and t != CLOCK_TOPIC]
    if unknown:
        raise ReplayError(f"--wait-for names topics that are not replayed: {', '.join(unknown)}")
    deadline = time.monotonic() + options.wait_timeout_s
    while True:
        lacking = [
            t for t in waited if (clock_pub if t == CLOCK_TOPIC else publishers[t]).get_subscription_count() == 0
        ]
        if not lacking:
            return
        if time.monotonic() > deadline:
            raise ReplayError(
                f"no subscriber after {options.wait_timeout_s:.1f} s on: {', '.join(lacking)} "
                f"(is the node running, in the same ROS_DOMAIN_ID, with matching QoS?)"
            )
        time.sleep(0.05)
