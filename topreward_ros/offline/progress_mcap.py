"""TaskProgress / EpisodeSuccess / EpisodeResult messages of an offline episode, written to MCAP.

The relabel export carries the same messages the node publishes, built by the
same mapping (``topreward_ros.rendering.messages``), so tools that consume the
live topics (a Foxglove layout, a recorder-side logger, a training pipeline)
read an offline-scored bag without change. Each message is logged at the bag time of
the tick that produced it, like a recorder next to the node would have.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from topreward_ros.episode.records import EpisodeSummary, TickResult
from topreward_ros.offline.runner import TimedTick
from topreward_ros.rendering.messages import MessageKit, episode_result, episode_success, task_progress

if TYPE_CHECKING:  # the bag library is imported only to write a bag
    from rosbags.typesys.store import Typestore

#: Topics of the export: the node's output topics in the root namespace.
PROGRESS_TOPIC = "/task_progress"
SUCCESS_TOPIC = "/episode_success"
RESULT_TOPIC = "/episode_result"


def message_kit(store: Typestore | None = None) -> MessageKit:
    """The typestore's message classes, for the mapping the node uses too."""
    from topreward_ros.bag.types import EPISODE_RESULT, EPISODE_SUCCESS, TASK_PROGRESS
    from topreward_ros.bag.types import typestore as default_typestore

    store = store or default_typestore()
    return MessageKit(
        task_progress=store.types[TASK_PROGRESS],
        episode_success=store.types[EPISODE_SUCCESS],
        header=store.types["std_msgs/msg/Header"],
        time=store.types["builtin_interfaces/msg/Time"],
        episode_result=store.types[EPISODE_RESULT],
    )


def task_progress_msg(tick: TickResult, store: Typestore | None = None) -> Any:
    return task_progress(tick, message_kit(store))


def episode_success_msg(tick: TickResult, consecutive: int, store: Typestore | None = None) -> Any:
    return episode_success(tick, consecutive, message_kit(store))


def write_progress_mcap(
    path: Path,
    ticks: Sequence[TimedTick],
    consecutive: int,
    store: Typestore | None = None,
    summary: EpisodeSummary | None = None,
    end_log_ns: int = 0,
) -> Path:
    """One MCAP with a TaskProgress per tick, an EpisodeSuccess when success fired and the
    episode's EpisodeResult (``summary``) at its end (``end_log_ns``, never before its last tick)."""
    from topreward_ros.bag.writer import write_single_mcap

    messages: list[tuple[str, Any, int]] = []
    for timed in ticks:
        messages.append((PROGRESS_TOPIC, task_progress_msg(timed.result, store), timed.log_time_ns))
        if timed.result.success_fired:
            messages.append((SUCCESS_TOPIC, episode_success_msg(timed.result, consecutive, store), timed.log_time_ns))
    if summary is not None:
        last_tick = max((t.log_time_ns for t in ticks), default=end_log_ns)
        messages.append((RESULT_TOPIC, episode_result(summary, message_kit(store)), max(end_log_ns, last_tick)))
    return write_single_mcap(path, messages, typestore=store)
