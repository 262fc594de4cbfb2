"""Stop on success: call a service once per successful episode, and optionally one when the next starts.

    ros2 run topreward_ros stop_on_success --ros-args -p stop_service:=/recorder/stop

A consumer of the scorer node's ``task_progress`` and ``episode_success``
(e.g. to stop, pause or split a recorder, or end a teleoperation episode).
The rule it follows is the one every consumer should follow:

* The running episode is the one named by the newest ``TaskProgress``
  (``episode_id``); nothing else says which episode is current.
* Act on success only for that episode: ``TaskProgress.success`` (latched
  for the rest of the episode) or an ``EpisodeSuccess`` whose ``episode_id``
  is the current one.
* ``episode_success`` is latched (transient local): a consumer that starts
  late receives the LAST success the node declared, which may belong to an
  older episode. Such a message is remembered, not acted on, until a
  ``TaskProgress`` names its episode as the running one; a stale one never is.
* At most one call per episode. A call that cannot be made (the service is
  not up yet) is retried on the next progress message of the episode.
* The start call of an episode is answered before its success call is made.

Any service whose request is empty can be called: std_srvs ``Trigger`` and
``Empty``, or the services ``ros2 bag record`` serves (rosbag2_interfaces
``SplitBagfile``, ``Pause``, ``Resume``). With ``start_service`` set, that
second service is called once when each episode starts (the first
``TaskProgress`` of an episode the consumer has not seen running), e.g. to
resume a recorder that a success paused.

Parameters: ``stop_service`` (the service called on success, default
``recorder/stop``), ``service_type`` (its type, default
``std_srvs/srv/Trigger``), ``start_service`` (called when an episode starts;
empty, the default, calls none), ``start_service_type`` (its type, default
``std_srvs/srv/Trigger``), ``progress_topic`` (``task_progress``),
``success_topic`` (``episode_success``). Remap or namespace like any node.
"""

from __future__ import annotations

import importlib
import sys
from collections import OrderedDict
from typing import Any

#: Episodes remembered as handled (a bounded memory: the newest are kept).
REMEMBERED_EPISODES = 256
DEFAULT_SERVICE_TYPE = "std_srvs/srv/Trigger"


class ServiceTypeError(ValueError):
    """A service type that cannot be called with an empty request."""


def service_class(name: str) -> Any:
    """The service class named ``pkg/srv/Name`` (or ``pkg/Name``), whose request must be empty."""
    parts = name.strip().split("/")
    if len(parts) == 2:
        parts.insert(1, "srv")
    if len(parts) != 3 or parts[1] != "srv" or not all(parts):
        raise ServiceTypeError(
            f"service type {name!r}: write it as package/srv/Name, e.g. std_srvs/srv/Trigger "
            "or rosbag2_interfaces/srv/Pause"
        )
    package, _, type_name = parts
    try:
        module = importlib.import_module(f"{package}.srv")
    except ImportError as exc:
        raise ServiceTypeError(
            f"service type {name!r}: the package {package} is not installed or not sourced ({exc})"
        ) from exc
    cls = getattr(module, type_name, None)
    if cls is None or not hasattr(cls, "Request"):
        raise ServiceTypeError(f"service type {name!r}: {package} has no service {type_name}")
    fields = cls.Request.get_fields_and_field_types()
    if fields:
        raise ServiceTypeError(
            f"service type {name!r}: its request has fields ({', '.join(fields)}); only services "
            "with an empty request can be called (Trigger, Empty, SplitBagfile, Pause, Resume, ...)"
        )
    return cls


def answer_text(response: Any) -> tuple[bool, str]:
    """Whether a service answer is a success, and what to log: Trigger-like answers carry
    ``success`` (and ``message``); an empty answer (Empty, Pause, SplitBagfile ...) is one."""
    ok = bool(getattr(response, "success", True))
    message = getattr(response, "message", "")
    return ok, message if message else ("done" if ok else "no reason given")


class SuccessRule:
    """Which episode is current, whether its start and success were acted on (no ROS inside)."""

    def __init__(self) -> None:
        self.current: str | None = None
        self.handled: OrderedDict[str, None] = OrderedDict()
        #: Episodes whose start was acted on.
        self.started: OrderedDict[str, None] = OrderedDict()
        #: EpisodeSuccess messages for episodes not (yet) seen as current, by episode id.
        self.waiting: OrderedDict[str, Any] = OrderedDict()

    def _remember(self, table: OrderedDict, key: str, value: Any = None) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > REMEMBERED_EPISODES:
            table.popitem(last=False)

    def on_progress(self, episode_id: str, success: bool) -> str | None:
        """A TaskProgress: the episode to act on now, if any."""
        if not episode_id:
            return None
        self.current = episode_id
        if episode_id in self.handled:
            return None
        if success or episode_id in self.waiting:
            return episode_id
        return None

    def to_start(self) -> str | None:
        """The running episode, if its start was not acted on yet."""
        if self.current is None or self.current in self.started:
            return None
        return self.current

    def start_acted(self, episode_id: str) -> None:
        self._remember(self.started, episode_id)

    def on_success(self, episode_id: str) -> str | None:
        """An EpisodeSuccess: the episode to act on now, if any (never a stale one)."""
        if not episode_id or episode_id in self.handled:
            return None
        if episode_id == self.current:
            return episode_id
        self._remember(self.waiting, episode_id)
        return None

    def acted(self, episode_id: str) -> None:
        self.waiting.pop(episode_id, None)
        self._remember(self.handled, episode_id)


