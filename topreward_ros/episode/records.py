"""What an episode is run with and what it leaves: settings, tick results, summaries.

The node, the offline runner, the relabel export and the evaluation all read
these records; they hold no ROS type and no model, so every consumer can
import them without paying for either. ``EpisodeSummary`` is the verdict
every episode ends with (``EpisodeResult`` on the node, ``episodes.json``
offline), whatever ended it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from topreward_ros.scoring.config import DEFAULT_SUCCESS_THRESHOLD
from topreward_ros.scoring.thresholds import SuccessThresholds

#: Why an episode ended (``EpisodeSummary.end_reason``, ``EpisodeResult.end_reason``).
END_NEW_INSTRUCTION = "new_instruction"
END_RESET = "reset"
END_REFUSED = "refused"
END_STAMP_CUT = "stamp_cut"
END_CLOCK_JUMP = "clock_jump"
END_MODEL_CHANGED = "model_changed"
END_SHUTDOWN = "shutdown"
END_OF_RECORDING = "end_of_recording"
END_REASONS = (
    END_NEW_INSTRUCTION,
    END_RESET,
    END_REFUSED,
    END_STAMP_CUT,
    END_CLOCK_JUMP,
    END_MODEL_CHANGED,
    END_SHUTDOWN,
    END_OF_RECORDING,
)


def end_reason_code(reason: str) -> str:
    """The end reason code of an offline episode boundary's text (``EpisodeSpec.end_reason``)."""
    if reason == "instruction":
        return END_NEW_INSTRUCTION
    if reason == "reset":
        return END_RESET
    if reason.startswith("camera stamp jumped"):
        return END_STAMP_CUT
    return END_OF_RECORDING


@dataclass(frozen=True)
class EpisodeSettings:
    """How an episode is sampled, scored and judged.

    sample_fps: frames per second of capture time the model sees (paper: 2).
    max_frames: samples kept per episode before the window thins its history.
    sync_tolerance_s: largest stamp difference for pairing cameras' frames.
    view_size: side of the square view each camera frame is resized to.
    success_threshold: success score (mean raw log p(" True"), nats) above
        which the task counts as done; must be calibrated per model and setup.
    success_window: number of latest scores averaged into the success score.
    success_consecutive: scores in a row above threshold before success fires.
    task_thresholds: per-task thresholds, (instruction, nats) pairs; an
        episode whose instruction is listed is judged with its own, any
        other with ``success_threshold`` (``scoring.thresholds``).
    """

    sample_fps: float = 2.0
    max_frames: int = 256
    sync_tolerance_s: float = 0.05
    view_size: int = 244
    success_threshold: float = DEFAULT_SUCCESS_THRESHOLD
    success_window: int = 3
    success_consecutive: int = 2
    task_thresholds: tuple[tuple[str, float], ...] = ()

    @property
    def thresholds(self) -> SuccessThresholds:
        return SuccessThresholds(self.success_threshold, self.task_thresholds)

    def threshold_for(self, instruction: str | None) -> float:
        """The threshold an episode of ``instruction`` is judged with."""
        return self.thresholds.for_instruction(instruction)

    def __post_init__(self) -> None:
        if not self.sample_fps > 0:
            raise ValueError(f"sample_fps must be > 0, got {self.sample_fps!r}")
        if self.max_frames < 2:
            raise ValueError(f"max_frames must be >= 2, got {self.max_frames!r}")
        if not self.sync_tolerance_s >= 0:
            raise ValueError(f"sync_tolerance_s must be >= 0, got {self.sync_tolerance_s!r}")
        if self.view_size < 32:
            raise ValueError(f"view_size must be >= 32 pixels, got {self.view_size!r}")
        if not np.isfinite(self.success_threshold) or self.success_threshold > 0:
            raise ValueError(f"success_threshold is a log-probability and must be <= 0, got {self.success_threshold!r}")
        if self.success_window < 1:
            raise ValueError(f"success_window must be >= 1, got {self.success_window!r}")
        if self.success_consecutive < 1:
            raise ValueError(f"success_consecutive must be >= 1, got {self.success_consecutive!r}")
        SuccessThresholds(self.success_threshold, self.task_thresholds)  # raises naming a bad one


@dataclass(frozen=True)
class TickResult:
    """Everything one scoring tick produced (one TaskProgress message)."""

    episode_id: str
    instruction: str
    log_prob_true: float
    log_prob_false: float
    stamp_ns: int
    frame_id: str
    frame_stamps_ns: tuple[int, ...]
    progress: float
    success_score: float
    success_threshold: float
    success: bool
    success_fired: bool
    latency_s: float
    model_id: str
    timings: dict[str, float] = field(default_factory=dict)
    #: Prompt tokens of this score, and how many of them came from the KV cache.
    prompt_tokens: int = 0
    reused_tokens: int = 0

    @property
    def margin(self) -> float:
        """log p(True) - log p(False), nats: how decided the model is either way."""
        return self.log_prob_true - self.log_prob_false

    @property
    def cache_reuse(self) -> float:
        """Share of the prompt's tokens taken from the KV cache (0 when none)."""
        return self.reused_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    @property
    def frames_used(self) -> int:
        return len(self.frame_stamps_ns)


@dataclass(frozen=True)
class EpisodeSummary:
    """The verdict of one ended episode (one EpisodeResult message).

    Stamps are the primary camera's (None without a frame); scores are NaN
    when the episode was never scored. ``final_frames_scored``: the
    episode's last samples were scored, by a tick or by the score made at
    its end (``scored_at_end``); when not, ``not_scored_reason`` says why.
    """

    episode_id: str
    instruction: str
    end_reason: str
    end_detail: str
    first_stamp_ns: int | None
    last_stamp_ns: int | None
    log_prob_true: float
    progress: float
    success_score: float
    success: bool
    threshold: float
    frames: int
    samples: int
    ticks: int
    final_frames_scored: bool
    scored_at_end: bool
    not_scored_reason: str
    model_id: str

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> EpisodeSummary:
        """The summary ``to_dict`` wrote (None scores back to NaN)."""
        nan = float("nan")
        values = dict(record)
        for key in ("log_prob_true", "progress", "success_score"):
            values[key] = nan if values.get(key) is None else float(values[key])
        return cls(**values)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready (NaN scores as None)."""

        def number(value: float) -> float | None:
            return None if value != value else float(value)

        return {
            "episode_id": self.episode_id,
            "instruction": self.instruction,
            "end_reason": self.end_reason,
            "end_detail": self.end_detail,
            "first_stamp_ns": self.first_stamp_ns,
            "last_stamp_ns": self.last_stamp_ns,
            "log_prob_true": number(self.log_prob_true),
            "progress": number(self.progress),
            "success_score": number(self.success_score),
            "success": self.success,
            "threshold": self.threshold,
            "frames": self.frames,
            "samples": self.samples,
            "ticks": self.ticks,
            "final_frames_scored": self.final_frames_scored,
            "scored_at_end": self.scored_at_end,
            "not_scored_reason": self.not_scored_reason,
            "model_id": self.model_id,
        }
