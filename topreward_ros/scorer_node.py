"""The live scorer: camera streams + an instruction in, task progress out.

``ScorerNode`` is a thin ROS shell around ``topreward_ros.episode.EpisodeRunner``
(the same per-episode logic the offline bag tools run), so everything here is
about ROS: parameters, QoS, callbacks, threads, time and health reporting.

Threads and callback groups (on a ``MultiThreadedExecutor``):

* one mutually exclusive group per camera: a camera's frames are handled in
  arrival order (the window needs stamps in order) while cameras run in
  parallel. A callback only asks the runner whether the frame's stamp is
  needed (``wants``), and converts and stores it only if so, so frames the
  2 fps schedule does not use cost a few microseconds;
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
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

import rclpy
from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockChange, ClockType, JumpThreshold, TimeJump
from rclpy.duration import Duration
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from topreward_ros.episode import EpisodeRunner, EpisodeSettings, TickResult
from topreward_ros.images import ImageError, to_rgb
from topreward_ros.msg import EpisodeSuccess, TaskProgress
from topreward_ros.process_exit import exit_now
from topreward_ros.scoring.config import DEFAULT_MODEL, DEFAULT_SUCCESS_THRESHOLD, ScorerConfig
from topreward_ros.scoring.errors import InstructionError
from topreward_ros.scoring.prompt import validate_instruction
from topreward_ros.window import AddResult

if TYPE_CHECKING:
    from topreward_ros.scoring.backend import VideoScorer

NS_PER_S = 1_000_000_000

NODE_NAME = "scorer_node"
PROGRESS_TOPIC = "task_progress"
SUCCESS_TOPIC = "episode_success"
INSTRUCTION_TOPIC = "instruction"
RESET_SERVICE = "~/reset"
DIAGNOSTICS_TOPIC = "/diagnostics"

#: How long an error keeps a diagnostic status at WARN/ERROR after it happened.
ERROR_HOLD_S = 10.0
#: Frames remembered per camera for the arrival-rate estimate.
RATE_WINDOW = 64


# --------------------------------------------------------------------------
# Parameters: one table, used to declare them and to check the docs/config.
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class ParamSpec:
    """One node parameter: default, documentation, range and mutability."""

    name: str
    default: Any
    description: str
    runtime: bool = True
    min_value: float | int | None = None
    max_value: float | int | None = None

    def descriptor(self) -> ParameterDescriptor:
        desc = ParameterDescriptor(
            name=self.name,
            description=self.description,
            read_only=not self.runtime,
        )
        if self.min_value is not None and self.max_value is not None:
            if isinstance(self.default, bool):
                pass
            elif isinstance(self.default, int):
                desc.integer_range = [
                    IntegerRange(from_value=int(self.min_value), to_value=int(self.max_value), step=1)
                ]
            elif isinstance(self.default, float):
                desc.floating_point_range = [
                    FloatingPointRange(
                        from_value=float(self.min_value), to_value=float(self.max_value), step=0.0
                    )
                ]
        return desc


#: Every parameter of the node. ``runtime=False`` ones are read-only after
#: start-up. Keep docs/node.md and config/scorer.yaml in step (a test checks).
PARAMETERS: tuple[ParamSpec, ...] = (
    # Model.
    ParamSpec("model", DEFAULT_MODEL,
              "Hub id or local directory of the video VLM. Changing it reloads the model and "
              "starts a new episode."),
    ParamSpec("device", "auto", "auto | cpu | cuda | cuda:N (auto: first GPU if any). Reloads."),
    ParamSpec("dtype", "auto", "auto | bfloat16 | float16 | float32 (auto: bf16 on GPU, fp32 on CPU). "
              "Reloads."),
    ParamSpec("attn_implementation", "sdpa", "sdpa | eager | flash_attention_2. Reloads."),
    ParamSpec("local_files_only", False, "Never contact the model hub. Reloads."),
    ParamSpec("cache_dir", "", "Model cache directory ('' = the standard Hugging Face cache). Reloads."),
    ParamSpec("torch_threads", 0, "CPU threads for torch (0 = torch's default).", False, 0, 256),
    ParamSpec("model_retry_s", 30.0, "Seconds between attempts to load a model that failed to load.",
              True, 1.0, 86400.0),
    # Inputs.
    ParamSpec("camera_topics", ["camera/image_raw"],
              "Camera topics; the first drives the sampling schedule. A topic whose last name "
              "component is 'compressed' is subscribed as sensor_msgs/CompressedImage, any other "
              "as sensor_msgs/Image.", False),
    ParamSpec("instruction", "",
              "Task instruction; setting it (at start-up or at run time) starts a new episode, "
              "like a message on the instruction topic."),
    # Sampling and window.
    ParamSpec("sample_fps", 2.0, "Frames per second of capture time the model sees (paper: 2). "
              "Changing it restarts the episode's window.", True, 0.1, 30.0),
    ParamSpec("max_frames", 256, "Most sampled frames kept per episode; when full, every other frame "
              "is dropped (the first is always kept) and sampling halves. Restarts the window.",
              True, 2, 4096),
    ParamSpec("sync_tolerance_s", 0.05, "Largest stamp difference when pairing other cameras' frames "
              "with the first camera's. Restarts the window.", True, 0.0, 1.0),
    ParamSpec("view_size", 244, "Side in pixels of the square view each camera frame is resized to "
              "(views of several cameras are placed side by side).", False, 32, 1024),
    # Scoring.
    ParamSpec("rate_hz", 1.0, "Scoring ticks per second of ROS time (a tick that comes due while "
              "the previous one runs is skipped and counted).", True, 0.01, 30.0),
    ParamSpec("success_threshold", DEFAULT_SUCCESS_THRESHOLD,
              "Success when the success score (mean raw log p(' True') of the last success_window "
              "scores, nats) exceeds this. Must be calibrated per model and setup.",
              True, -1.0e12, 0.0),
    ParamSpec("success_window", 3, "Latest scores averaged into the success score.", True, 1, 100),
    ParamSpec("success_consecutive", 2, "Consecutive scores above threshold before success fires "
              "(once per episode).", True, 1, 100),
    # Health.
    ParamSpec("camera_stall_warn_s", 1.0, "Seconds without a frame before a camera is reported WARN.",
              True, 0.05, 3600.0),
    ParamSpec("camera_stall_error_s", 5.0, "Seconds without a frame before a camera is reported ERROR.",
              True, 0.05, 3600.0),
    ParamSpec("stamp_jump_restart_s", 1.0, "A first-camera frame stamped this many seconds before "
              "the previous one (a looping bag, a restarted driver) starts a new episode with the same "
              "instruction.", True, 0.0, 3600.0),
    ParamSpec("diagnostics_period_s", 1.0, "Seconds (wall clock) between /diagnostics messages.",
              False, 0.1, 60.0),
)
PARAM_BY_NAME = {p.name: p for p in PARAMETERS}
#: Parameters whose change needs the model to be loaded again.
MODEL_PARAMS = frozenset(
    {"model", "device", "dtype", "attn_implementation", "local_files_only", "cache_dir"}
)
EPISODE_PARAMS = frozenset(
    {"sample_fps", "max_frames", "sync_tolerance_s", "view_size", "success_threshold",
     "success_window", "success_consecutive"}
)


def is_compressed_topic(topic: str) -> bool:
    """image_transport naming: ``.../compressed`` carries CompressedImage."""
    return topic.rstrip("/").rsplit("/", 1)[-1] == "compressed"


#: Frames published up to this long before an episode's instruction are taken
#: as belonging to the episode before (a busy node can hold a backlog of
#: seconds). Larger gaps are read as publishers' clocks that disagree (machines
#: without time sync), and then nothing is refused.
PUBLICATION_ORDER_BOUND_NS = 10_000_000_000


def _source_timestamp(info: Any) -> int | None:
    """Publication time of a message (publisher's system clock), if the middleware gives one."""
    if not info:
        return None
    value = info.get("source_timestamp") if isinstance(info, dict) else None
    return int(value) if value else None


def _published_before(info: Any, episode_published_ns: int | None) -> bool:
    """Was this message published shortly before the episode's instruction?"""
    if episode_published_ns is None:
        return False
    published = _source_timestamp(info)
    if published is None:
        return False
    return 0 < episode_published_ns - published <= PUBLICATION_ORDER_BOUND_NS


def stamp_to_ns(stamp: Any) -> int:
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> TimeMsg:
    sec, nanosec = divmod(int(ns), NS_PER_S)
    return TimeMsg(sec=sec, nanosec=nanosec)


def episode_settings_from(values: dict[str, Any]) -> EpisodeSettings:
    """EpisodeSettings from parameter values (raises ValueError naming a bad one)."""
    return EpisodeSettings(
        sample_fps=float(values["sample_fps"]),
        max_frames=int(values["max_frames"]),
        sync_tolerance_s=float(values["sync_tolerance_s"]),
        view_size=int(values["view_size"]),
        success_threshold=float(values["success_threshold"]),
        success_window=int(values["success_window"]),
        success_consecutive=int(values["success_consecutive"]),
    )


def scorer_config_from(values: dict[str, Any]) -> ScorerConfig:
    """ScorerConfig from parameter values (raises ValueError naming a bad one)."""
    threads = int(values["torch_threads"])
    return ScorerConfig(
        model=str(values["model"]),
        device=str(values["device"]),
        dtype=str(values["dtype"]),
        attn_implementation=str(values["attn_implementation"]),
        local_files_only=bool(values["local_files_only"]),
        cache_dir=str(values["cache_dir"]) or None,
        sample_fps=float(values["sample_fps"]),
        view_size=int(values["view_size"]),
        success_window=int(values["success_window"]),
        success_threshold=float(values["success_threshold"]),
        torch_threads=threads if threads > 0 else None,
    )


# --------------------------------------------------------------------------
# Health bookkeeping (plain data, reported by the diagnostics timer).
# --------------------------------------------------------------------------
@dataclass
class ErrorRecord:
    """The last error of one concern, with when it happened (monotonic s)."""

    message: str = ""
    at: float | None = None
    count: int = 0

    def record(self, message: str) -> None:
        self.message, self.at = message, time.monotonic()
        self.count += 1

    def recent(self, now: float, hold_s: float = ERROR_HOLD_S) -> bool:
        return self.at is not None and now - self.at <= hold_s


@dataclass
class CameraStats:
    """Per-camera counters; updated only by that camera's callback group."""

    topic: str
    compressed: bool
    received: int = 0
    kept: int = 0
    not_needed: int = 0
    bad: int = 0
    stale: int = 0
    arrivals: deque = field(default_factory=lambda: deque(maxlen=RATE_WINDOW))
    last_stamp_ns: int | None = None
    error: ErrorRecord = field(default_factory=ErrorRecord)
    created_at: float = field(default_factory=time.monotonic)

    def rate_hz(self, now: float) -> float:
        """Arrival rate over the remembered frames, 0 when stalled."""
        if len(self.arrivals) < 2:
            return 0.0
        span = now - self.arrivals[0]
        return (len(self.arrivals) - 1) / span if span > 0 else 0.0


@dataclass
class ScoringStats:
    ticks: int = 0
    published: int = 0
    skipped_ticks: int = 0
    idle_ticks: int = 0
    ooms: int = 0
    latencies: deque = field(default_factory=lambda: deque(maxlen=50))
    last_timings: dict[str, float] = field(default_factory=dict)
    error: ErrorRecord = field(default_factory=ErrorRecord)


class ModelState:
    NOT_LOADED = "not loaded"
    LOADING = "loading"
    LOADED = "loaded"
    FAILED = "failed"


# --------------------------------------------------------------------------
# The node.
# --------------------------------------------------------------------------
class ScorerNode(Node):
    """Scores the running episode on a timer and publishes progress and success."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        for spec in PARAMETERS:
            self.declare_parameter(spec.name, spec.default, spec.descriptor())
        values = self._param_values()
        # Fail at start-up, with the offending value named, on a bad config.
        self._settings = episode_settings_from(values)
        scorer_config_from(values)
        if values["camera_stall_error_s"] < values["camera_stall_warn_s"]:
            raise ValueError(
                f"camera_stall_error_s ({values['camera_stall_error_s']}) must be >= "
                f"camera_stall_warn_s ({values['camera_stall_warn_s']})"
            )
        topics = [str(t) for t in values["camera_topics"] if str(t).strip()]
        if not topics:
            raise ValueError("camera_topics is empty: give at least one camera topic")
        if len(set(topics)) != len(topics):
            raise ValueError(f"camera_topics lists a topic twice: {topics}")

        self._lock = threading.Lock()  # guards the health records below
        self._tick_lock = threading.Lock()
        self._runner = EpisodeRunner(None, self._settings, num_cameras=len(topics))
        # Publication time (publisher's clock) of the instruction that started
        # the episode; None when the episode started otherwise.
        self._episode_published_ns: int | None = None
        self._scorer: VideoScorer | None = None
        self._model_state = ModelState.NOT_LOADED
        self._model_error = ErrorRecord()
        self._model_attempts = 0
        self._model_loaded_s = 0.0
        self._model_generation = 0  # bumps on every model-parameter change
        self._next_model_retry = 0.0
        self._episode_error = ErrorRecord()
        self._episode_event = ErrorRecord()
        self._last_instruction: str | None = None
        self._last_result: TickResult | None = None
        self._success_sent: set[str] = set()
        self._scoring = ScoringStats()

        # Publishers.
        self._progress_pub = self.create_publisher(TaskProgress, PROGRESS_TOPIC, 10)
        latched = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        self._success_pub = self.create_publisher(EpisodeSuccess, SUCCESS_TOPIC, latched)
        self._diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)

        # Instruction: latched, so a late-starting node still gets the task.
        # Created before the cameras: the executor takes ready subscriptions in
        # creation order, so an instruction that is ready is handled before
        # camera frames published after it.
        self._instruction_sub = self.create_subscription(
            String, INSTRUCTION_TOPIC, self._on_instruction_msg, latched
        )
        self._reset_srv = self.create_service(Trigger, RESET_SERVICE, self._on_reset)

        # Cameras: sensor-data QoS (best effort, shallow) unless overridden
        # through qos_overrides.<topic>.subscription.* parameters (REP 2003).
        self._cameras: list[CameraStats] = []
        self._camera_subs = []
        for index, topic in enumerate(topics):
            compressed = is_compressed_topic(topic)
            stats = CameraStats(topic=topic, compressed=compressed)
            self._cameras.append(stats)
            group = MutuallyExclusiveCallbackGroup()
            self._camera_subs.append(
                self.create_subscription(
                    CompressedImage if compressed else Image,
                    topic,
                    lambda msg, info, i=index: self._on_image(i, msg, info),
                    # A fresh profile per topic: rclpy applies qos_overrides to the
                    # profile object in place, and must not leak one topic's override
                    # into the shared qos_profile_sensor_data.
                    copy.copy(qos_profile_sensor_data),
                    callback_group=group,
                    qos_overriding_options=QoSOverridingOptions.with_default_policies(),
                )
            )

        # Scoring timer on the ROS clock; diagnostics on the steady clock.
        self._tick_group = ReentrantCallbackGroup()
        self._tick_timer = self._make_tick_timer(float(values["rate_hz"]))
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

        self._start_model_load("start-up")
        if str(values["instruction"]).strip():
            self._start_episode(str(values["instruction"]), "instruction parameter")
        self.get_logger().info(
            f"scoring {len(topics)} camera(s) {topics} at {values['rate_hz']} Hz "
            f"with model {values['model']!r}"
        )

    # -- parameters ------------------------------------------------------------
    def _param_values(self, overrides: list[Parameter] | None = None) -> dict[str, Any]:
        values = {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}
        for param in overrides or []:
            if param.name in values:
                values[param.name] = param.value
        return values

    def _validate_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Reject a change that would make an invalid configuration, naming why."""
        values = self._param_values(params)
        names = {p.name for p in params}
        try:
            if names & EPISODE_PARAMS:
                episode_settings_from(values)
            if names & (MODEL_PARAMS | {"torch_threads"}):
                scorer_config_from(values)
            if values["camera_stall_error_s"] < values["camera_stall_warn_s"]:
                raise ValueError(
                    f"camera_stall_error_s ({values['camera_stall_error_s']}) must be >= "
                    f"camera_stall_warn_s ({values['camera_stall_warn_s']})"
                )
            if "instruction" in names and str(values["instruction"]).strip():
                validate_instruction(str(values["instruction"]))
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
        if "rate_hz" in names:
            self._tick_timer.cancel()
            self.destroy_timer(self._tick_timer)
            self._tick_timer = self._make_tick_timer(float(values["rate_hz"]))
        if names & MODEL_PARAMS:
            with self._lock:
                self._model_generation += 1
            self._start_model_load("parameter change")
        if "instruction" in names and str(values["instruction"]).strip():
            self._start_episode(str(values["instruction"]), "instruction parameter")

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
            config = scorer_config_from(self._param_values())
        except ValueError as exc:
            self._model_failed(f"invalid model configuration: {exc}", generation)
            return
        self.get_logger().info(f"loading model {config.model!r} ({reason})")
        threading.Thread(
            target=self._load_model, args=(config, generation), name="model-load", daemon=True
        ).start()

    def _load_model(self, config: ScorerConfig, generation: int) -> None:
        from topreward_ros.scoring.errors import ModelLoadError

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
            self._start_episode(self._runner.instruction, "model changed")

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
        self.get_logger().error(f"{message}; still serving, will retry", throttle_duration_sec=10.0)

    def _reload_after_change(self) -> None:
        with self._lock:
            self._model_state = ModelState.NOT_LOADED
        self._start_model_load("parameter change")

    # -- episodes ----------------------------------------------------------------
    def _start_episode(self, instruction: str, reason: str, published_ns: int | None = None) -> str | None:
        """Start a new episode, or refuse a bad instruction (logged, reported) keeping the old one.

        ``published_ns``: publication time of the instruction message; camera
        frames published before it are kept out of the new episode.
        """
        previous_published_ns = self._episode_published_ns
        self._episode_published_ns = published_ns  # before the episode exists: no frame slips in
        try:
            # Control tokens in the text would change the prompt's structure.
            scorer = self._scorer
            if scorer is not None:
                scorer.validate_instruction(instruction)
            else:
                validate_instruction(instruction)
            episode_id = self._runner.start(instruction)
        except ValueError as exc:
            self._episode_published_ns = previous_published_ns
            self._episode_error.record(f"{reason}: {exc}")
            self.get_logger().error(f"{reason}: {exc}", throttle_duration_sec=5.0)
            return None
        with self._lock:
            self._last_instruction = instruction
            self._last_result = None
            self._episode_event.record(f"episode {episode_id} started ({reason})")
            for stats in self._cameras:
                stats.last_stamp_ns = None
        self.get_logger().info(f"episode {episode_id} started ({reason}): {instruction!r}")
        return episode_id

    def _on_instruction_msg(self, msg: String, info: Any = None) -> None:
        if not msg.data.strip():
            message = "empty instruction received on the instruction topic: ignored, episode unchanged"
            self._episode_error.record(message)
            self.get_logger().error(message, throttle_duration_sec=5.0)
            return
        self._start_episode(msg.data, "instruction message", published_ns=_source_timestamp(info))

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
        episode_id = self._start_episode(instruction, "reset service")
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
            self._start_episode(self._runner.instruction, message)

    # -- frames ------------------------------------------------------------------
    def _on_image(self, camera: int, msg: Image | CompressedImage, info: Any = None) -> None:
        """Cheap unless the frame is needed: never converts a frame that will be dropped."""
        stats = self._cameras[camera]
        stats.received += 1
        stats.arrivals.append(time.monotonic())
        if _published_before(info, self._episode_published_ns):
            # Published before the instruction that started this episode, handled
            # after it (topics are not delivered in order with each other): the
            # frame belongs to the episode before, as in the bag's log order.
            stats.not_needed += 1
            return
        stamp_ns = stamp_to_ns(msg.header.stamp)
        previous = stats.last_stamp_ns
        if previous is not None and stamp_ns < previous:
            jump_s = (previous - stamp_ns) / NS_PER_S
            stats.stale += 1
            stats.error.record(f"frame stamp went back by {jump_s:.3f} s")
            restart_s = float(self.get_parameter("stamp_jump_restart_s").value)
            if camera == 0 and jump_s > restart_s and self._runner.instruction:
                self._start_episode(self._runner.instruction, f"camera stamp jumped back by {jump_s:.3f} s")
        stats.last_stamp_ns = stamp_ns
        if not self._runner.wants(camera, stamp_ns):
            stats.not_needed += 1
            return
        try:
            view = self._prepare(msg)
        except ImageError as exc:
            stats.bad += 1
            text = f"bad image on {stats.topic}: {exc}"
            stats.error.record(text)
            self.get_logger().error(text, throttle_duration_sec=5.0)
            return
        result = self._runner.add(camera, stamp_ns, view, msg.header.frame_id)
        if result is AddResult.KEPT:
            stats.kept += 1
        elif result is AddResult.STALE:
            stats.stale += 1
        else:
            stats.not_needed += 1

    def _prepare(self, msg: Image | CompressedImage) -> Any:
        from topreward_ros.scoring.frames import prepare_view

        rgb = to_rgb(msg)
        try:
            return prepare_view(rgb, self._settings.view_size)
        except ValueError as exc:
            raise ImageError(str(exc)) from exc

    # -- scoring -----------------------------------------------------------------
    def _on_tick(self) -> None:
        if not self._tick_lock.acquire(blocking=False):
            self._scoring.skipped_ticks += 1
            return
        try:
            self._tick()
        finally:
            self._tick_lock.release()

    def _tick(self) -> None:
        with self._lock:
            ready = self._scorer is not None and self._model_state == ModelState.LOADED
        if not ready or not self._runner.active:
            self._scoring.idle_ticks += 1
            return
        self._scoring.ticks += 1
        try:
            result = self._runner.tick()
        except InstructionError as exc:  # cannot score this episode at all: end it
            self._runner.stop()
            text = f"episode stopped, instruction refused by the model: {exc}"
            self._episode_error.record(text)
            self._scoring.error.record(text)
            self.get_logger().error(text)
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
        self._scoring.last_timings = timings
        self._scoring.latencies.append(result.latency_s)
        self._scoring.published += 1
        with self._lock:
            self._last_result = result

    def _publish(self, result: TickResult) -> None:
        msg = TaskProgress()
        msg.header.stamp = ns_to_stamp(result.stamp_ns)
        msg.header.frame_id = result.frame_id
        msg.episode_id = result.episode_id
        msg.instruction = result.instruction
        msg.log_prob_true = float(result.log_prob_true)
        msg.log_prob_false = float(result.log_prob_false)
        msg.progress = float(result.progress)
        msg.success_score = float(result.success_score)
        msg.success_threshold = float(result.success_threshold)
        msg.success = bool(result.success)
        msg.frames_used = len(result.frame_stamps_ns)
        msg.frame_stamps = [ns_to_stamp(s) for s in result.frame_stamps_ns]
        msg.oldest_frame_stamp = msg.frame_stamps[0] if msg.frame_stamps else TimeMsg()
        msg.inference_latency = float(result.latency_s)
        msg.model_id = result.model_id
        self._progress_pub.publish(msg)
        if result.success_fired and result.episode_id not in self._success_sent:
            self._success_sent.add(result.episode_id)
            done = EpisodeSuccess()
            done.header = msg.header
            done.episode_id = result.episode_id
            done.instruction = result.instruction
            done.success_score = float(result.success_score)
            done.threshold = float(result.success_threshold)
            done.consecutive_scores = int(self._settings.success_consecutive)
            done.model_id = result.model_id
            self._success_pub.publish(done)
            self.get_logger().info(
                f"episode {result.episode_id}: success (score {result.success_score:.3f} > "
                f"{result.success_threshold:.3f})"
            )

    # -- diagnostics -------------------------------------------------------------
    def _on_diagnostics(self) -> None:
        with self._lock:
            due = (
                self._model_state == ModelState.FAILED
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
        ]

    def _model_status(self, prefix: str, now: float) -> DiagnosticStatus:
        with self._lock:
            state, error = self._model_state, self._model_error
            scorer = self._scorer
            attempts, retry_in = self._model_attempts, self._next_model_retry - now
        values = {
            "model": str(self.get_parameter("model").value),
            "state": state,
            "attempts": attempts,
            "last_error": error.message,
        }
        if state == ModelState.LOADED and scorer is not None:
            level, message = DiagnosticStatus.OK, f"loaded {scorer.model_id}"
            values["load_time_s"] = round(self._model_loaded_s, 2)
        elif state == ModelState.FAILED:
            level, message = DiagnosticStatus.ERROR, error.message
            values["retry_in_s"] = round(max(retry_in, 0.0), 1)
        else:
            level, message = DiagnosticStatus.WARN, f"{state}: no scores until the model is ready"
        return _status(f"{prefix}: model", level, message, values)

    def _camera_status(self, prefix: str, index: int, s: CameraStats, now: float) -> DiagnosticStatus:
        warn_s = float(self.get_parameter("camera_stall_warn_s").value)
        error_s = float(self.get_parameter("camera_stall_error_s").value)
        last = s.arrivals[-1] if s.arrivals else None
        age = now - (last if last is not None else s.created_at)
        values = {
            "topic": self.resolve_topic_name(s.topic),
            "type": "sensor_msgs/CompressedImage" if s.compressed else "sensor_msgs/Image",
            "rate_hz": round(s.rate_hz(now) if age < warn_s else 0.0, 2),
            "last_frame_age_s": round(age, 3) if last is not None else "never",
            "received": s.received,
            "kept": s.kept,
            "not_needed": s.not_needed,
            "bad_images": s.bad,
            "stale_or_reordered": s.stale,
            "last_error": s.error.message,
        }
        if last is not None and s.last_stamp_ns is not None:
            values["stamp_lag_s"] = round(
                (self.get_clock().now().nanoseconds - s.last_stamp_ns) / NS_PER_S, 3
            )
        if age > error_s:
            level = DiagnosticStatus.ERROR
            message = f"stalled: no frame for {age:.1f} s" if last is not None else f"no frame in {age:.1f} s"
        elif age > warn_s:
            level = DiagnosticStatus.WARN
            message = f"stalled: no frame for {age:.1f} s" if last is not None else "no frame yet"
        elif s.error.recent(now):
            level, message = DiagnosticStatus.WARN, s.error.message
        else:
            level, message = DiagnosticStatus.OK, "receiving"
        role = "primary" if index == 0 else f"camera {index}"
        return _status(f"{prefix}: camera {s.topic} ({role})", level, message, values)

    def _episode_status(self, prefix: str, now: float) -> DiagnosticStatus:
        runner = self._runner
        window = runner.window
        with self._lock:
            result = self._last_result
        max_frames = self._settings.max_frames
        filled = len(window.samples)
        values: dict[str, Any] = {
            "episode_id": runner.episode_id or "",
            "instruction": runner.instruction or "",
            "window_frames": filled,
            "window_max_frames": max_frames,
            "window_fill": round(filled / max_frames, 3),
            "window_thinned": window.thinned,
            "camera_sync_misses": window.sync_misses,
            "last_event": self._episode_event.message,
            "last_error": self._episode_error.message,
        }
        if result is not None and result.episode_id == runner.episode_id:
            values.update(progress=round(result.progress, 4), success=result.success,
                          success_score=round(result.success_score, 4))
        if self._episode_error.recent(now):
            level, message = DiagnosticStatus.WARN, self._episode_error.message
        elif not runner.active:
            level, message = DiagnosticStatus.WARN, "waiting for an instruction"
        else:
            level, message = DiagnosticStatus.OK, f"episode {runner.episode_id}"
        return _status(f"{prefix}: episode", level, message, values)

    def _scoring_status(self, prefix: str, now: float) -> DiagnosticStatus:
        sc = self._scoring
        lat = list(sc.latencies)
        values: dict[str, Any] = {
            "rate_hz": float(self.get_parameter("rate_hz").value),
            "ticks": sc.ticks,
            "published": sc.published,
            "skipped_ticks": sc.skipped_ticks,
            "out_of_memory": sc.ooms,
            "inference_latency_s": round(lat[-1], 4) if lat else "",
            "inference_latency_mean_s": round(sum(lat) / len(lat), 4) if lat else "",
            "inference_latency_max_s": round(max(lat), 4) if lat else "",
            "last_error": sc.error.message,
        }
        for key, value in sc.last_timings.items():
            values[f"last_{key}"] = round(value, 5)
        if sc.error.recent(now):
            level, message = DiagnosticStatus.ERROR, sc.error.message
        elif sc.skipped_ticks and lat and lat[-1] * float(self.get_parameter("rate_hz").value) > 1.0:
            level = DiagnosticStatus.WARN
            message = f"scoring slower than rate_hz: {sc.skipped_ticks} ticks skipped"
        else:
            level, message = DiagnosticStatus.OK, f"{sc.published} scores published"
        return _status(f"{prefix}: scoring", level, message, values)


def _status(name: str, level: bytes, message: str, values: dict[str, Any]) -> DiagnosticStatus:
    status = DiagnosticStatus()
    status.name = name
    status.level = level
    status.message = message
    status.hardware_id = NODE_NAME
    status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    return status


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
    """Run the node until Ctrl-C or SIGTERM, then end the process with its exit code.

    Does not return once the node ran: after the node is destroyed and the
    context shut down, ``exit_now`` ends the process at once so it stays inside
    ``ros2 launch``'s 5 s grace period (see ``topreward_ros.process_exit``).
    """
    rclpy.init(args=args)
    node: ScorerNode | None = None
    code = 0
    try:
        node = ScorerNode()
        executor = MultiThreadedExecutor(num_threads=max(4, len(node._cameras) + 3))
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, ParameterException) as exc:  # a bad configuration, named in the message
        rclpy.logging.get_logger(NODE_NAME).fatal(f"invalid configuration: {exc}")
        code = 2
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    exit_now(code)


if __name__ == "__main__":
    import sys

    sys.exit(main())
