"""EpisodeResult from a real in-process ScorerNode: once per ended episode, latched, never silent.

The node here has no model (its model directory does not exist), so it
cannot score: every episode it ends must still get its result, which says
that the last frames were not scored and why. A reset ends the first
episode, destroying the node ends the second (``shutdown``), and a
subscriber that joins after the first result receives it (latched). The
managed node keeps its episode over deactivate (no result) and ends it at
cleanup; the installed node stopped by SIGINT or SIGTERM publishes its
running episode's result before it exits.
The scored path (final samples scored once at the end, the verdict equal
to ``topreward bag``'s) is covered by test_replay_under_load.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from support.modelless_node import modelless_node  # noqa: E402

from topreward_ros.msg import EpisodeResult  # noqa: E402

INSTRUCTION = "fold the towel"
LATCHED = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)


def spin_until(
    executor: SingleThreadedExecutor, condition: Callable[[], Any], what: str, timeout: float = 60.0
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        executor.spin_once(timeout_sec=0.1)


def test_every_ended_episode_gets_one_result_even_unscored(context: Context, tmp_path: Path) -> None:
    node = modelless_node(context, tmp_path, rate_hz=20.0, success_threshold=-7.5, instruction=INSTRUCTION)
    listener = rclpy.create_node("result_listener", context=context)
    early: list[Any] = []
    listener.create_subscription(EpisodeResult, "episode_result", early.append, LATCHED)
    client = listener.create_client(Trigger, "scorer_node/reset")
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(listener)
    destroyed = False
    try:
        first = node._runner.episode_id
        assert first is not None
        spin_until(
            executor,
            lambda: client.service_is_ready() and listener.count_publishers("episode_result") == 1,
            "the reset service",
        )
        future = client.call_async(Trigger.Request())
        spin_until(executor, future.done, "the reset")
        second = future.result().message
        assert future.result().success and second != first
        spin_until(executor, lambda: len(early) >= 1, "the first episode's result")
        (result,) = early
        assert (result.episode_id, result.instruction) == (first, INSTRUCTION)
        assert result.end_reason == EpisodeResult.END_RESET and result.end_detail == "reset service"
        assert result.success is False and result.threshold == -7.5
        assert not result.final_frames_scored and not result.scored_at_end
        assert result.not_scored_reason == "no usable camera frame"
        assert (result.frames, result.samples, result.ticks) == (0, 0, 0)

        # A subscriber that joins late receives the last result (latched).
        late: list[Any] = []
        listener.create_subscription(EpisodeResult, "episode_result", late.append, LATCHED)
        spin_until(executor, lambda: len(late) == 1, "the latched result")
        assert late[0].episode_id == first
        (status,) = [s for s in node.diagnostic_statuses() if s.name.endswith(": episode")]
        diagnostics = {kv.key: kv.value for kv in status.values}
        assert diagnostics["episode_results"] == "1" and diagnostics["last_ended_episode"] == first
        assert diagnostics["success_threshold"] == "-7.5"

        # Shutting the node down ends the running episode: its result goes out first.
        executor.remove_node(node)
        node.destroy_node()
        destroyed = True
        spin_until(executor, lambda: len(late) == 2, "the second episode's result at shutdown")
        assert late[1].episode_id == second
        assert late[1].end_reason == EpisodeResult.END_SHUTDOWN
        assert len(early) == 2 and early[1].episode_id == second  # exactly one result each
    finally:
        executor.shutdown()
        listener.destroy_node()
        if not destroyed:
            node.destroy_node()


def test_managed_node_keeps_the_episode_over_deactivate_and_ends_it_at_cleanup(
    context: Context, tiny_model_dir: Path
) -> None:
    from lifecycle_msgs.msg import State

    from topreward_ros.node.managed import ManagedScorerNode

    node = ManagedScorerNode(
        context=context,
        parameter_overrides=[
            Parameter("model", value=str(tiny_model_dir)),
            Parameter("local_files_only", value=True),
            Parameter("device", value="cpu"),
            Parameter("dtype", value="float32"),
            Parameter("torch_threads", value=1),
            Parameter("rate_hz", value=20.0),
            Parameter("instruction", value=INSTRUCTION),
        ],
    )
    listener = rclpy.create_node("managed_result_listener", context=context)
    results: list[Any] = []
    listener.create_subscription(EpisodeResult, "episode_result", results.append, LATCHED)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(listener)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        episode = node._runner.episode_id
        assert episode is not None
        spin_until(executor, lambda: listener.count_publishers("episode_result") == 1, "the result publisher")
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert node._runner.episode_id == episode  # deactivate keeps the episode: no result
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        assert results == []
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED
        spin_until(executor, lambda: len(results) == 1, "the result at cleanup")
        (result,) = results
        assert (result.episode_id, result.end_reason) == (episode, EpisodeResult.END_SHUTDOWN)
        assert result.end_detail == "node cleaned up or shut down"
        assert result.not_scored_reason == "no usable camera frame" and not result.success
    finally:
        executor.shutdown()
        listener.destroy_node()
        node.destroy_node()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_installed_node_publishes_the_running_episode_when_stopped(tmp_path: Path, signum: int) -> None:
    """Ctrl-C (or ros2 launch's SIGTERM) ends the running episode: its result goes out before the exit."""
    from support.replay_graph import EXECUTABLE, Probe, wait_or_fail

    log = tmp_path / "node.log"
    probe = Probe()
    try:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [
                    str(EXECUTABLE),
                    "--ros-args",
                    "-p",
                    f"model:={tmp_path / 'no-model'}",
                    "-p",
                    "model_retry_s:=3600.0",
                    "-p",
                    f"instruction:={INSTRUCTION}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )
        try:
            wait_or_fail(
                lambda: (
                    probe.status(": episode").get("instruction") == INSTRUCTION
                    and probe.node.count_publishers("/episode_result") == 1
                ),
                60,
                "the node's first episode",
                log,
            )
            episode = probe.status(": episode")["episode_id"]
            proc.send_signal(signum)
            assert proc.wait(30) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        wait_or_fail(lambda: len(probe.results) == 1, 30, "the result of the running episode", log)
        (result,) = probe.results
        assert (result.episode_id, result.instruction) == (episode, INSTRUCTION)
        assert (result.end_reason, result.end_detail) == (EpisodeResult.END_SHUTDOWN, "node shut down")
        assert not result.success and result.not_scored_reason == "no usable camera frame"
    finally:
        probe.close()
