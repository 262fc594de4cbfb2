"""Stop on success: call a std_srvs/Trigger service once per successful episode.

    ros2 run topreward_ros stop_on_success --ros-args -p stop_service:=/recorder/stop

A consumer of the scorer node's ``task_progress`` and ``episode_success``
(e.g. to stop a recorder or end a teleoperation episode). The rule it
follows is the one every consumer should follow:

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

Parameters: ``stop_service`` (the Trigger service to call, default
``recorder/stop``), ``progress_topic`` (``task_progress``), ``success_topic``
(``episode_success``). Remap or namespace like any node.
"""
from __future__ import annotations

import sys
from collections import OrderedDict
from typing import Any

#: Episodes remembered as handled (a bounded memory: the newest are kept).
REMEMBERED_EPISODES = 256


class SuccessRule:
    """Which episode is current and whether its success was acted on (no ROS inside)."""

    def __init__(self) -> None:
        self.current: str | None = None
        self.handled: OrderedDict[str, None] = OrderedDict()
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
    from std_srvs.srv import Trigger

    from topreward_ros.msg import EpisodeSuccess, TaskProgress

    class StopOnSuccess(Node):
        def __init__(self) -> None:
            super().__init__("stop_on_success")
            service = self.declare_parameter("stop_service", "recorder/stop").value
            progress_topic = self.declare_parameter("progress_topic", "task_progress").value
            success_topic = self.declare_parameter("success_topic", "episode_success").value
            self.rule = SuccessRule()
            self.client = self.create_client(Trigger, service)
            reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
            latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
            self.create_subscription(TaskProgress, progress_topic, self.on_progress, reliable)
            self.create_subscription(EpisodeSuccess, success_topic, self.on_success, latched)
            self.get_logger().info(
                f"calling {self.client.srv_name} once per successful episode "
                f"(progress: {progress_topic}, success: {success_topic})")

        def on_progress(self, msg: Any) -> None:
            previous = self.rule.current
            episode = self.rule.on_progress(msg.episode_id, msg.success)
            if msg.episode_id != previous:
                # The running episode changed: successes held for others are stale.
                for old in [e for e in self.rule.waiting if e != msg.episode_id]:
                    if previous is None:
                        self.stale(old, msg.episode_id)
                    del self.rule.waiting[old]
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
                        "names the running episode")
                else:
                    self.stale(msg.episode_id, self.rule.current)

        def stale(self, episode: str, running: str) -> None:
            self.get_logger().info(
                f"not acting on the EpisodeSuccess of episode {episode}: the running episode is {running}")

        def act(self, episode: str, why: str) -> None:
            if not self.client.service_is_ready():
                self.get_logger().warning(
                    f"{why}, but {self.client.srv_name} is not available: trying again on the next "
                    "progress message", throttle_duration_sec=5.0)
                return
            self.rule.acted(episode)
            self.get_logger().info(f"{why}: calling {self.client.srv_name}")
            future = self.client.call_async(Trigger.Request())
            future.add_done_callback(lambda f: self.done(episode, f))

        def done(self, episode: str, future: Any) -> None:
            try:
                response = future.result()
            except Exception as exc:  # the service went away mid-call
                self.get_logger().error(f"episode {episode}: {self.client.srv_name} failed: {exc}")
                return
            if response.success:
                self.get_logger().info(f"episode {episode}: {self.client.srv_name} answered: {response.message}")
            else:
                self.get_logger().error(f"episode {episode}: {self.client.srv_name} refused: {response.message}")

    rclpy.init(args=sys.argv if argv is None else argv)
    node = StopOnSuccess()
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
