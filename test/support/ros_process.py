"""A ROS 2 command (``ros2 launch``, ``ros2 run``, a launch runner) as a child process of a test.

Shared by the tests that start the installed package the way a user does and
then signal it like a terminal: output goes to a file (shown when a wait
fails), launch's own log to a ROS_LOG_DIR of the test's, and Ctrl-C is a
SIGINT, to the command or to its whole process group as a terminal sends it.

Two rules for every test written on these helpers (a graph test that breaks
them fails at random on a busy machine, and CI rejects the work):

* Wait on a condition, never on a time: poll for what the test needs to see
  (a node listed, a subscription matched, a message received, a value read
  back), with a generous bound that only turns a hang into a failure.
* Assert nothing that depends on which of two threads or processes runs
  first (a load error against a Ctrl-C, a stall against a skipped tick):
  wait until the outcome under test has happened, or accept each correct one.

``make test-soak MODULES=... RUNS=... BURNERS=...`` runs a module many times,
beside busy processes, to show a new test holds.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import parameter_value_to_python
from rclpy.parameter_client import AsyncParameterClient
from sensor_msgs.msg import Image

NODE = "scorer_node"
T = TypeVar("T")


class RosProcess:
    """A command started in its own session with default SIGINT handling, output in ``WORKDIR/NAME.out``."""

    def __init__(self, argv: Sequence[str], workdir: Path, name: str = "launch", cwd: Path | None = None) -> None:
        self.workdir = workdir
        self.log_path = workdir / f"{name}.out"
        self.ros_log_dir = workdir / f"{name}_ros_log"
        env = dict(
            os.environ,
            PYTHONUNBUFFERED="1",
            OMP_NUM_THREADS="1",
            RCUTILS_COLORIZED_OUTPUT="0",
            ROS_LOG_DIR=str(self.ros_log_dir),
        )
        self._out = open(self.log_path, "wb")
        # A shell starting us in the background may have set SIGINT to "ignore",
        # which children inherit: give the command the default, as a terminal would.
        # Its own process group (= its pid): Ctrl-C reaches all of it, and a failed
        # test can take everything it started down with it.
        self.proc = subprocess.Popen(
            list(argv),
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def launch_log(self) -> str:
        """launch's own log file (timestamped lines) below ROS_LOG_DIR."""
        files = sorted(self.ros_log_dir.glob("*/launch.log"))
        return files[-1].read_text(errors="replace") if files else ""

    def interrupt(self, timeout: float = 60.0, group: bool = False) -> int:
        """Ctrl-C: SIGINT (to the process, or to its process group as a terminal does), then wait for the exit.

        No escalation of our own: a command still running after ``timeout`` fails the test.
        """
        if group:
            os.killpg(self.proc.pid, signal.SIGINT)
        else:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.proc.args[:3]} still running {timeout} s after SIGINT:\n{self.log()[-4000:]}")

    def close(self) -> None:
        if self.alive():
            # Only reached when a test failed before interrupting: leave nothing behind.
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything of its group still there
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(10)
        self._out.close()


