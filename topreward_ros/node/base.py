"""The scorer node's shared part: camera streams + an instruction in, task progress out.

``ScorerNodeBase`` is a thin ROS shell around ``topreward_ros.episode.runner.EpisodeRunner``
(the same per-episode logic the offline bag tools run), so everything here is
about ROS: parameters, QoS, callbacks, threads, time and health reporting. The
plain node (``topreward_ros.node.scorer_node``) and the managed one
(``topreward_ros.node.managed``) differ only in when they run its phases.
Which episode a frame belongs to is ``FrameIntake``'s rule
(``topreward_ros.node.intake``); the model is held by a ``ModelSlot``
(``topreward_ros.node.model_slot``); the episode flow (instructions, frames,
ticks, results) is in ``topreward_ros.node.episodes``.

Threads and callback groups (on a ``MultiThreadedExecutor``):

* one mutually exclusive group per camera: a camera's frames are handled in
  arrival order (the window needs stamps in order) while cameras run in
  parallel. A callback only asks the runner whether the frame's stamp is
  needed (``wants``) and, if so, stores the message unconverted
  (``CameraView``): decoding and resizing run on the scoring thread when the
  frame's sample is composed, so a callback costs microseconds for every
  encoding; an image found bad there is counted and reported for its camera;
* the scoring timer in its own reentrant group: it fires on the ROS clock (so
  it follows ``/clock`` under ``use_sim_time`` and bag replay) and a tick that
  comes due while the previous one is still running returns at once and is
  counted as skipped, instead of queueing up behind the model;
* everything else (instruction, reset service, parameters, diagnostics) in
  the node's default group. Diagnostics run on a steady wall-clock timer, so
  they keep coming when simulated time stops.

Model loading happens on a background thread: a node whose model is still
loading, or failed to load, keeps collecting frames and reporting on
``/diagnostics`` and retries (periodically, on a reset, and when a model
parameter changes) instead of dying.
"""

from __future__ import annotations

import threading
from typing import Any

from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType, JumpThreshold
from rclpy.duration import Duration
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header

from topreward_ros.episode.cameras import camera_type_for_topic
from topreward_ros.episode.records import END_MODEL_CHANGED, END_SHUTDOWN, EpisodeSummary, TickResult
from topreward_ros.episode.runner import EpisodeRunner
from topreward_ros.msg import EpisodeResult, EpisodeSuccess, TaskProgress
from topreward_ros.node.diagnostics import CameraStats, ErrorRecord, ScoringStats
from topreward_ros.node.episodes import INSTRUCTION_TOPIC, EpisodeFlow
from topreward_ros.node.health import NodeHealth
from topreward_ros.node.intake import FrameIntake
from topreward_ros.node.model_slot import ModelSlot, SlotHooks
from topreward_ros.node.params import (
    EPISODE_PARAMS,
    MODEL_PARAMS,
    PARAMETERS,
    TASK_THRESHOLD_PARAMS,
    camera_topics_from,
    check_values,
    episode_settings_from,
    scorer_config_from,
)
from topreward_ros.node.qos_watch import QoSWatch
from topreward_ros.node.topics import TopicWiring
from topreward_ros.rendering.messages import MessageKit
from topreward_ros.scoring.config import ScorerConfig

NODE_NAME = "scorer_node"
DIAGNOSTICS_TOPIC = "/diagnostics"
#: How long cleanup or shutdown waits for subscribers to acknowledge the last EpisodeResult.
SHUTDOWN_ACK_TIMEOUT_S = 1.0
#: How long the node's end waits for a running tick before the last result goes out unscored:
#: not at all, since a forward of a large VLM can outlast ``ros2 launch``'s grace period.
SHUTDOWN_TICK_WAIT_S = 0.0


