"""TaskProgress / EpisodeSuccess messages from offline ticks, written to MCAP.

The relabel export carries the same messages the node publishes, built from
the same ``TickResult`` fields, so tools that consume the live topics (a
Foxglove layout, a recorder-side logger, a training pipeline) read an
offline-scored bag without change. Each message is logged at the bag time of
the tick that produced it, like a recorder next to the node would have.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosbags.typesys.store import Typestore

from topreward_ros.bag.types import EPISODE_SUCCESS, TASK_PROGRESS, typestore as default_typestore
from topreward_ros.bag.writer import header, stamp_fields, write_single_mcap
from topreward_ros.episode import TickResult

#: Topics of the export: the node's output topics in the root namespace.
PROGRESS_TOPIC = "/task_progress"
SUCCESS_TOPIC = "/episode_success"


@dataclass(frozen=True)
class TimedTick:
    """A tick's result and the bag time at which the simulated timer fired."""

    log_time_ns: int
    result: TickResult


def task_progress_msg(tick: TickResult, store: Typestore | None = None) -> Any:
    store = store or default_typestore()
    stamps = [stamp_fields(s, store) for s in tick.frame_stamps_ns]
    return store.types[TASK_PROGRESS](
        header=header(tick.stamp_ns, tick.frame_id, store),
        episode_id=tick.episode_id,
        instruction=tick.instruction,
        log_prob_true=float(tick.log_prob_true),
        log_prob_false=float(tick.log_prob_false),
        progress=float(tick.progress),
        success_score=float(tick.success_score),
        success_threshold=float(tick.success_threshold),
        success=bool(tick.success),
        frames_used=len(tick.frame_stamps_ns),
        oldest_frame_stamp=stamps[0] if stamps else stamp_fields(tick.stamp_ns, store),
        frame_stamps=stamps,
        inference_latency=float(tick.latency_s),
        model_id=tick.model_id,
    )


def episode_success_msg(tick: TickResult, consecutive: int, store: Typestore | None = None) -> Any:
    store = store or default_typestore()
    return store.types[EPISODE_SUCCESS](
        header=header(tick.stamp_ns, tick.frame_id, store),
        episode_id=tick.episode_id,
        instruction=tick.instruction,
        success_score=float(tick.success_score),
        threshold=float(tick.success_threshold),
        consecutive_scores=int(consecutive),
        model_id=tick.model_id,
    )


def write_progress_mcap(path: Path, ticks: Sequence[TimedTick], consecutive: int,
                        store: Typestore | None = None) -> Path:
    """One MCAP with a TaskProgress per tick and an EpisodeSuccess when success fired."""
    messages: list[tuple[str, Any, int]] = []
    for timed in ticks:
        messages.append(
            (PROGRESS_TOPIC, task_progress_msg(timed.result, store), timed.log_time_ns))
        if timed.result.success_fired:
            messages.append(
                (SUCCESS_TOPIC, episode_success_msg(timed.result, consecutive, store),
                 timed.log_time_ns)
            )
    return write_single_mcap(path, messages, typestore=store)
