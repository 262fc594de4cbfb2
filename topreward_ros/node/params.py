"""The scorer node's parameters: one table, and what the values turn into.

The table declares the parameters (default, description, range, whether they
may change at run time) and is what the docs and config/scorer.yaml are
checked against. The functions below turn a set of values into the settings
the episode and the model loader take, and reject an inconsistent set with a
message naming the offending value, both at start-up and when a parameter is
set at run time. Nothing here needs a running node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from topreward_ros.episode.records import EpisodeSettings
from topreward_ros.scoring.backends.registry import BACKEND_NAMES, DEFAULT_BACKEND
from topreward_ros.scoring.config import DEFAULT_MODEL, DEFAULT_SUCCESS_THRESHOLD, ScorerConfig
from topreward_ros.scoring.prompt import validate_instruction
from topreward_ros.scoring.thresholds import TASK_INSTRUCTIONS_PARAM, TASK_THRESHOLDS_PARAM, thresholds_from_params


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
        desc = ParameterDescriptor(name=self.name, description=self.description, read_only=not self.runtime)
        if self.min_value is not None and self.max_value is not None:
            if isinstance(self.default, bool):
                pass
            elif isinstance(self.default, int):
                desc.integer_range = [
                    IntegerRange(from_value=int(self.min_value), to_value=int(self.max_value), step=1)
                ]
            elif isinstance(self.default, float):
                desc.floating_point_range = [
                    FloatingPointRange(from_value=float(self.min_value), to_value=float(self.max_value), step=0.0)
                ]
        return desc


#: Every parameter of the node. ``runtime=False`` ones are read-only after
#: start-up. Keep docs/node.md and config/scorer.yaml in step (a test checks).
PARAMETERS: tuple[ParamSpec, ...] = (
    # Model.
    ParamSpec(
        "model",
        DEFAULT_MODEL,
        "Hub id or local directory of the video VLM. Changing it reloads the model and starts a new episode.",
    ),
    ParamSpec(
        "backend",
        DEFAULT_BACKEND,
        f"Scoring backend that runs the model: {' | '.join(BACKEND_NAMES)} (transformers: in this "
        "process). Changing it reloads the model and starts a new episode.",
    ),
    ParamSpec("device", "auto", "auto | cpu | cuda | cuda:N (auto: first GPU if any). Reloads."),
    ParamSpec("dtype", "auto", "auto | bfloat16 | float16 | float32 (auto: bf16 on GPU, fp32 on CPU). Reloads."),
    ParamSpec("attn_implementation", "sdpa", "sdpa | eager | flash_attention_2. Reloads."),
    ParamSpec("local_files_only", False, "Never contact the model hub. Reloads."),
    ParamSpec("cache_dir", "", "Model cache directory ('' = the standard Hugging Face cache). Reloads."),
    ParamSpec("torch_threads", 0, "CPU threads for torch (0 = torch's default).", False, 0, 256),
    ParamSpec(
        "release_model_on_deactivate",
        False,
        "Managed node only: free the model (and the CUDA cache) on deactivate, and load it again on activate.",
    ),
    ParamSpec(
        "model_retry_s", 30.0, "Seconds between attempts to load a model that failed to load.", True, 1.0, 86400.0
    ),
    # Inputs.
    ParamSpec(
        "camera_topics",
        ["camera/image_raw"],
        "Camera topics; the first drives the sampling schedule. A topic whose last name "
        "component is 'compressed' is subscribed as sensor_msgs/CompressedImage, any other "
        "as sensor_msgs/Image.",
        False,
    ),
    ParamSpec(
        "instruction_topic",
        "instruction",
        "Topic of the std_msgs/String task instruction (a relative name resolves in the node's "
        "namespace; a remapping of 'instruction' applies to the default). The offline tools read "
        "it from the same parameters file.",
        False,
    ),
    ParamSpec(
        "instruction",
        "",
        "Task instruction; setting it (at start-up or at run time) starts a new episode, "
        "like a message on the instruction topic.",
    ),
    # Sampling and window.
    ParamSpec(
        "sample_fps",
        2.0,
        "Frames per second of capture time the model sees (paper: 2). Changing it restarts the episode's window.",
        True,
        0.1,
        30.0,
    ),
    ParamSpec(
        "max_frames",
        256,
        "Most sampled frames kept per episode; when full, every other frame "
        "is dropped (the first is always kept) and sampling halves. Restarts the window.",
        True,
        2,
        4096,
    ),
    ParamSpec(
        "sync_tolerance_s",
        0.05,
        "Largest stamp difference when pairing other cameras' frames with the first camera's. Restarts the window.",
        True,
        0.0,
        1.0,
    ),
    ParamSpec(
        "view_size",
        244,
        "Side in pixels of the square view each camera frame is resized to "
        "(views of several cameras are placed side by side).",
        False,
        32,
        1024,
    ),
    # Scoring.
    ParamSpec(
        "rate_hz",
        1.0,
        "Scoring ticks per second of ROS time (a tick that comes due while "
        "the previous one runs is skipped and counted).",
        True,
        0.01,
        30.0,
    ),
    ParamSpec(
        "success_threshold",
        DEFAULT_SUCCESS_THRESHOLD,
        "Success when the success score (mean raw log p(' True') of the last success_window "
        "scores, nats) exceeds this. Must be calibrated per model and setup.",
        True,
        -1.0e12,
        0.0,
    ),
    ParamSpec("success_window", 3, "Latest scores averaged into the success score.", True, 1, 100),
    ParamSpec(
        "success_consecutive",
        2,
        "Consecutive scores above threshold before success fires (once per episode).",
        True,
        1,
        100,
    ),
    # Health.
    ParamSpec(
        "camera_stall_warn_s", 1.0, "Seconds without a frame before a camera is reported WARN.", True, 0.05, 3600.0
    ),
    ParamSpec(
        "camera_stall_error_s", 5.0, "Seconds without a frame before a camera is reported ERROR.", True, 0.05, 3600.0
    ),
    ParamSpec(
        "stamp_jump_restart_s",
        1.0,
        "A first-camera frame stamped this many seconds before "
        "the previous one (a looping bag, a restarted driver) starts a new episode with the same "
        "instruction.",
        True,
        0.0,
        3600.0,
    ),
    ParamSpec(
        "stamp_gap_restart_s",
        60.0,
        "A first-camera frame stamped this many seconds after "
        "the previous one (zero stamps that turn real, a long pause) starts a new episode with "
        "the same instruction, so no window spans the gap.",
        True,
        0.1,
        86400.0,
    ),
    ParamSpec("diagnostics_period_s", 1.0, "Seconds (wall clock) between /diagnostics messages.", False, 0.1, 60.0),
)
#: The per-task threshold map, two lists of equal length (``calibrated.yaml`` of
#: ``topreward eval`` writes them). Declared typed and without a default: a
#: parameters file gives them, or there is no map (every episode is judged with
#: ``success_threshold``). Read-only: the two lists change together, at start-up.
TASK_THRESHOLD_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec(
        TASK_INSTRUCTIONS_PARAM,
        None,
        "Instructions that have a threshold of their own "
        "(pairs with task_success_thresholds; whitespace runs count as one space).",
        False,
    ),
    ParamSpec(
        TASK_THRESHOLDS_PARAM,
        None,
        "Success threshold (nats) of each of task_instructions; other instructions use success_threshold.",
        False,
    ),
)
PARAM_BY_NAME = {p.name: p for p in PARAMETERS}
#: Parameters whose change needs the model to be loaded again.
MODEL_PARAMS = frozenset(
    {"model", "backend", "device", "dtype", "attn_implementation", "local_files_only", "cache_dir"}
)
EPISODE_PARAMS = frozenset(
    {
        "sample_fps",
        "max_frames",
        "sync_tolerance_s",
        "view_size",
        "success_threshold",
        "success_window",
        "success_consecutive",
    }
)


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
        task_thresholds=thresholds_from_params(
            {k: values.get(k) for k in (TASK_INSTRUCTIONS_PARAM, TASK_THRESHOLDS_PARAM)},
            float(values["success_threshold"]),
        ).per_task,
    )


def scorer_config_from(values: dict[str, Any]) -> ScorerConfig:
    """ScorerConfig from parameter values (raises ValueError naming a bad one)."""
    threads = int(values["torch_threads"])
    return ScorerConfig(
        model=str(values["model"]),
        backend=str(values["backend"]),
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


def check_stall_thresholds(values: dict[str, Any]) -> None:
    """The ERROR threshold of a stalled camera may not come before the WARN one."""
    if values["camera_stall_error_s"] < values["camera_stall_warn_s"]:
        raise ValueError(
            f"camera_stall_error_s ({values['camera_stall_error_s']}) must be >= "
            f"camera_stall_warn_s ({values['camera_stall_warn_s']})"
        )


def check_values(values: dict[str, Any], changed: set[str] | None = None) -> None:
    """Raise ValueError naming the first bad value in ``values``.

    ``changed``: the names being set at run time; only the checks they touch
    run (plus the always-cheap cross checks). None checks the whole set, as at
    start-up, except the instruction, whose refusal there is reported without
    stopping the node.
    """
    if changed is None or changed & EPISODE_PARAMS:
        episode_settings_from(values)
    if changed is None or changed & (MODEL_PARAMS | {"torch_threads"}):
        scorer_config_from(values)
    check_stall_thresholds(values)
    if changed is not None and "instruction" in changed and str(values["instruction"]).strip():
        validate_instruction(str(values["instruction"]))


def camera_topics_from(values: dict[str, Any]) -> list[str]:
    """The camera topics to subscribe (raises ValueError when none or one twice)."""
    topics = [str(t) for t in values["camera_topics"] if str(t).strip()]
    if not topics:
        raise ValueError("camera_topics is empty: give at least one camera topic")
    if len(set(topics)) != len(topics):
        raise ValueError(f"camera_topics lists a topic twice: {topics}")
    return topics
