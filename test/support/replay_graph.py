"""The installed scorer_node fed a replayed bag, and a probe recording what it publishes.

Shared by the tests that replay a bag into the node and compare with
``topreward bag``: the node runs as its own process from its installed
executable; the probe (the test process) records TaskProgress,
EpisodeSuccess, EpisodeResult and /diagnostics; every wait is bounded and fails with the
node's log.

Every test written on these helpers follows the two rules in ``ros_process.py``'s
docstring: wait on a condition, never on a time; assert no outcome of a race.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from support.install_tree import LIB_DIR
from support.ros_process import poll, stop_child

EXECUTABLE = LIB_DIR / "scorer_node"


class Probe:
    """TaskProgress, EpisodeSuccess, EpisodeResult and diagnostics of the node, in the test process."""

    def __init__(self) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        from topreward_ros.msg import EpisodeResult, EpisodeSuccess, TaskProgress

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("replay_probe", context=self.context)
        self.lock = threading.Lock()
        self.progress: list[Any] = []
        self.successes: list[Any] = []
        self.results: list[Any] = []
        self.diagnostics: dict[str, dict[str, str]] = {}
        reliable = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(
            depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        self.node.create_subscription(TaskProgress, "/task_progress", self._keep(self.progress), reliable)
        self.node.create_subscription(EpisodeSuccess, "/episode_success", self._keep(self.successes), latched)
        self.node.create_subscription(EpisodeResult, "/episode_result", self._keep(self.results), latched)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, reliable)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - context shut down at teardown
            pass

    def _keep(self, bucket: list[Any]) -> Callable[[Any], None]:
        def callback(msg: Any) -> None:
            with self.lock:
                bucket.append(msg)

        return callback

    def _on_diag(self, msg: Any) -> None:
        with self.lock:
            for status in msg.status:
                values = {kv.key: kv.value for kv in status.values}
                values["_message"] = status.message
                self.diagnostics[status.name] = values

    def status(self, suffix: str) -> dict[str, str]:
        """The latest values of the diagnostic status whose name ends with ``suffix`` ({} if none yet)."""
        with self.lock:
            return next((dict(v) for k, v in self.diagnostics.items() if k.endswith(suffix)), {})

    def all_published(self) -> bool:
        """Every score the node says it published has arrived here (and there is one)."""
        with self.lock:
            count = len(self.progress)
        return count > 0 and self.status(": scoring").get("published") == str(count)

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
        self.thread.join(5)


def wait_or_fail(predicate: Callable[[], Any], timeout: float, what: str, log: Path) -> None:
    poll(what, predicate, timeout, shown=lambda: f"\nnode log:\n{log.read_text(errors='replace')[-3000:]}")


def replay_node_params(model_dir: Path, camera: str, view_size: int, **params: str) -> dict[str, str]:
    """The node's parameters for a replay: bag time, the tiny model on CPU, one camera, and ``params``.

    The camera's subscription is reliable with a deep queue: these tests
    compare every frame with the offline run, so the subscription must not be
    allowed to drop by design.
    """
    return {
        "use_sim_time": "true",
        "model": str(model_dir),
        "local_files_only": "true",
        "device": "cpu",
        "dtype": "float32",
        "torch_threads": "1",
        "camera_topics": f"[{camera}]",
        "view_size": str(view_size),
        f"qos_overrides.{camera}.subscription.reliability": "reliable",
        f"qos_overrides.{camera}.subscription.depth": "200",
        **params,
    }


@contextmanager
def scorer_node(params: dict[str, str], log: Path, load_timeout: float = 120.0) -> Iterator[Probe]:
    """The installed node with ``params``, its model loaded; stopped with SIGINT at the end."""
    if not EXECUTABLE.exists():
        pytest.fail(f"{EXECUTABLE} missing: run `make build` first")
    args = [str(EXECUTABLE), "--ros-args"]
    for name, value in params.items():
        args += ["-p", f"{name}:={value}"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    probe = Probe()
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=env)
        try:
            wait_or_fail(
                lambda: "loaded" in probe.status(": model").get("_message", ""),
                load_timeout,
                "the node to load the model",
                log,
            )
            yield probe
        finally:
            stop_child(proc)
            probe.close()
