"""TaskProgress / EpisodeSuccess / EpisodeResult: the one mapping of scores to messages.

The node publishes these messages with rclpy's generated classes; the offline
relabel export writes them into a bag with rosbags' classes. Both build them
here, from the classes they hand in, so a field added to the messages or a
change in how a score is reported reaches the live topics and the exported
bag together: a relabelled bag carries what the node would have published.

No ROS import: the message classes come from the caller (``MessageKit``). Both
bindings' classes take every field as a keyword argument, which is all this
module relies on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from topreward_ros.episode.records import EpisodeSummary, TickResult
from topreward_ros.scoring.stamps import NS_PER_S


@dataclass(frozen=True)
class MessageKit:
    """The message classes of one binding: the outputs and the types they nest."""

    task_progress: Any
    episode_success: Any
    header: Any
    time: Any
    episode_result: Any = None

    def stamp(self, ns: int) -> Any:
        sec, nanosec = divmod(int(ns), NS_PER_S)
        return self.time(sec=sec, nanosec=nanosec)


def _header(result: TickResult, kit: MessageKit) -> Any:
    # Capture stamp and frame_id of the newest frame scored, not the time of publishing.
    return kit.header(stamp=kit.stamp(result.stamp_ns), frame_id=result.frame_id)


def task_progress_fields(result: TickResult, kit: MessageKit) -> dict[str, Any]:
    """Every TaskProgress field for one tick, as keyword arguments of ``kit.task_progress``."""
    stamps = [kit.stamp(s) for s in result.frame_stamps_ns]
    return {
        "header": _header(result, kit),
        "episode_id": result.episode_id,
        "instruction": result.instruction,
        "log_prob_true": float(result.log_prob_true),
        "log_prob_false": float(result.log_prob_false),
        "progress": float(result.progress),
        "success_score": float(result.success_score),
        "success_threshold": float(result.success_threshold),
        "success": bool(result.success),
        "frames_used": len(stamps),
        "oldest_frame_stamp": kit.stamp(result.frame_stamps_ns[0]) if stamps else kit.time(sec=0, nanosec=0),
        "frame_stamps": stamps,
        "inference_latency": float(result.latency_s),
        "model_id": result.model_id,
    }


def episode_success_fields(result: TickResult, consecutive: int, kit: MessageKit) -> dict[str, Any]:
    """Every EpisodeSuccess field for the tick at which success fired.

    ``consecutive``: the success_consecutive setting the episode was judged with.
    """
    return {
        "header": _header(result, kit),
        "episode_id": result.episode_id,
        "instruction": result.instruction,
        "success_score": float(result.success_score),
        "threshold": float(result.success_threshold),
        "consecutive_scores": int(consecutive),
        "model_id": result.model_id,
    }


def task_progress(result: TickResult, kit: MessageKit) -> Any:
    """The TaskProgress message of one tick, in ``kit``'s binding."""
    return kit.task_progress(**task_progress_fields(result, kit))


def episode_success(result: TickResult, consecutive: int, kit: MessageKit) -> Any:
    """The EpisodeSuccess message of the tick at which success fired, in ``kit``'s binding."""
    return kit.episode_success(**episode_success_fields(result, consecutive, kit))


def episode_result_fields(summary: EpisodeSummary, kit: MessageKit) -> dict[str, Any]:
    """Every EpisodeResult field of an ended episode's verdict."""

    def stamp(ns: int | None) -> Any:
        return kit.stamp(ns) if ns is not None else kit.time(sec=0, nanosec=0)

    return {
        "header": kit.header(stamp=stamp(summary.last_stamp_ns), frame_id=""),
        "episode_id": summary.episode_id,
        "instruction": summary.instruction,
        "first_frame_stamp": stamp(summary.first_stamp_ns),
        "last_frame_stamp": stamp(summary.last_stamp_ns),
        "end_reason": summary.end_reason,
        "end_detail": summary.end_detail,
        "log_prob_true": float(summary.log_prob_true),
        "progress": float(summary.progress),
        "success_score": float(summary.success_score),
        "success": bool(summary.success),
        "threshold": float(summary.threshold),
        "frames": int(summary.frames),
        "samples": int(summary.samples),
        "ticks": int(summary.ticks),
        "final_frames_scored": bool(summary.final_frames_scored),
        "scored_at_end": bool(summary.scored_at_end),
        "not_scored_reason": summary.not_scored_reason,
        "model_id": summary.model_id,
    }


def episode_result(summary: EpisodeSummary, kit: MessageKit) -> Any:
    """The EpisodeResult message of an ended episode, in ``kit``'s binding."""
    return kit.episode_result(**episode_result_fields(summary, kit))
