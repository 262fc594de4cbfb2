"""The scorer node's topics, service and timers: created on configure and activate, destroyed on the way back.

A mixin of ``ScorerNodeBase``, kept apart because it is all about the ROS
graph: which QoS each topic gets and why, the latched instruction reader that
exists only while a latched writer does, and the incompatible-QoS watch on
every publisher and subscription (``topreward_ros.node.qos_watch``).
"""

from __future__ import annotations

import copy
from typing import Any

from rclpy.clock import Clock, ClockType
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.qos import DurabilityPolicy, QoSPolicyKind, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import Image  # the progress picture
from std_msgs.msg import String
from std_srvs.srv import Trigger

from topreward_ros.msg import EpisodeResult, EpisodeSuccess, TaskProgress
from topreward_ros.node.episodes import INSTRUCTION_TOPIC

PROGRESS_TOPIC = "task_progress"
SUCCESS_TOPIC = "episode_success"
RESULT_TOPIC = "episode_result"
PROGRESS_IMAGE_TOPIC = "~/progress_image"
RESET_SERVICE = "~/reset"
#: Seconds (steady clock) between looks for a transient-local instruction writer.
LATCHED_WATCH_PERIOD_S = 0.5


class TopicWiring:
    """Publishers, subscriptions, the reset service and the scoring timer of ``ScorerNodeBase``."""

    _cameras: list[Any]
    _reliable: QoSProfile
    _latched: QoSProfile

    def _create_publishers(self) -> None:
        self._progress_pub = self._watched_publisher(TaskProgress, PROGRESS_TOPIC, self._reliable)
        self._success_pub = self._watched_publisher(EpisodeSuccess, SUCCESS_TOPIC, self._latched)
        # One per ended episode, latched: a late joiner gets the last verdict.
        self._result_pub = self._watched_publisher(EpisodeResult, RESULT_TOPIC, self._latched)
        # The progress picture: drawn on the scoring thread only while someone watches.
        self._image_pub = self._watched_publisher(
            Image, PROGRESS_IMAGE_TOPIC, QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
        )

    def _activate(self) -> None:
        """Subscriptions, the reset service and the scoring timer: frames in, scores out."""
        # Instruction: a volatile reliable subscription matches every reliable
        # publisher (the ROS 2 default, `ros2 topic pub`, a latched one). A second,
        # transient-local one gets a latched instruction published before this
        # node started; it exists only while a transient-local publisher is on the
        # graph (_watch_latched_writers), because an ordinary publisher that meets
        # it logs "requesting incompatible QoS. No messages will be sent to it"
        # although the volatile reader serves it. A latched publisher's messages
        # reach both, and are recognised as one (_message_key). Their own group:
        # an instruction is never queued behind diagnostics or a service call.
        # Created before the cameras: the executor takes ready subscriptions in
        # creation order.
        topic = str(self.get_parameter("instruction_topic").value).strip() or INSTRUCTION_TOPIC
        instruction_topic = self.resolve_topic_name(topic)
        self._instruction_topic = (topic, instruction_topic)
        self._instruction_subs = [self._instruction_subscription(latched=False)]
        self._latched_instruction_sub = None
        self._latched_watch = self.create_timer(
            LATCHED_WATCH_PERIOD_S,
            self._watch_latched_writers,
            callback_group=self._instruction_group,
            clock=Clock(clock_type=ClockType.STEADY_TIME),
        )
        self._watch_latched_writers()
        self._reset_srv = self.create_service(Trigger, RESET_SERVICE, self._on_reset)

        # Cameras: sensor-data QoS (best effort, shallow) unless overridden
        # through qos_overrides.<topic>.subscription.* parameters (REP 2003).
        self._camera_subs = []
        for index, stats in enumerate(self._cameras):
            # A fresh profile per topic: rclpy applies qos_overrides to the
            # profile object in place, and must not leak one topic's override
            # into the shared qos_profile_sensor_data.
            profile = copy.copy(qos_profile_sensor_data)
            resolved = self.resolve_topic_name(stats.topic)
            self._camera_subs.append(
                self.create_subscription(
                    stats.camera_type.ros_class(),
                    stats.topic,
                    lambda msg, info, i=index: self._on_image(i, msg, info),
                    profile,
                    callback_group=self._camera_groups[index],
                    qos_overriding_options=QoSOverridingOptions.with_default_policies(),
                    event_callbacks=SubscriptionEventCallbacks(
                        incompatible_qos=self._qos.watch(
                            resolved,
                            "subscription",
                            profile,
                            f"Match the camera driver's QoS: e.g. "
                            f"qos_overrides.{resolved}.subscription.reliability:=best_effort "
                            f"(best effort matches every publisher).",
                        )
                    ),
                )
            )
        # Scoring timer on the ROS clock.
        self._tick_timer = self._make_tick_timer(float(self.get_parameter("rate_hz").value))
        self._lifecycle_state = "active"
        instruction = str(self.get_parameter("instruction").value)
        if instruction.strip() and not self._runner.active:
            self._start_episode(instruction, "instruction parameter", new_task=True)

    def _instruction_subscription(self, latched: bool) -> Any:
        topic, resolved = self._instruction_topic
        profile = copy.copy(self._latched if latched else self._reliable)
        advice = (
            f"Publish the instruction with reliable QoS (the default; `ros2 topic pub "
            f"{resolved} std_msgs/msg/String` with no QoS flags works)."
        )
        return self.create_subscription(
            String,
            topic,
            self._on_instruction_msg,
            profile,
            callback_group=self._instruction_group,
            event_callbacks=SubscriptionEventCallbacks(
                incompatible_qos=self._qos.watch(
                    resolved,
                    "subscription",
                    profile,
                    advice,
                    # The latched reader never matches a volatile writer; the volatile one serves it.
                    ignore=frozenset({QoSPolicyKind.DURABILITY}) if latched else frozenset(),
                )
            ),
        )

    def _watch_latched_writers(self) -> None:
        """The transient-local instruction reader exists while a transient-local writer does."""
        try:
            writers = self.get_publishers_info_by_topic(self._instruction_topic[1])
        except Exception:  # noqa: BLE001 - the graph cannot be read now: try on the next round
            return
        latched = any(w.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for w in writers)
        if latched and self._latched_instruction_sub is None and self._instruction_subs:
            self._latched_instruction_sub = self._instruction_subscription(latched=True)
            self._instruction_subs.append(self._latched_instruction_sub)
        elif not latched and self._latched_instruction_sub is not None:
            self._instruction_subs.remove(self._latched_instruction_sub)
            self.destroy_subscription(self._latched_instruction_sub)
            self._latched_instruction_sub = None

    def _deactivate(self) -> None:
        """Stop taking frames and scoring; the episode (frames, success latch) is kept."""
        if self._latched_watch is not None:
            self._latched_watch.cancel()
            self.destroy_timer(self._latched_watch)
            self._latched_watch = None
        for sub in [*self._instruction_subs, *self._camera_subs]:
            self.destroy_subscription(sub)
        self._instruction_subs, self._camera_subs = [], []
        self._latched_instruction_sub = None
        if self._reset_srv is not None:
            self.destroy_service(self._reset_srv)
            self._reset_srv = None
        if self._tick_timer is not None:
            self._tick_timer.cancel()
            self.destroy_timer(self._tick_timer)
            self._tick_timer = None
        # A tick that is running finishes (its score is published) before this returns.
        with self._tick_lock:
            self._lifecycle_state = "inactive"
        with self._frame_lock:
            self._intake.forget()

    def _destroy_publishers(self) -> None:
        for pub in (self._progress_pub, self._success_pub, self._result_pub, self._image_pub):
            if pub is not None:
                self.destroy_publisher(pub)
        self._progress_pub = self._success_pub = self._result_pub = self._image_pub = None

    def _watched_publisher(self, msg_type: Any, topic: str, profile: QoSProfile) -> Any:
        resolved = self.resolve_topic_name(topic)
        return self.create_publisher(
            msg_type,
            topic,
            profile,
            event_callbacks=PublisherEventCallbacks(
                incompatible_qos=self._qos.watch(
                    resolved,
                    "publisher",
                    profile,
                    f"Subscribe to {resolved} with at most what it offers "
                    f"(e.g. reliable or best_effort, and volatile durability unless it is latched).",
                )
            ),
        )

    def _qos_peers(self, topic: str, side: str) -> list[Any]:
        """QoS profiles of the other side of ``topic`` (for the incompatible-QoS message)."""
        infos = (
            self.get_publishers_info_by_topic(topic)
            if side == "subscription"
            else self.get_subscriptions_info_by_topic(topic)
        )
        return [info.qos_profile for info in infos if info.node_name != self.get_name()]

    def _make_tick_timer(self, rate_hz: float) -> Any:
        return self.create_timer(1.0 / rate_hz, self._on_tick, callback_group=self._tick_group)
