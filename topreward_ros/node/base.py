"""The live scorer: camera streams + an instruction in, task progress out.

``ScorerNode`` is a thin ROS shell around ``topreward_ros.episode.EpisodeRunner``
(the same per-episode logic the offline bag tools run), so everything here is
about ROS: parameters, QoS, callbacks, threads, time and health reporting.

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

import copy
import signal
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, NoReturn

import rclpy
from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockChange, ClockType, JumpThreshold, TimeJump
from rclpy.duration import Duration
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.exceptions import ParameterException, ParameterUninitializedException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSPolicyKind,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger

from topreward_ros.episode import (
    END_CLOCK_JUMP,
    END_MODEL_CHANGED,
    END_NEW_INSTRUCTION,
    END_REFUSED,
    END_RESET,
    END_SHUTDOWN,
    END_STAMP_CUT,
    EpisodeRunner,
    EpisodeSummary,
    TickResult,
    stamp_cut,
)
from topreward_ros.camera_view import CameraView
from topreward_ros.msg import EpisodeResult, EpisodeSuccess, TaskProgress
from topreward_ros.progress_messages import MessageKit, episode_result, episode_success, task_progress
from topreward_ros.scorer_diagnostics import (
    CameraStats,
    ErrorRecord,
    ModelState,
    ScoringStats,
    camera_status,
    episode_status,
    model_status,
    qos_status,
    scoring_status,
)
from topreward_ros.scorer_params import (
    EPISODE_PARAMS,
    MODEL_PARAMS,
    PARAMETERS,
    TASK_THRESHOLD_PARAMS,
    camera_topics_from,
    check_values,
    episode_settings_from,
    is_compressed_topic,
    scorer_config_from,
)
from topreward_ros import progress_picture
from topreward_ros.process_exit import exit_now
from topreward_ros.qos_watch import QoSWatch
from topreward_ros.scoring.config import ScorerConfig
from topreward_ros.scoring.errors import InstructionError
from topreward_ros.scoring.prompt import validate_instruction
from topreward_ros.window import AddResult

if TYPE_CHECKING:
    from topreward_ros.scoring.backend import VideoScorer

NS_PER_S = 1_000_000_000

NODE_NAME = "scorer_node"
PROGRESS_TOPIC = "task_progress"
SUCCESS_TOPIC = "episode_success"
RESULT_TOPIC = "episode_result"
PROGRESS_IMAGE_TOPIC = "~/progress_image"
INSTRUCTION_TOPIC = "instruction"
RESET_SERVICE = "~/reset"
#: Seconds (steady clock) between looks for a transient-local instruction writer.
LATCHED_WATCH_PERIOD_S = 0.5
DIAGNOSTICS_TOPIC = "/diagnostics"


#: Frames published up to this long before an episode's instruction are taken
#: as belonging to the episode before (a busy node can hold a backlog of
#: seconds). Larger gaps are read as publishers' clocks that disagree (machines
#: without time sync), and then nothing is refused.
PUBLICATION_ORDER_BOUND_NS = 10_000_000_000
#: How long (wall clock) the node remembers the camera messages it handled, so
#: that frames published after an instruction but handled before it (topics are
#: not delivered in order with each other, and a busy machine runs callbacks
#: late) still go to the episode that instruction starts.
REORDER_WINDOW_S = 1.0
#: At most this many remembered messages per camera (bounds memory at high rates).
REORDER_MAX_MESSAGES = 64
#: How long cleanup or shutdown waits for subscribers to acknowledge the last EpisodeResult.
SHUTDOWN_ACK_TIMEOUT_S = 1.0
#: How long the node's end waits for a running tick before the last result goes out unscored:
#: not at all, since a forward of a large VLM can outlast ``ros2 launch``'s grace period.
SHUTDOWN_TICK_WAIT_S = 0.0
#: How often the main thread looks up from spinning, so that a signal is handled promptly.
SPIN_POLL_S = 0.1
#: Instruction messages remembered to recognise one that arrives by both routes.
SEEN_INSTRUCTIONS = 32


def _source_timestamp(info: Any) -> int | None:
    """Publication time of a message (publisher's system clock), if the middleware gives one."""
    if not info:
        return None
    value = info.get("source_timestamp") if isinstance(info, dict) else None
    return int(value) if value else None


def _message_key(msg: String, info: Any) -> tuple | None:
    """What identifies one published message, whichever subscription it reached.

    The writer's GID (where rclpy gives it), publication time and sequence
    number are the same for the copy a latched and a volatile subscription
    each receive, and differ for any two publications.
    """
    if not isinstance(info, dict) or not info.get("source_timestamp"):
        return None
    gid = info.get("publisher_gid")
    gid_bytes = bytes(gid.get("data", b"")) if isinstance(gid, dict) else None
    return (gid_bytes, int(info["source_timestamp"]), info.get("publication_sequence_number"),
            msg.data)


def _published_before(published_ns: int | None, episode_published_ns: int | None) -> bool:
    """Was a message published at ``published_ns`` shortly before the episode's instruction?"""
    if episode_published_ns is None or published_ns is None:
        return False
    return 0 < episode_published_ns - published_ns <= PUBLICATION_ORDER_BOUND_NS


def stamp_to_ns(stamp: Any) -> int:
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


# --------------------------------------------------------------------------
# The node.
# --------------------------------------------------------------------------
class ScorerNode(Node):
    """Scores the running episode on a timer and publishes progress and success.

    Built in the phases of a managed node, so ``ManagedScorerNode`` can run
    them as lifecycle transitions: ``_declare`` (parameters, health records,
    diagnostics), ``_configure`` (publishers, the model), ``_activate``
    (instruction and camera subscriptions, the reset service, the scoring
    timer), ``_deactivate`` and ``_cleanup``. This plain node runs the first
    three at construction and loads the model in the background.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._declare()
        self._configure()
        self._activate()
        topics = [c.topic for c in self._cameras]
        self.get_logger().info(
            f"scoring {len(topics)} camera(s) {topics} at {self.get_parameter('rate_hz').value} Hz "
            f"with model {self.get_parameter('model').value!r}"
        )

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
        # Publication time (publisher's clock) of the instruction that started
        # the episode; None when the episode started otherwise.
        self._episode_published_ns: int | None = None
        # The episode that ran before the current one (late frames may still join it).
        self._previous_episode: str | None = None
        self._scorer: VideoScorer | None = None
        self._model_state = ModelState.NOT_LOADED
        self._model_error = ErrorRecord()
        self._model_attempts = 0
        self._model_loaded_s = 0.0
        self._model_generation = 0  # bumps on every model-parameter change
        self._next_model_retry = 0.0
        self._retry_failed_loads = True  # a managed node is configured again instead
        self._episode_error = ErrorRecord()
        self._episode_event = ErrorRecord()
        self._last_instruction: str | None = None
        # Set while no episode runs because the last instruction was refused:
        # (monotonic time of the refusal, why). Frames are not scored meanwhile.
        self._refused_since: tuple[float, str] | None = None
        self._refused_instructions = 0
        self._seen_instructions: deque = deque(maxlen=SEEN_INSTRUCTIONS)
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

        self._qos = QoSWatch(
            lambda text: self.get_logger().warning(text),
            self._qos_peers,
        )
        self._reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._latched = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        self._diag_pub = self._watched_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, self._reliable)
        self._cameras = [CameraStats(topic=t, compressed=is_compressed_topic(t)) for t in topics]
        # Per camera: (arrival monotonic s, publication ns, message) of recent frames.
        self._recent: list[deque] = [deque() for _ in topics]
        self._camera_groups = [MutuallyExclusiveCallbackGroup() for _ in topics]
        self._instruction_group = MutuallyExclusiveCallbackGroup()
        self._tick_group = ReentrantCallbackGroup()

        # Diagnostics on the steady clock, so they keep coming when simulated time stops.
        self._diag_timer = self.create_timer(
            float(values["diagnostics_period_s"]),
            self._on_diagnostics,
            clock=Clock(clock_type=ClockType.STEADY_TIME),
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
        self._start_model_load("start-up")

    def _create_publishers(self) -> None:
        self._progress_pub = self._watched_publisher(TaskProgress, PROGRESS_TOPIC, self._reliable)
        self._success_pub = self._watched_publisher(EpisodeSuccess, SUCCESS_TOPIC, self._latched)
        # One per ended episode, latched: a late joiner gets the last verdict.
        self._result_pub = self._watched_publisher(EpisodeResult, RESULT_TOPIC, self._latched)
        # The progress picture: drawn on the scoring thread only while someone watches.
        self._image_pub = self._watched_publisher(
            Image, PROGRESS_IMAGE_TOPIC, QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE))

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
            LATCHED_WATCH_PERIOD_S, self._watch_latched_writers, callback_group=self._instruction_group,
            clock=Clock(clock_type=ClockType.STEADY_TIME))
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
            self._camera_subs.append(self.create_subscription(
                CompressedImage if stats.compressed else Image,
                stats.topic,
                lambda msg, info, i=index: self._on_image(i, msg, info),
                profile,
                callback_group=self._camera_groups[index],
                qos_overriding_options=QoSOverridingOptions.with_default_policies(),
                event_callbacks=SubscriptionEventCallbacks(incompatible_qos=self._qos.watch(
                    resolved, "subscription", profile,
                    f"Match the camera driver's QoS: e.g. "
                    f"qos_overrides.{resolved}.subscription.reliability:=best_effort "
                    f"(best effort matches every publisher).",
                )),
            ))
        # Scoring timer on the ROS clock.
        self._tick_timer = self._make_tick_timer(float(self.get_parameter("rate_hz").value))
        self._lifecycle_state = "active"
        instruction = str(self.get_parameter("instruction").value)
        if instruction.strip() and not self._runner.active:
            self._start_episode(instruction, "instruction parameter", new_task=True)

    def _instruction_subscription(self, latched: bool) -> Any:
        topic, resolved = self._instruction_topic
        profile = copy.copy(self._latched if latched else self._reliable)
        advice = (f"Publish the instruction with reliable QoS (the default; `ros2 topic pub "
                  f"{resolved} std_msgs/msg/String` with no QoS flags works).")
        return self.create_subscription(
            String, topic, self._on_instruction_msg, profile,
            callback_group=self._instruction_group,
            event_callbacks=SubscriptionEventCallbacks(incompatible_qos=self._qos.watch(
                resolved, "subscription", profile, advice,
                # The latched reader never matches a volatile writer; the volatile one serves it.
                ignore=frozenset({QoSPolicyKind.DURABILITY}) if latched else frozenset(),
            )),
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
            for recent in self._recent:
                recent.clear()

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

    def _destroy_publishers(self) -> None:
        for pub in (self._progress_pub, self._success_pub, self._result_pub, self._image_pub):
            if pub is not None:
                self.destroy_publisher(pub)
        self._progress_pub = self._success_pub = self._result_pub = self._image_pub = None

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
        with self._lock:
            self._model_generation += 1  # a load still running is stale when it ends
            had = self._scorer is not None
            self._scorer = None
            self._runner.set_scorer(None)
            self._model_state = ModelState.NOT_LOADED
        if had:
            import gc

            gc.collect()
            _free_accelerator_memory()
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
            with self._lock:
                self._model_generation += 1
            self._start_model_load("parameter change")
        if ("instruction" in names and str(values["instruction"]).strip()
                and self._lifecycle_state == "active"):
            self._start_episode(str(values["instruction"]), "instruction parameter", new_task=True)

    def _watched_publisher(self, msg_type: Any, topic: str, profile: QoSProfile) -> Any:
        resolved = self.resolve_topic_name(topic)
        return self.create_publisher(
            msg_type, topic, profile,
            event_callbacks=PublisherEventCallbacks(incompatible_qos=self._qos.watch(
                resolved, "publisher", profile,
                f"Subscribe to {resolved} with at most what it offers "
                f"(e.g. reliable or best_effort, and volatile durability unless it is latched).",
            )),
        )

    def _qos_peers(self, topic: str, side: str) -> list[Any]:
        """QoS profiles of the other side of ``topic`` (for the incompatible-QoS message)."""
        infos = (self.get_publishers_info_by_topic(topic) if side == "subscription"
                 else self.get_subscriptions_info_by_topic(topic))
        return [info.qos_profile for info in infos if info.node_name != self.get_name()]

    def _make_tick_timer(self, rate_hz: float) -> Any:
        return self.create_timer(1.0 / rate_hz, self._on_tick, callback_group=self._tick_group)

    # -- model loading -----------------------------------------------------------
    def _start_model_load(self, reason: str) -> None:
        """Load the model on a background thread unless a load is running."""
        with self._lock:
            if self._model_state == ModelState.LOADING:
                return  # the loader re-checks the generation when it finishes
            self._model_state = ModelState.LOADING
            self._model_attempts += 1
            generation = self._model_generation
        try:
            values = self._param_values()
            config = scorer_config_from(values)
        except ValueError as exc:
            self._model_failed(f"invalid model configuration: {exc}", generation)
            return
        self.get_logger().info(f"loading model {config.model!r} ({reason})")
        threading.Thread(
            target=self._load_model, args=(config, generation, values), name="model-load", daemon=True
        ).start()

    def _log_rig_check(self, config: ScorerConfig, values: dict[str, Any]) -> None:
        """Log the verdict `topreward check` gives this node's rig (never fatal)."""
        try:
            from topreward_ros.scoring.fit import Rig, check_rig

            rig = Rig(config, cameras=len(camera_topics_from(values)), max_frames=int(values["max_frames"]),
                      rate_hz=float(values["rate_hz"]))
            report = check_rig(rig)
        except Exception as exc:  # an unknown model, no configuration at hand: loading says more
            self.get_logger().info(f"rig check skipped: {type(exc).__name__}: {exc}")
            return
        episode = report.episode
        log = self.get_logger().warning if report.fits is False else self.get_logger().info
        log(f"rig check: {report.verdict()} Samples of {episode.frame_size[0]}x{episode.frame_size[1]}, "
            f"{episode.video_tokens_per_sample:g} video tokens each; at max_frames {rig.max_frames}: "
            f"{episode.prompt_tokens_at_max} prompt tokens, KV cache {episode.kv_bytes_at_max / 2 ** 20:.0f} MiB; "
            f"thinning from {episode.thinning_starts_s:.0f} s (`topreward check --time` for tick costs)")

    def _load_model(self, config: ScorerConfig, generation: int, values: dict[str, Any] | None = None) -> None:
        from topreward_ros.scoring.errors import ModelLoadError

        if values is not None:
            self._log_rig_check(config, values)
        started = time.monotonic()
        try:
            from topreward_ros.scoring import load_scorer

            scorer = load_scorer(config)
        except ModelLoadError as exc:
            self._model_failed(f"model {config.model!r} failed to load: {exc}", generation)
            return
        except Exception as exc:  # out of memory, a broken checkpoint, ...
            kind = "ran out of memory while loading" if _is_oom(exc) else "failed to load"
            self._model_failed(
                f"model {config.model!r} {kind}: {type(exc).__name__}: {exc}", generation
            )
            return
        with self._lock:
            stale = generation != self._model_generation
            if not stale:
                had_scorer = self._scorer is not None
                self._scorer = scorer
                self._runner.set_scorer(scorer)
                self._model_state = ModelState.LOADED
                self._model_loaded_s = time.monotonic() - started
        if stale:
            self._reload_after_change()
            return
        self.get_logger().info(
            f"model {scorer.model_id!r} loaded in {time.monotonic() - started:.1f} s"
        )
        if had_scorer and self._runner.active and self._runner.instruction:
            # Scores of two models are not comparable: a new episode.
            self._start_episode(self._runner.instruction, "model changed", end_reason=END_MODEL_CHANGED)

    def _model_failed(self, message: str, generation: int) -> None:
        with self._lock:
            stale = generation != self._model_generation
            self._model_state = ModelState.FAILED
            self._model_error.record(message)
            self._next_model_retry = time.monotonic() + float(
                self.get_parameter("model_retry_s").value
            )
        if stale:
            self._reload_after_change()
            return
        then = "still serving, will retry" if self._retry_failed_loads else "configure again to retry"
        self.get_logger().error(f"{message}; {then}", throttle_duration_sec=10.0)

    def _reload_after_change(self) -> None:
        with self._lock:
            self._model_state = ModelState.NOT_LOADED
        self._start_model_load("parameter change")

    # -- episodes ----------------------------------------------------------------
    def _start_episode(self, instruction: str, reason: str, published_ns: int | None = None,
                       new_task: bool = False, end_reason: str = END_NEW_INSTRUCTION) -> str | None:
        """Start a new episode, or refuse a bad instruction (logged, reported).

        ``published_ns``: publication time of the instruction message. Camera
        frames published before it are kept out of the new episode, and those
        published after it but handled before it (remembered for
        ``REORDER_WINDOW_S``) are moved into it. ``new_task``: the instruction
        comes from a message or the parameter; refusing it ends the running
        episode, as ``topreward bag`` does, so frames of a task the node cannot
        score never count toward the previous task's success. ``end_reason``:
        why the running episode ends (its EpisodeResult's code).
        """
        with self._frame_lock:
            try:
                # Control tokens in the text would change the prompt's structure.
                scorer = self._scorer
                if scorer is not None:
                    scorer.validate_instruction(instruction)
                else:
                    validate_instruction(instruction)
            except ValueError as exc:
                self._refuse(instruction, f"{reason}: {exc}", new_task)
                return None
            self._episode_published_ns = published_ns
            self._previous_episode = self._runner.episode_id
            episode_id = self._runner.start(instruction, end_reason=end_reason, end_detail=reason)
            for stats in self._cameras:
                stats.last_stamp_ns = None
            moved = self._reoffer_after(published_ns) if published_ns is not None else 0
            refused, self._refused_since = self._refused_since, None
        with self._lock:
            self._last_instruction = instruction
            self._last_result = None
            self._episode_event.record(f"episode {episode_id} started ({reason})")
        note = f", {moved} frame(s) published after the instruction moved into it" if moved else ""
        if refused is not None:
            note += (f"; nothing was scored for {time.monotonic() - refused[0]:.1f} s "
                     f"after a refused instruction")
        self.get_logger().info(f"episode {episode_id} started ({reason}): {instruction!r}{note}")
        return episode_id

    def _refuse(self, instruction: str, text: str, new_task: bool) -> None:
        """A refused instruction: report it; a new task's refusal ends the running episode."""
        self._refused_instructions += 1
        if new_task:
            ended = self._runner.episode_id
            self._runner.stop(END_REFUSED, text)
            self._episode_published_ns = None
            self._last_instruction = instruction  # a reset asks for it again, and is refused too
            if self._refused_since is None:
                self._refused_since = (time.monotonic(), text)
            if ended:
                text += f"; episode {ended} ended, nothing is scored until a valid instruction arrives"
        self._episode_error.record(text)
        self.get_logger().error(text, throttle_duration_sec=5.0)

    def _reoffer_after(self, published_ns: int) -> int:
        """Hand the new episode the remembered frames published at or after ``published_ns``.

        They were judged against the episode before, because their callbacks
        ran before the instruction's; by publication order they are the new
        episode's. Callers hold ``_frame_lock``.
        """
        moved = 0
        for camera, recent in enumerate(self._recent):
            for _, message_published_ns, msg in list(recent):
                if message_published_ns >= published_ns:
                    self._offer(camera, msg, message_published_ns)
                    self._cameras[camera].reordered += 1
                    moved += 1
        return moved

    def _on_instruction_msg(self, msg: String, info: Any) -> None:
        # Two parameters, no default: rclpy passes the message info (with the
        # publication time) only to a callback that cannot be called with one.
        key = _message_key(msg, info)
        if key is not None:
            if key in self._seen_instructions:
                return  # the same message, by the other subscription
            self._seen_instructions.append(key)
        if not msg.data.strip():
            message = "empty instruction received on the instruction topic: ignored, episode unchanged"
            self._episode_error.record(message)
            self.get_logger().error(message, throttle_duration_sec=5.0)
            return
        self._start_episode(msg.data, "instruction message", published_ns=_source_timestamp(info),
                            new_task=True)

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            failed = self._model_state == ModelState.FAILED
        if failed:
            self._start_model_load("reset")
        instruction = self._runner.instruction or self._last_instruction
        if not instruction:
            response.success = False
            response.message = (
                f"no instruction yet: publish one on {self.resolve_topic_name(INSTRUCTION_TOPIC)} "
                "or set the 'instruction' parameter"
            )
            return response
        episode_id = self._start_episode(instruction, "reset service", end_reason=END_RESET)
        response.success = episode_id is not None
        response.message = episode_id or "could not start an episode"
        return response

    def _on_clock_jump(self, jump: TimeJump) -> None:
        """Time went backwards (a looping bag, a restarted simulator): a new episode.

        The window only accepts frames newer than those it holds, so the old
        episode could not continue with the replayed frames anyway.
        """
        if jump.clock_change in (ClockChange.ROS_TIME_ACTIVATED, ClockChange.ROS_TIME_DEACTIVATED):
            message = f"clock source changed ({jump.clock_change.name})"
        else:
            message = f"ROS clock jumped back by {-jump.delta.nanoseconds / NS_PER_S:.3f} s"
        self._episode_error.record(message)
        self.get_logger().warning(message, throttle_duration_sec=5.0)
        if self._runner.active and self._runner.instruction:
            self._start_episode(self._runner.instruction, message, end_reason=END_CLOCK_JUMP)

    # -- frames ------------------------------------------------------------------
    def _on_image(self, camera: int, msg: Image | CompressedImage, info: Any) -> None:
        """Cheap unless the frame is needed: never converts a frame that will be dropped."""
        stats = self._cameras[camera]
        stats.received += 1
        now = time.monotonic()
        stats.arrivals.append(now)
        published_ns = _source_timestamp(info)
        with self._frame_lock:
            if published_ns is not None:
                recent = self._recent[camera]
                recent.append((now, published_ns, msg))
                while recent and (len(recent) > REORDER_MAX_MESSAGES
                                  or now - recent[0][0] > REORDER_WINDOW_S):
                    recent.popleft()
            self._offer(camera, msg, published_ns)

    def _offer(self, camera: int, msg: Image | CompressedImage, published_ns: int | None) -> None:
        """Judge one frame against the running episode (callers hold ``_frame_lock``)."""
        stats = self._cameras[camera]
        if _published_before(published_ns, self._episode_published_ns):
            # Published before the instruction that started this episode, handled
            # after it (topics are not delivered in order with each other): the
            # frame belongs to the episode before, as in the bag's log order. It
            # still joins that episode if its result is not made yet.
            added = AddResult.SKIPPED
            if self._previous_episode is not None:
                added = self._runner.add_to_ended(
                    self._previous_episode, camera, stamp_to_ns(msg.header.stamp),
                    CameraView(msg, self._settings.view_size), msg.header.frame_id)
            if added is AddResult.KEPT:
                stats.kept += 1
            else:
                stats.not_needed += 1
            return
        stamp_ns = stamp_to_ns(msg.header.stamp)
        previous = stats.last_stamp_ns
        # The primary camera cuts episodes by the offline sources' own rule.
        cut = stamp_cut(previous, stamp_ns, float(self.get_parameter("stamp_jump_restart_s").value),
                        float(self.get_parameter("stamp_gap_restart_s").value)) if camera == 0 else None
        if previous is not None and stamp_ns < previous:
            stats.stale += 1
            stats.error.record(f"frame stamp went back by {(previous - stamp_ns) / NS_PER_S:.3f} s")
            if cut is not None and self._runner.instruction:
                self._start_episode(self._runner.instruction, cut.reason, end_reason=END_STAMP_CUT)
        elif previous is not None and stamp_ns == previous:
            # A driver publishing zero or constant stamps: such frames are never
            # sampled (the schedule reads time from stamps), so say so.
            stats.stamps_repeated += 1
            text = f"frame stamp does not increase ({stamp_ns} ns repeated): frame not sampled"
            stats.error.record(text)
            self.get_logger().warning(f"{stats.topic}: {text}", throttle_duration_sec=5.0)
        elif cut is not None and self._runner.instruction:
            # Zero stamps turned real, or a long pause: one window must never
            # span it (the model would see samples years apart).
            stats.stamp_gaps += 1
            stats.error.record(cut.reason)
            self.get_logger().warning(f"{stats.topic}: {cut.reason}", throttle_duration_sec=5.0)
            self._start_episode(self._runner.instruction, cut.reason, end_reason=END_STAMP_CUT)
        stats.last_stamp_ns = stamp_ns
        if not self._runner.wants(camera, stamp_ns):
            stats.not_needed += 1
            return
        # Stored as is: the scoring thread converts it when its sample is composed.
        view = CameraView(msg, self._settings.view_size)
        result = self._runner.add(camera, stamp_ns, view, msg.header.frame_id)
        if result is AddResult.KEPT:
            stats.kept += 1
        elif result is AddResult.STALE:
            stats.stale += 1
        else:
            stats.not_needed += 1

    def _report_bad_frames(self) -> None:
        """Count and report the kept frames the scoring thread could not convert."""
        for bad in self._runner.take_bad_frames():
            stats = self._cameras[bad.camera]
            stats.bad += 1
            text = f"bad image on {stats.topic}: {bad.error}"
            stats.error.record(text)
            self.get_logger().error(text, throttle_duration_sec=5.0)

    # -- scoring -----------------------------------------------------------------
    def _on_tick(self) -> None:
        if not self._tick_lock.acquire(blocking=False):
            self._scoring.skipped_ticks += 1
            return
        try:
            self._tick()
            # After the live score, which keeps its timing: the verdicts of episodes that ended.
            self._publish_ended()
        finally:
            self._scoring.running_since = None
            self._report_bad_frames()
            self._tick_lock.release()

    def _tick(self) -> None:
        if self._lifecycle_state != "active":
            return
        with self._lock:
            ready = self._scorer is not None and self._model_state == ModelState.LOADED
        if not ready or not self._runner.active:
            self._scoring.idle_ticks += 1
            if self._runner.active:
                self._runner.compose()  # hold small views, not camera images, until a model is ready
            return
        self._scoring.ticks += 1
        self._scoring.running_since = time.monotonic()
        try:
            result = self._runner.tick()
        except InstructionError as exc:  # cannot score this episode at all: end it
            text = f"instruction refused by the model: {exc}"
            self._scoring.error.record(text)
            with self._frame_lock:
                self._refuse(self._runner.instruction or "", text, new_task=True)
            return
        except Exception as exc:  # keep serving whatever the model does
            if _is_oom(exc):
                self._scoring.ooms += 1
                text = f"out of memory during a tick, skipped: {exc}"
                _free_accelerator_memory()
            else:
                text = f"tick failed, skipped: {type(exc).__name__}: {exc}"
            self._scoring.error.record(text)
            self.get_logger().error(text, throttle_duration_sec=5.0)
            return
        if result is None:
            self._scoring.idle_ticks += 1
            return
        t0 = time.perf_counter()
        self._publish(result)
        timings = dict(result.timings)
        timings["publish_s"] = time.perf_counter() - t0
        if self._draw_picture(result):
            timings["picture_s"] = time.perf_counter() - t0 - timings["publish_s"]
        self._scoring.last_timings = timings
        self._scoring.latencies.append(result.latency_s)
        self._scoring.published += 1
        with self._lock:
            self._last_result = result

    def _publish_ended(self, unscored: str | None = None) -> None:
        """Judge the episodes that ended (final samples scored once) and publish their results.

        Scoring thread, under the node's tick lock (``unscored``: not, and no score is made).
        """
        if self._runner.ended_pending == 0:
            return
        for summary in self._runner.finish_ended(unscored):
            if self._result_pub is not None:
                self._result_pub.publish(episode_result(summary, self._messages))
            self._results_published += 1
            with self._lock:
                self._last_summary = summary
            verdict = "success" if summary.success else "no success"
            unscored = ("" if summary.final_frames_scored
                        else f"; last frames not scored: {summary.not_scored_reason}")
            text = (f"episode {summary.episode_id} ended ({summary.end_reason}): {verdict}, "
                    f"{summary.ticks} score(s), threshold {summary.threshold:.3f}{unscored}")
            # Two call sites: rclpy refuses one call site logging at two severities.
            if summary.final_frames_scored:
                self.get_logger().info(text)
            else:
                self.get_logger().warning(text)

    def _publish(self, result: TickResult) -> None:
        self._progress_pub.publish(task_progress(result, self._messages))
        if result.success_fired and result.episode_id not in self._success_sent:
            self._success_sent.add(result.episode_id)
            self._success_pub.publish(
                episode_success(result, self._settings.success_consecutive, self._messages))
            self.get_logger().info(
                f"episode {result.episode_id}: success (score {result.success_score:.3f} > "
                f"{result.success_threshold:.3f})"
            )

    def _draw_picture(self, result: TickResult) -> bool:
        """Publish the progress picture of this tick, if anyone subscribes (scoring thread)."""
        if result.episode_id != self._picture_episode:
            self._picture_episode, self._picture_progress = result.episode_id, []
        self._picture_progress.append(result.progress)
        if self._image_pub.get_subscription_count() == 0:
            return False
        view = self._runner.sample_image(result.episode_id, result.stamp_ns)
        picture = progress_picture.render(
            view, self._picture_progress, success=result.success,
            success_score=result.success_score, threshold=result.success_threshold,
            view_height=self._settings.view_size)
        msg = Image()
        msg.header.stamp = self._messages.stamp(result.stamp_ns)
        msg.header.frame_id = result.frame_id
        msg.height, msg.width = picture.shape[:2]
        msg.encoding, msg.is_bigendian, msg.step = "rgb8", 0, picture.shape[1] * 3
        msg.data = picture.tobytes()
        self._image_pub.publish(msg)
        return True

    # -- diagnostics -------------------------------------------------------------
    def _on_diagnostics(self) -> None:
        with self._lock:
            due = (
                self._retry_failed_loads
                and self._model_state == ModelState.FAILED
                and time.monotonic() >= self._next_model_retry
            )
        if due:
            self._start_model_load("periodic retry")
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = self.diagnostic_statuses()
        self._diag_pub.publish(array)

    def diagnostic_statuses(self) -> list[DiagnosticStatus]:
        """The node's health as DiagnosticStatus entries (model, cameras, episode, scoring)."""
        now = time.monotonic()
        prefix = self.get_name()
        return [
            self._model_status(prefix, now),
            *(self._camera_status(prefix, i, s, now) for i, s in enumerate(self._cameras)),
            self._episode_status(prefix, now),
            self._scoring_status(prefix, now),
            qos_status(prefix, self._qos.counts(), self._qos.last_policies()),
        ]

    def _model_status(self, prefix: str, now: float) -> DiagnosticStatus:
        with self._lock:
            state, error, scorer = self._model_state, self._model_error, self._scorer
            attempts, retry_in = self._model_attempts, self._next_model_retry - now
        return model_status(
            prefix,
            model=str(self.get_parameter("model").value),
            state=state,
            error=error,
            attempts=attempts,
            loaded_model_id=scorer.model_id if scorer is not None else None,
            load_time_s=self._model_loaded_s,
            retry_in_s=retry_in,
        )

    def _camera_status(self, prefix: str, index: int, stats: CameraStats, now: float) -> DiagnosticStatus:
        return camera_status(
            prefix, index, stats, now,
            resolved_topic=self.resolve_topic_name(stats.topic),
            stall_warn_s=float(self.get_parameter("camera_stall_warn_s").value),
            stall_error_s=float(self.get_parameter("camera_stall_error_s").value),
            ros_now_ns=self.get_clock().now().nanoseconds,
        )

    def _episode_status(self, prefix: str, now: float) -> DiagnosticStatus:
        runner = self._runner
        with self._lock:
            result, last_ended = self._last_result, self._last_summary
        return episode_status(
            prefix, now,
            episode_id=runner.episode_id,
            instruction=runner.instruction,
            window=runner.window,
            max_frames=self._settings.max_frames,
            event=self._episode_event,
            error=self._episode_error,
            last_result=result,
            secondary_topics=[c.topic for c in self._cameras[1:]],
            refused_since=self._refused_since,
            refused_instructions=self._refused_instructions,
            threshold=self._settings.threshold_for(runner.instruction),
            per_task_threshold=self._settings.thresholds.is_per_task(runner.instruction),
            last_ended=last_ended,
            results_published=self._results_published,
        )

    def _scoring_status(self, prefix: str, now: float) -> DiagnosticStatus:
        return scoring_status(
            prefix, now, self._scoring,
            rate_hz=float(self.get_parameter("rate_hz").value),
            primary=self._cameras[0],
            episode_active=self._runner.active,
            stall_warn_s=float(self.get_parameter("camera_stall_warn_s").value),
            last_result=self._last_result,
            lifecycle_state=self._lifecycle_state,
        )


class ManagedScorerNode(LifecycleNodeMixin, ScorerNode):
    """The scorer as a managed (lifecycle) node: configure loads, activate scores, deactivate frees.

    * configure: the parameters are checked and the model is loaded before the
      transition returns; a model that cannot load fails the transition with
      the reason (on /diagnostics and in the log) and leaves the node
      unconfigured, ready to be configured again;
    * activate: instruction and camera subscriptions, the reset service and
      the scoring timer; a model released on deactivate is loaded again first;
    * deactivate: no frames are taken and nothing is scored; the episode (its
      frames, its success latch) is kept and goes on at the next activate.
      With ``release_model_on_deactivate`` the model is freed too (and the
      CUDA cache emptied), for a GPU that is needed elsewhere meanwhile;
    * cleanup and shutdown: publishers, episode and model are freed.
    """

    def __init__(self, **kwargs: Any) -> None:
        Node.__init__(self, NODE_NAME, **kwargs)
        # The transitions get a group of their own: a configure that loads a
        # model for a minute does not hold up diagnostics or parameter calls.
        LifecycleNodeMixin.__init__(self, callback_group=MutuallyExclusiveCallbackGroup())
        self._declare()
        self._retry_failed_loads = False
        self.get_logger().info("managed scorer waiting to be configured")

    def _load_now(self, reason: str) -> str | None:
        """Load the model before returning; the error text if it cannot be loaded."""
        with self._lock:
            self._model_generation += 1
            generation = self._model_generation
            self._model_state = ModelState.LOADING
            self._model_attempts += 1
        try:
            values = self._param_values()
            config = scorer_config_from(values)
        except ValueError as exc:
            self._model_failed(f"invalid model configuration: {exc}", generation)
            return self._model_error.message
        self.get_logger().info(f"loading model {config.model!r} ({reason})")
        self._load_model(config, generation, values)
        with self._lock:
            return None if self._model_state == ModelState.LOADED else self._model_error.message

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._create_publishers()
        error = self._load_now("configure")
        if error is not None:
            self.get_logger().error(f"configure failed, node stays unconfigured: {error}")
            self._destroy_publishers()  # the model's error stays on /diagnostics
            return TransitionCallbackReturn.FAILURE
        self._lifecycle_state = "inactive"
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            loaded = self._scorer is not None
        if not loaded:
            error = self._load_now("activate")
            if error is not None:
                self.get_logger().error(f"activate failed, node stays inactive: {error}")
                return TransitionCallbackReturn.FAILURE
        self._activate()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        if bool(self.get_parameter("release_model_on_deactivate").value):
            self._release_model()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS  # back to unconfigured


def _is_oom(exc: BaseException) -> bool:
    """A torch out-of-memory error, on GPU or CPU."""
    if type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return isinstance(exc, (RuntimeError, MemoryError)) and (
        isinstance(exc, MemoryError) or "out of memory" in text or "can't allocate memory" in text
    )


def _free_accelerator_memory() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # best effort only
        pass


def main(args: list[str] | None = None) -> NoReturn:
    """``scorer_node``: the plain node, scoring from start-up."""
    run(ScorerNode, args)


def main_managed(args: list[str] | None = None) -> NoReturn:
    """``managed_scorer_node``: the lifecycle node, idle until configured and activated."""
    run(ManagedScorerNode, args)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(node_class: type[ScorerNode], args: list[str] | None = None) -> NoReturn:
    """Run the node until Ctrl-C or SIGTERM, then end the process with its exit code.

    Does not return once the node ran: after the node is destroyed and the
    context shut down, ``exit_now`` ends the process at once so it stays inside
    ``ros2 launch``'s 5 s grace period (see ``topreward_ros.process_exit``).

    SIGINT and SIGTERM are handled here, not by rclpy (whose handlers shut
    the ROS context down at once): the node is destroyed while its context
    still runs, so the running episode's EpisodeResult is published before
    the node leaves the graph.
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    node: ScorerNode | None = None
    code = 0
    try:
        node = node_class()
        executor = MultiThreadedExecutor(num_threads=max(4, len(node._cameras) + 3))
        executor.add_node(node)
        while rclpy.ok():  # the signal handler runs between two waits
            executor.spin_once(timeout_sec=SPIN_POLL_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, ParameterException) as exc:  # a bad configuration, named in the message
        rclpy.logging.get_logger(NODE_NAME).fatal(f"invalid configuration: {exc}")
        code = 2
    finally:
        # Shutting down: a second Ctrl-C must not break off the clean-up. A terminal
        # sends SIGINT to the whole process group and ``ros2 launch`` forwards its
        # own, so a node under ``ros2 launch`` gets two.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # launch's escalation ends the process
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    exit_now(code)


if __name__ == "__main__":
    import sys

    sys.exit(main())
