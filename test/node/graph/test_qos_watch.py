"""QoSWatch keeps one record per endpoint however often the endpoint is created again.

A managed node creates its subscriptions and publishers again at every
activation. Each creation registers with the watch; the record (what was
counted, which policies were explained) must be the one the node had, not
a new one beside it, or the counts on /diagnostics would split and the
records grow with every activation. Real rclpy endpoints with a really
incompatible peer give the events.
"""

from __future__ import annotations

import time

import pytest

rclpy = pytest.importorskip("rclpy")


from rclpy.context import Context  # noqa: E402
from rclpy.event_handler import SubscriptionEventCallbacks  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from topreward_ros.node.qos_watch import QoSWatch  # noqa: E402


def spin_until(executor: SingleThreadedExecutor, done, limit: int = 200) -> bool:
    for _ in range(limit):
        executor.spin_once(timeout_sec=0.05)
        if done():
            return True
    return False


def test_an_endpoint_created_again_keeps_its_record_and_is_explained_once(context: Context) -> None:
    node = rclpy.create_node("qos_watch_test", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    logged: list[str] = []
    watch = QoSWatch(logged.append, lambda topic, side: [])
    reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    best_effort = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
    try:
        node.create_publisher(String, "/watched", best_effort)
        for activation in range(2):
            sub = node.create_subscription(
                String,
                "/watched",
                lambda msg: None,
                reliable,
                event_callbacks=SubscriptionEventCallbacks(
                    incompatible_qos=watch.watch("/watched", "subscription", reliable, "set it to best effort")
                ),
            )
            counted = watch.counts().get("subscription /watched", 0)
            assert spin_until(executor, lambda: watch.counts()["subscription /watched"] > counted), (
                f"no incompatible-QoS event in activation {activation}"
            )
            node.destroy_subscription(sub)
            time.sleep(0.1)
        assert list(watch.counts()) == ["subscription /watched"]
        assert watch.counts()["subscription /watched"] >= 2  # both activations, one record
        assert watch.last_policies() == ["subscription /watched: reliability"]
        assert len(logged) == 1 and "set it to best effort" in logged[0]
    finally:
        executor.shutdown()
        node.destroy_node()
