"""A scorer node in the test's own process, with no model to load.

Most node tests are about its ROS side (topics, QoS, messages, diagnostics),
not about scores. Such a node is given a model path that does not exist and a
retry period of an hour: it never downloads or loads anything, serves its
topics at once, and reports the missing model on /diagnostics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def modelless_node(context: Any, tmp_path: Path, **params: Any) -> Any:
    """A ``ScorerNode`` on ``context`` with ``params`` as parameter overrides and no model."""
    from rclpy.parameter import Parameter

    from topreward_ros.node.scorer_node import ScorerNode

    overrides = {"model": str(tmp_path / "no-model"), "model_retry_s": 3600.0, **params}
    return ScorerNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
