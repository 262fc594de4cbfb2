"""The node's published scores and the relabel export's bag messages agree field for field.

Both come from ``topreward_ros.rendering.messages``. Here one TickResult is
published by a real in-process ScorerNode (received on the graph by a second
node) and written by the bag writer (read back from the MCAP); both must be
built by that mapping (its calls are recorded) and give exactly the fields
written out by hand below.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from support.modelless_node import modelless_node  # noqa: E402

from topreward_ros.bag.reader import BagReader  # noqa: E402
from topreward_ros.episode.records import TickResult  # noqa: E402
from topreward_ros.msg import EpisodeSuccess, TaskProgress  # noqa: E402
from topreward_ros.node import episodes  # noqa: E402
from topreward_ros.offline import progress_mcap  # noqa: E402
from topreward_ros.offline.progress_mcap import PROGRESS_TOPIC, SUCCESS_TOPIC, message_kit, write_progress_mcap  # noqa: E402
from topreward_ros.offline.runner import TimedTick  # noqa: E402
from topreward_ros.rendering import messages as progress_messages  # noqa: E402
from topreward_ros.rendering.messages import task_progress_fields  # noqa: E402

CONSECUTIVE = 3

# A tick at which success fired; float32 fields hold values a float32 represents exactly.
RESULT = TickResult(
    episode_id="0007-progress-fields",
    instruction="stack the red cup on the blue one",
    log_prob_true=-0.123456789012,
    log_prob_false=-2.718281828459,
    stamp_ns=12_750_000_001,
    frame_id="wrist_optical",
    frame_stamps_ns=(10_000_000_000, 10_500_000_123, 12_750_000_001),
    progress=0.375,
    success_score=-0.25,
    success_threshold=-0.5,
    success=True,
    success_fired=True,
    latency_s=0.8125,
    model_id="tiny/qwen3-vl",
    timings={"model_s": 0.5},
)


def stamp(sec: int, nanosec: int) -> dict[str, int]:
    return {"sec": sec, "nanosec": nanosec}


HEADER = {"stamp": stamp(12, 750_000_001), "frame_id": "wrist_optical"}
EXPECTED_PROGRESS = {
    "header": HEADER,
    "episode_id": "0007-progress-fields",
    "instruction": "stack the red cup on the blue one",
    "log_prob_true": -0.123456789012,
    "log_prob_false": -2.718281828459,
    "progress": 0.375,
    "success_score": -0.25,
    "success_threshold": -0.5,
    "success": True,
    "frames_used": 3,
    "oldest_frame_stamp": stamp(10, 0),
    "frame_stamps": [stamp(10, 0), stamp(10, 500_000_123), stamp(12, 750_000_001)],
    "inference_latency": 0.8125,
    "model_id": "tiny/qwen3-vl",
}
EXPECTED_SUCCESS = {
    "header": HEADER,
    "episode_id": "0007-progress-fields",
    "instruction": "stack the red cup on the blue one",
    "success_score": -0.25,
    "threshold": -0.5,
    "consecutive_scores": CONSECUTIVE,
    "model_id": "tiny/qwen3-vl",
}


def plain(value: Any) -> Any:
    """A message of either binding as nested dicts/lists of Python values."""
    if hasattr(value, "get_fields_and_field_types"):  # rclpy
        return {name: plain(getattr(value, name)) for name in value.get_fields_and_field_types()}
    if dataclasses.is_dataclass(value):  # rosbags
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value) if not f.name.startswith("__")}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def published_by_node(context: Context, tmp_path: Path) -> tuple[Any, Any]:
    """Publish RESULT from a real ScorerNode; return what a subscriber received."""
    node = modelless_node(context, tmp_path, success_consecutive=CONSECUTIVE)
    listener = rclpy.create_node("progress_listener", context=context)
    got: dict[str, Any] = {}
    latched = QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )

    def keep(key: str) -> Any:
        return lambda msg: got.setdefault(key, msg) if msg.episode_id == RESULT.episode_id else None

    listener.create_subscription(TaskProgress, PROGRESS_TOPIC, keep("progress"), 10)
    listener.create_subscription(EpisodeSuccess, SUCCESS_TOPIC, keep("success"), latched)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(listener)
    try:
        deadline = time.monotonic() + 60.0
        while listener.count_publishers(PROGRESS_TOPIC) == 0 or node.count_subscribers("task_progress") == 0:
            assert time.monotonic() < deadline, "the listener never matched the node's publisher"
            executor.spin_once(timeout_sec=0.1)
        node._publish(RESULT)
        while "progress" not in got or "success" not in got:
            assert time.monotonic() < deadline, f"received only {sorted(got)}"
            executor.spin_once(timeout_sec=0.1)
    finally:
        executor.shutdown()
        listener.destroy_node()
        node.destroy_node()
    return got["progress"], got["success"]


def written_to_bag(tmp_path: Path) -> tuple[Any, Any]:
    path = write_progress_mcap(tmp_path / "progress.mcap", [TimedTick(13_000_000_000, RESULT)], CONSECUTIVE)
    with BagReader(path) as reader:
        progress = [reader.deserialize(m) for m in reader.messages([PROGRESS_TOPIC])]
        success = [reader.deserialize(m) for m in reader.messages([SUCCESS_TOPIC])]
    assert len(progress) == 1 and len(success) == 1
    return progress[0], success[0]


def test_node_and_bag_give_the_same_fields_for_one_tick(
    context: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both adapters must build their messages with the shared mapping: record its calls.
    calls: list[tuple[str, str, TickResult]] = []
    for module in (episodes, progress_mcap):
        for name in ("task_progress", "episode_success"):

            def spy(
                result: TickResult,
                *args: Any,
                _inner: Any = getattr(progress_messages, name),
                _where: str = module.__name__,
                _name: str = name,
            ) -> Any:
                calls.append((_where, _name, result))
                return _inner(result, *args)

            monkeypatch.setattr(module, name, spy)
    node_progress, node_success = published_by_node(context, tmp_path)
    bag_progress, bag_success = written_to_bag(tmp_path)
    assert sorted((where, name) for where, name, result in calls if result is RESULT) == [
        ("topreward_ros.node.episodes", "episode_success"),
        ("topreward_ros.node.episodes", "task_progress"),
        ("topreward_ros.offline.progress_mcap", "episode_success"),
        ("topreward_ros.offline.progress_mcap", "task_progress"),
    ]
    assert plain(node_progress) == EXPECTED_PROGRESS
    assert plain(bag_progress) == EXPECTED_PROGRESS
    assert plain(node_success) == EXPECTED_SUCCESS
    assert plain(bag_success) == EXPECTED_SUCCESS


def test_the_mapping_fills_every_message_field() -> None:
    # A field added to TaskProgress.msg without a value in the mapping would be
    # left at its default by both bindings alike; the field list must match.
    fields = task_progress_fields(RESULT, message_kit())
    assert set(fields) == set(TaskProgress.get_fields_and_field_types())
    assert plain(fields) == EXPECTED_PROGRESS


def test_episode_result_mapping_fills_every_field_in_both_bindings(tmp_path: Path) -> None:
    from topreward_ros.bag.reader import BagReader as Reader
    from topreward_ros.episode.records import END_STAMP_CUT, EpisodeSummary
    from topreward_ros.msg import EpisodeResult
    from topreward_ros.offline.progress_mcap import RESULT_TOPIC
    from topreward_ros.rendering.messages import MessageKit, episode_result, episode_result_fields

    summary = EpisodeSummary(
        episode_id="0008-result",
        instruction="stack the cups",
        end_reason=END_STAMP_CUT,
        end_detail="camera stamp jumped back by 2.000 s",
        first_stamp_ns=10_000_000_000,
        last_stamp_ns=12_750_000_001,
        log_prob_true=-3.5,
        progress=0.25,
        success_score=-4.0,
        success=False,
        threshold=-2.5,
        frames=40,
        samples=6,
        ticks=5,
        final_frames_scored=True,
        scored_at_end=True,
        not_scored_reason="",
        model_id="tiny/qwen3-vl",
    )
    expected = {
        "header": {"stamp": stamp(12, 750_000_001), "frame_id": ""},
        "episode_id": "0008-result",
        "instruction": "stack the cups",
        "end_reason": "stamp_cut",
        "end_detail": "camera stamp jumped back by 2.000 s",
        "first_frame_stamp": stamp(10, 0),
        "last_frame_stamp": stamp(12, 750_000_001),
        "log_prob_true": -3.5,
        "progress": 0.25,
        "success_score": -4.0,
        "success": False,
        "threshold": -2.5,
        "frames": 40,
        "samples": 6,
        "ticks": 5,
        "final_frames_scored": True,
        "scored_at_end": True,
        "not_scored_reason": "",
        "model_id": "tiny/qwen3-vl",
    }
    fields = episode_result_fields(summary, message_kit())
    assert set(fields) == set(EpisodeResult.get_fields_and_field_types())
    assert plain(fields) == expected
    from builtin_interfaces.msg import Time as RosTime
    from std_msgs.msg import Header as RosHeader

    node_kit = MessageKit(TaskProgress, EpisodeSuccess, RosHeader, RosTime, EpisodeResult)
    assert plain(episode_result(summary, node_kit)) == expected
    path = write_progress_mcap(
        tmp_path / "progress.mcap",
        [TimedTick(13_000_000_000, RESULT)],
        CONSECUTIVE,
        summary=summary,
        end_log_ns=14_000_000_000,
    )
    with Reader(path) as reader:
        written = [(m.log_time_ns, reader.deserialize(m)) for m in reader.messages([RESULT_TOPIC])]
    # rosbags' class also lists the message's constants (END_*) among its fields.
    assert [(t, {k: v for k, v in plain(m).items() if not k.isupper()}) for t, m in written] == [
        (14_000_000_000, expected)
    ]