def stop_child(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Ctrl-C a child process that may still run, and make sure it is gone.

    SIGINT first (the node's own clean shutdown), SIGKILL if it has not
    exited ``timeout`` seconds later: a test never leaves a node behind.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def poll(
    what: str,
    predicate: Callable[[], T | None],
    timeout: float,
    stopped: Callable[[], str | None] = lambda: None,
    shown: Callable[[], str] = lambda: "",
) -> T:
    """The one waiting loop of the graph tests: poll ``predicate`` until it returns something true.

    ``stopped`` says why waiting is pointless (the process under test
    exited) and fails at once; ``shown`` is what a timeout prints (a log
    tail). ``timeout`` only turns a hang into a failure: it is never what
    the test waits for (see the module doc).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        reason = stopped()
        if reason:
            pytest.fail(f"{reason} while waiting for {what}")
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}{shown()}")


def wait_for(what: str, predicate: Callable[[], T | None], process: RosProcess, timeout: float = 60.0) -> T:
    """Poll ``predicate`` until it returns something true; fail with the process's output otherwise."""

    def stopped() -> str | None:
        if process.alive():
            return None
        return f"{process.proc.args[:3]} exited (rc {process.proc.returncode}), output:\n{process.log()}"

    return poll(what, predicate, timeout, stopped, lambda: f"; output:\n{process.log()[-4000:]}")


def assert_clean_exit(launch: RosProcess, returncode: int, expected_errors: Sequence[str] = ()) -> None:
    """Ctrl-C ended the node inside launch's grace period, with nothing logged as an error but what was expected.

    ``expected_errors``: patterns of error lines the test provoked on purpose (a
    missing model). Every ``[ERROR]`` line must match one of them; a test that
    expects one waits for it before its Ctrl-C, so what is logged does not
    depend on whether the failure or the Ctrl-C came first.
    """
    out = launch.log()
    assert returncode == 0, f"launch exit code {returncode}:\n{out}"
    assert re.search(rf"\[{NODE}-1\]: process has finished cleanly", out), out
    assert "SIGTERM" not in out, f"launch escalated to SIGTERM:\n{out}"
    assert "SIGKILL" not in out, out
    unexpected = [
        line for line in out.splitlines() if "[ERROR]" in line and not any(re.search(p, line) for p in expected_errors)
    ]
    assert not unexpected, out
    assert "Traceback" not in out, out
    print(f"shutdown after SIGINT, from launch's log: {shutdown_seconds(launch.launch_log()):.2f} s")


def shutdown_seconds(launch_log: str) -> float:
    """Seconds from launch's 'user interrupted' line to the node's 'finished cleanly' line."""
    stamps: dict[str, float] = {}
    for line in launch_log.splitlines():
        for key in ("user interrupted", "finished cleanly"):
            if key in line and key not in stamps:
                stamps[key] = float(line.split()[0])
    if len(stamps) != 2:
        return float("nan")
    return stamps["finished cleanly"] - stamps["user interrupted"]


class GraphProbe:
    """A node in its own context that looks at the graph and talks to the scorer."""

    def __init__(self, name: str = "launch_graph_probe") -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin(self, seconds: float = 0.1) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)

    def node_present(self, namespace: str) -> bool:
        self.spin()
        return (NODE, namespace) in self.node.get_node_names_and_namespaces()

    def topics_of(self, namespace: str, kind: str) -> dict[str, list[str]]:
        self.spin()
        get = (
            self.node.get_subscriber_names_and_types_by_node
            if kind == "sub"
            else self.node.get_publisher_names_and_types_by_node
        )
        try:
            return dict(get(NODE, namespace))
        except Exception:  # the node left the graph between the two calls
            return {}

    def parameters(self, full_name: str, names: list[str], process: RosProcess) -> dict[str, Any]:
        """The values of ``names`` of the node ``full_name`` (``/ns/scorer_node``), once it is on the graph."""
        namespace, _, node = full_name.rpartition("/")
        assert node == NODE, f"{full_name}: the probe reads {NODE}'s parameters"
        wait_for(f"{full_name} on the graph", lambda: self.node_present(namespace or "/"), process)
        client = AsyncParameterClient(self.node, full_name)
        wait_for(
            f"the parameter services of {full_name}", lambda: (self.spin(), client.services_are_ready())[1], process
        )
        future = client.get_parameters(names)
        wait_for("the get_parameters answer", lambda: (self.spin(0.05), future.done())[1], process, timeout=30)
        return {n: parameter_value_to_python(v) for n, v in zip(names, future.result().values)}

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def rgb_frame(stamp: Any, index: int) -> Image:
    """A small rgb8 sensor_msgs/Image (48x64) whose pixels change with ``index``."""
    msg = Image()
    msg.header.stamp = stamp
    msg.height, msg.width, msg.encoding, msg.step = 48, 64, "rgb8", 64 * 3
    msg.data = bytes(((x + index * 7) % 256 for x in range(64 * 48 * 3)))
    return msg
