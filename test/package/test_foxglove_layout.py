"""config/foxglove_layout.json names only topics and fields that exist.

The layout is what an operator opens beside the rig (Foxglove, connected
live) or over a relabelled bag's progress.mcap. A renamed topic or message
field would leave a panel silently empty, so every topic the layout names
must be one the running node publishes (checked on a real node in this
process) or one progress.mcap holds, and every plotted field must be a
field of its message.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.context import Context  # noqa: E402
from support.modelless_node import modelless_node  # noqa: E402

from topreward_ros.msg import EpisodeResult, EpisodeSuccess, TaskProgress  # noqa: E402
from topreward_ros.offline import progress_mcap  # noqa: E402

LAYOUT = Path(__file__).resolve().parents[2] / "config" / "foxglove_layout.json"


def layout_references() -> tuple[set[str], set[tuple[str, str]]]:
    """(topics, (topic, field) pairs) the layout's panels name."""
    config = json.loads(LAYOUT.read_text())["configById"]
    topics: set[str] = set()
    fields: set[tuple[str, str]] = set()
    for panel_id, panel in config.items():
        kind = panel_id.split("!")[0]
        if kind == "Image":
            topics.add(panel["imageMode"]["imageTopic"])
        elif kind == "Plot":
            for path in panel["paths"]:
                topic, _, field = path["value"].partition(".")
                topics.add(topic)
                fields.add((topic, field))
        elif kind == "RawMessages":
            topics.add(panel["topicPath"])
        elif kind in ("DiagnosticSummary", "DiagnosticStatusPanel"):
            topics.add(panel["topicToRender"])
        else:
            raise AssertionError(f"panel {panel_id} of a kind this test does not know")
    return topics, fields


def test_layout_panels_are_laid_out() -> None:
    data = json.loads(LAYOUT.read_text())

    def leaves(node: object) -> set[str]:
        if isinstance(node, str):
            return {node}
        assert isinstance(node, dict)
        return leaves(node["first"]) | leaves(node["second"])

    assert leaves(data["layout"]) == set(data["configById"])


def test_every_topic_is_published_by_the_node_or_in_progress_mcap(tmp_path: Path) -> None:
    topics, fields = layout_references()
    context = Context()
    rclpy.init(context=context)
    try:
        node = modelless_node(context, tmp_path)
        try:
            published = {
                name for name, _ in node.get_publisher_names_and_types_by_node(node.get_name(), node.get_namespace())
            }
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    in_mcap = {progress_mcap.PROGRESS_TOPIC, progress_mcap.SUCCESS_TOPIC, progress_mcap.RESULT_TOPIC}
    missing = sorted(t for t in topics if t not in published and t not in in_mcap)
    assert not missing, f"the layout names topics nobody publishes: {missing} (node: {sorted(published)})"
    assert "/scorer_node/progress_image" in topics and "/diagnostics" in topics
    assert "/episode_result" in topics and "/episode_result" in published
    messages = {
        progress_mcap.PROGRESS_TOPIC: TaskProgress,
        progress_mcap.SUCCESS_TOPIC: EpisodeSuccess,
        progress_mcap.RESULT_TOPIC: EpisodeResult,
    }
    for topic, field in fields:
        assert field in messages[topic].get_fields_and_field_types(), f"{topic} has no field {field!r}"
