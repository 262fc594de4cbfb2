"""``scorer_node``: the plain scorer node, scoring from start-up.

It runs the base's configure and activate phases at construction: publishers
and subscriptions exist at once and the model loads in the background, retried
until it loads.
"""

from __future__ import annotations

from typing import Any, NoReturn

from topreward_ros.node.base import ScorerNodeBase
from topreward_ros.node.run import run


class ScorerNode(ScorerNodeBase):
    """The scorer, active from construction (see ``ScorerNodeBase``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._configure()
        self._activate()
        topics = [c.topic for c in self._cameras]
        self.get_logger().info(
            f"scoring {len(topics)} camera(s) {topics} at {self.get_parameter('rate_hz').value} Hz "
            f"with model {self.get_parameter('model').value!r}"
        )


def main(args: list[str] | None = None) -> NoReturn:
    """``scorer_node``: the plain node, scoring from start-up."""
    run(ScorerNode, args)


if __name__ == "__main__":
    main()
