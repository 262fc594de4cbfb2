"""The node's spin loop outlives subscriptions destroyed from executor threads.

The managed node destroys its subscriptions (each with QoS event handlers) in
a lifecycle transition, which runs on an executor thread while the main thread
builds the next wait set. rclpy raises ``InvalidHandle`` out of ``spin_once``
when the destroy lands between its two uses of an event handler
(ros2/rclpy#1206); uncaught, that ended the node in the middle of a
``ros2 lifecycle set deactivate``.

The window is a few bytecodes wide. Here the interpreter switches threads
after nearly every bytecode (``sys.setswitchinterval``) and a timer destroys
and recreates five such subscriptions every millisecond, so the window is hit
within a few hundred cycles; without the loop's handling the test raises
``InvalidHandle``. The test then checks that the loop still delivers
messages to a subscription that was never destroyed. (rclpy may print
"The following exception was never retrieved: cannot use Destroyable": an
event handler's task whose entity was destroyed before it ran. That task
fails alone, inside the executor; the loop is what this test guards.)
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("rclpy")

import rclpy  # noqa: E402
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup  # noqa: E402
from rclpy.event_handler import SubscriptionEventCallbacks  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from topreward_ros.node.run import spin_until_shutdown  # noqa: E402

#: Destroy-and-recreate cycles; the race shows within a few hundred at this switch interval.
CYCLES = 1500
SUBSCRIPTIONS_PER_CYCLE = 5


@pytest.fixture
def fast_thread_switches() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


def test_destroying_subscriptions_from_a_callback_does_not_end_the_spin_loop(
    context: Any, fast_thread_switches: None
) -> None:
    node = rclpy.create_node("spin_loop_churn", context=context)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    executor.add_node(node)
    churned: list[Any] = []
    cycles = 0
    churn_done = threading.Event()

    def churn() -> None:
        nonlocal cycles
        if churn_done.is_set():
            return
        for sub in churned:
            node.destroy_subscription(sub)
        churned.clear()
        cycles += 1
        if cycles >= CYCLES:
            churn_done.set()
            return
        for index in range(SUBSCRIPTIONS_PER_CYCLE):
            churned.append(
                node.create_subscription(
                    String,
                    f"churn_{index}",
                    lambda msg: None,
                    10,
                    callback_group=MutuallyExclusiveCallbackGroup(),
                    event_callbacks=SubscriptionEventCallbacks(
                        incompatible_qos=lambda event: None, message_lost=lambda event: None
                    ),
                )
            )

    node.create_timer(0.001, churn, callback_group=MutuallyExclusiveCallbackGroup())
    try:
        spin_until_shutdown(executor, keep_going=lambda: not churn_done.is_set())
        assert cycles == CYCLES
        assert churned == []

        # The loop still serves the node: a message published now reaches a steady subscription.
        received: list[str] = []
        node.create_subscription(String, "steady", lambda msg: received.append(msg.data), 10)
        publisher = node.create_publisher(String, "steady", 10)

        def publish_until_received() -> bool:
            if "after the churn" not in received:
                publisher.publish(String(data="after the churn"))
                return True
            return False

        spin_until_shutdown(executor, keep_going=publish_until_received)
        assert received[-1] == "after the churn"
    finally:
        executor.shutdown()
        node.destroy_node()