class ScorerNodeBase(EpisodeFlow, TopicWiring, NodeHealth, Node):
    """Scores the running episode on a timer and publishes progress and success.

    Built in the phases of a managed node: ``_declare`` (parameters, health
    records, diagnostics; at construction), ``_configure`` (publishers, the
    model), ``_activate`` (instruction and camera subscriptions, the reset
    service, the scoring timer), ``_deactivate`` and ``_cleanup``. The plain
    ``ScorerNode`` runs configure and activate at construction;
    ``ManagedScorerNode`` runs them as lifecycle transitions.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._declare()

    @property
    def num_cameras(self) -> int:
        """How many camera topics the node subscribes (fixed at construction)."""
        return len(self._cameras)

    # -- phases ------------------------------------------------------------------
    def _declare(self) -> None:
        """Parameters, health records and diagnostics: what exists in every state."""
        for spec in PARAMETERS:
            self.declare_parameter(spec.name, spec.default, spec.descriptor())
        for spec, kind in zip(TASK_THRESHOLD_PARAMS, (Parameter.Type.STRING_ARRAY, Parameter.Type.DOUBLE_ARRAY)):
            self.declare_parameter(spec.name, kind, spec.descriptor())  # unset: no per-task map
        values = self._param_values()
        # Fail at start-up, with the offending value named, on a bad config.
        check_values(values)
        self._settings = episode_settings_from(values)
        topics = camera_topics_from(values)

        self._lock = threading.Lock()  # guards the health records below
        self._tick_lock = threading.Lock()
        # Held by every camera callback while it judges and stores a frame, and
        # by an episode start for the whole switch: a frame is judged against
        # exactly one episode, never half the old one and half the new.
        # Reentrant: a camera-0 stamp jump starts an episode from its callback.
        self._frame_lock = threading.RLock()
        self._runner = EpisodeRunner(None, self._settings, num_cameras=len(topics))
        # Recent frames and instructions, and the episode each frame belongs to.
        self._intake = FrameIntake(len(topics))
        self._model = ModelSlot(
            SlotHooks(
                config=lambda: scorer_config_from(self._param_values()),
                retry_s=lambda: float(self.get_parameter("model_retry_s").value),
                before_load=self._log_rig_check,
                install=self._runner.set_scorer,
                loaded=self._model_loaded,
                failed=self._model_failed,
                info=lambda text: self.get_logger().info(text),
            )
        )
        self._episode_error = ErrorRecord()
        self._episode_event = ErrorRecord()
        self._last_instruction: str | None = None
        # Set while no episode runs because the last instruction was refused:
        # (monotonic time of the refusal, why). Frames are not scored meanwhile.
        self._refused_since: tuple[float, str] | None = None
        self._refused_instructions = 0
        self._last_result: TickResult | None = None
        self._success_sent: set[str] = set()
        self._scoring = ScoringStats()
        self._messages = MessageKit(TaskProgress, EpisodeSuccess, Header, TimeMsg, EpisodeResult)
        self._last_summary: EpisodeSummary | None = None
        self._results_published = 0
        self._lifecycle_state = "unconfigured"
        self._progress_pub: Any = None
        self._success_pub: Any = None
        self._result_pub: Any = None
        self._image_pub: Any = None
        self._instruction_subs: list[Any] = []
        self._latched_instruction_sub: Any = None
        self._latched_watch: Any = None
        self._instruction_topic = (INSTRUCTION_TOPIC, INSTRUCTION_TOPIC)
        self._camera_subs: list[Any] = []
        self._reset_srv: Any = None
        self._tick_timer: Any = None
        self._picture_progress: list[float] = []  # the episode's progress so far, for the picture
        self._picture_episode: str | None = None

        self._qos = QoSWatch(lambda text: self.get_logger().warning(text), self._qos_peers)
        self._reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._latched = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        self._diag_pub = self._watched_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, self._reliable)
        self._cameras = [CameraStats(topic=t, camera_type=camera_type_for_topic(t)) for t in topics]
        self._camera_groups = [MutuallyExclusiveCallbackGroup() for _ in topics]
        self._instruction_group = MutuallyExclusiveCallbackGroup()
        self._tick_group = ReentrantCallbackGroup()

        # Diagnostics on the steady clock, so they keep coming when simulated time stops.
        self._diag_timer = self.create_timer(
            float(values["diagnostics_period_s"]), self._on_diagnostics, clock=Clock(clock_type=ClockType.STEADY_TIME)
        )
        self._jump_handle = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=Duration(nanoseconds=-1), on_clock_change=True),
            post_callback=self._on_clock_jump,
        )
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

    def _configure(self) -> None:
        """Publishers, and the model loading in the background (retried on failure)."""
        self._create_publishers()
        self._lifecycle_state = "inactive"
        self._model.start("start-up")

    def _cleanup(self) -> None:
        """Back to unconfigured: publishers and the model freed, no episode.

        The running episode ends here (``shutdown``) and its result is published first.
        """
        if self._lifecycle_state == "active":
            self._deactivate()
        self._end_for_shutdown("node cleaned up or shut down")
        self._destroy_publishers()
        self._release_model()
        self._lifecycle_state = "unconfigured"

    def _end_for_shutdown(self, detail: str, tick_wait_s: float = -1.0) -> None:
        """End the running episode and publish the results still owed (the node stops).

        ``tick_wait_s``: how long to wait for a running tick (negative: as
        long as it runs); after that the results go out without the final score.
        """
        with self._frame_lock:
            self._runner.stop(END_SHUTDOWN, detail)
        if self._tick_lock.acquire(timeout=tick_wait_s):  # after a running tick, never beside one
            try:
                self._publish_ended()
            finally:
                self._tick_lock.release()
        else:
            self._publish_ended(unscored="node shut down while a score was running")
        if self._result_pub is not None and self._result_pub.get_subscription_count():
            # The publisher goes next: let reliable subscribers take the result first.
            self._result_pub.wait_for_all_acked(Duration(seconds=SHUTDOWN_ACK_TIMEOUT_S))

    def destroy_node(self) -> None:
        """The plain node's end: the running episode's result goes out while the context lives.

        A tick still running is not waited for (``SHUTDOWN_TICK_WAIT_S``): the
        result then goes out without the final score, so a node under ``ros2
        launch`` ends within its grace period.
        """
        if self._result_pub is not None and self.context.ok():
            try:
                self._end_for_shutdown("node shut down", SHUTDOWN_TICK_WAIT_S)
            except Exception as exc:  # noqa: BLE001 - shutting down: report, never block it
                self.get_logger().error(f"could not publish the last episode's result: {exc}")
        super().destroy_node()

    def _release_model(self) -> None:
        """Drop the model (and the accelerator memory it held)."""
        if self._model.release():
            self.get_logger().info("model released")

    # -- parameters ------------------------------------------------------------
    def _param_values(self, overrides: list[Parameter] | None = None) -> dict[str, Any]:
        values = {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}
        for spec in TASK_THRESHOLD_PARAMS:
            try:
                values[spec.name] = list(self.get_parameter(spec.name).value or [])
            except ParameterUninitializedException:
                values[spec.name] = []
        for param in overrides or []:
            if param.name in values:
                values[param.name] = param.value
        return values

    def _validate_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Reject a change that would make an invalid configuration, naming why."""
        values = self._param_values(params)
        try:
            check_values(values, {p.name for p in params})
        except (ValueError, TypeError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params: list[Parameter]) -> None:
        """Side effects of an accepted change (runs after the values are set)."""
        names = {p.name for p in params}
        values = self._param_values()
        if names & EPISODE_PARAMS:
            self._settings = episode_settings_from(values)
            self._runner.update_settings(self._settings)
        # Timer, model and episode exist only in some lifecycle states; the
        # values apply when those states are entered.
        if "rate_hz" in names and self._tick_timer is not None:
            self._tick_timer.cancel()
            self.destroy_timer(self._tick_timer)
            self._tick_timer = self._make_tick_timer(float(values["rate_hz"]))
        if names & MODEL_PARAMS and self._lifecycle_state != "unconfigured":
            self._model.invalidate()
            self._model.start("parameter change")
        if "instruction" in names and str(values["instruction"]).strip() and self._lifecycle_state == "active":
            self._start_episode(str(values["instruction"]), "instruction parameter", new_task=True)

    # -- model loading -----------------------------------------------------------
    def _log_rig_check(self, config: ScorerConfig) -> None:
        """Log the verdict `topreward check` gives this node's rig (never fatal; the loading thread)."""
        values = self._param_values()
        try:
            from topreward_ros.scoring.fit import Rig, check_rig

            rig = Rig(
                config,
                cameras=len(camera_topics_from(values)),
                max_frames=int(values["max_frames"]),
                rate_hz=float(values["rate_hz"]),
            )
            report = check_rig(rig)
        except Exception as exc:  # an unknown model, no configuration at hand: loading says more
            self.get_logger().info(f"rig check skipped: {type(exc).__name__}: {exc}")
            return
        episode = report.episode
        log = self.get_logger().warning if report.fits is False else self.get_logger().info
        log(
            f"rig check: {report.verdict()} Samples of {episode.frame_size[0]}x{episode.frame_size[1]}, "
            f"{episode.video_tokens_per_sample:g} video tokens each; at max_frames {rig.max_frames}: "
            f"{episode.prompt_tokens_at_max} prompt tokens, KV cache {episode.kv_bytes_at_max / 2**20:.0f} MiB; "
            f"thinning from {episode.thinning_starts_s:.0f} s (`topreward check --time` for tick costs)"
        )

    def _model_loaded(self, scorer: Any, replaced: bool) -> None:
        if replaced and self._runner.active and self._runner.instruction:
            # Scores of two models are not comparable: a new episode.
            self._start_episode(self._runner.instruction, "model changed", end_reason=END_MODEL_CHANGED)

    def _model_failed(self, message: str) -> None:
        then = "still serving, will retry" if self._model.retry_failed_loads else "configure again to retry"
        self.get_logger().error(f"{message}; {then}", throttle_duration_sec=10.0)