def main(argv: list[str] | None = None) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from topreward_ros.msg import EpisodeSuccess, TaskProgress

    class Caller:
        """One service of an empty-request type, called at most once per episode."""

        def __init__(self, node: Node, service: str, type_name: str) -> None:
            self.node = node
            self.type = service_class(type_name)
            self.type_name = type_name
            self.client = node.create_client(self.type, service)
            #: Episodes whose call has not been answered yet.
            self.pending: set[str] = set()

        @property
        def name(self) -> str:
            return self.client.srv_name

        def call(self, episode: str, why: str) -> bool:
            """Call the service; False (and a throttled warning) when it is not up yet."""
            if not self.client.service_is_ready():
                self.node.get_logger().warning(
                    f"{why}, but {self.name} ({self.type_name}) is not available: trying again on the next "
                    "progress message",
                    throttle_duration_sec=5.0,
                )
                return False
            self.node.get_logger().info(f"{why}: calling {self.name}")
            self.pending.add(episode)
            future = self.client.call_async(self.type.Request())
            future.add_done_callback(lambda f: self.done(episode, f))
            return True

        def done(self, episode: str, future: Any) -> None:
            self.pending.discard(episode)
            try:
                response = future.result()
            except Exception as exc:  # the service went away mid-call
                self.node.get_logger().error(f"episode {episode}: {self.name} failed: {exc}")
                return
            ok, message = answer_text(response)
            if ok:
                self.node.get_logger().info(f"episode {episode}: {self.name} answered: {message}")
            else:
                self.node.get_logger().error(f"episode {episode}: {self.name} refused: {message}")

    class StopOnSuccess(Node):
        def __init__(self) -> None:
            super().__init__("stop_on_success")
            service = self.declare_parameter("stop_service", "recorder/stop").value
            service_type = self.declare_parameter("service_type", DEFAULT_SERVICE_TYPE).value
            start_service = self.declare_parameter("start_service", "").value
            start_type = self.declare_parameter("start_service_type", DEFAULT_SERVICE_TYPE).value
            progress_topic = self.declare_parameter("progress_topic", "task_progress").value
            success_topic = self.declare_parameter("success_topic", "episode_success").value
            self.rule = SuccessRule()
            self.stop = Caller(self, service, service_type)
            self.start = Caller(self, start_service, start_type) if start_service else None
            reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
            latched = QoSProfile(
                depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
            )
            self.create_subscription(TaskProgress, progress_topic, self.on_progress, reliable)
            self.create_subscription(EpisodeSuccess, success_topic, self.on_success, latched)
            also = f", {self.start.name} ({start_type}) when an episode starts" if self.start is not None else ""
            self.get_logger().info(
                f"calling {self.stop.name} ({service_type}) once per successful episode{also} "
                f"(progress: {progress_topic}, success: {success_topic})"
            )

        def on_progress(self, msg: Any) -> None:
            previous = self.rule.current
            episode = self.rule.on_progress(msg.episode_id, msg.success)
            if msg.episode_id != previous:
                # The running episode changed: successes held for others are stale.
                for old in [e for e in self.rule.waiting if e != msg.episode_id]:
                    if previous is None:
                        self.stale(old, msg.episode_id)
                    del self.rule.waiting[old]
            starting = self.rule.to_start() if self.start is not None else None
            if starting is not None and self.start.call(starting, f"episode {starting} started"):
                self.rule.start_acted(starting)
            if episode is not None:
                self.act(episode, f"success in episode {episode} (score {msg.success_score:.3f})")

        def on_success(self, msg: Any) -> None:
            episode = self.rule.on_success(msg.episode_id)
            if episode is not None:
                self.act(episode, f"EpisodeSuccess of episode {episode} (score {msg.success_score:.3f})")
            elif msg.episode_id in self.rule.waiting:
                if self.rule.current is None:
                    self.get_logger().info(
                        f"EpisodeSuccess of episode {msg.episode_id} held back until a progress message "
                        "names the running episode"
                    )
                else:
                    self.stale(msg.episode_id, self.rule.current)

        def stale(self, episode: str, running: str) -> None:
            self.get_logger().info(
                f"not acting on the EpisodeSuccess of episode {episode}: the running episode is {running}"
            )

        def act(self, episode: str, why: str) -> None:
            if self.start is not None and (episode in self.start.pending or self.rule.to_start() == episode):
                # The start call goes first (a resume must not land after the pause); success
                # stays latched in the episode's progress, so the next message acts on it.
                return
            if self.stop.call(episode, why):
                self.rule.acted(episode)

    rclpy.init(args=sys.argv if argv is None else argv)
    try:
        node = StopOnSuccess()
    except ServiceTypeError as exc:
        print(f"stop_on_success: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
