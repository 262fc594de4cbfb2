"""The stop-on-success example consumer, against the installed scorer_node on a real graph.

The installed ``scorer_node`` runs with the tiny random model; thresholds sit
where the random scores cannot matter (-1e9: every score passes, 0.0: none
does). Two installed ``stop_on_success`` processes each call their own
std_srvs/Trigger service, served by this test process, which counts calls:

* the first runs from the start: one call for episode A when it succeeds;
* the second starts while episode B runs and has not succeeded: it receives
  A's latched EpisodeSuccess and must NOT act on it (stale);
* when B succeeds, each calls exactly once more (first: A and B, second: B),
  and the later progress messages of B (success latched) add no call.

``SuccessRule`` (the rule without ROS) is checked on its own too.
"""
from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("rclpy")

from ros_process import stop_child  # noqa: E402
from scorer_node_rig import CAM0, Rig, new_episode_after, running_rig  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from install_tree import LIB_DIR  # noqa: E402
from topreward_ros.examples.stop_on_success import SuccessRule  # noqa: E402

pytestmark = [pytest.mark.timeout(300)]

EXECUTABLE = LIB_DIR / "stop_on_success"
ALWAYS = -1.0e9
NEVER = 0.0
NODE_PARAMS = {
    "use_sim_time": "true",
    "camera_topics": f"['{CAM0}']",
    "rate_hz": "4.0",
    "view_size": "64",
    "max_frames": "24",
    "success_threshold": str(ALWAYS),
    "success_window": "2",
    "success_consecutive": "1",
    "diagnostics_period_s": "0.25",
    "torch_threads": "1",
}


def test_rule_acts_once_and_only_for_the_running_episode() -> None:
    rule = SuccessRule()
    # A late start: the latched success of an old episode comes before any progress.
    assert rule.on_success("old") is None
    assert rule.on_progress("b", success=False) is None  # B runs: "old" is never acted on
    assert rule.on_progress("b", success=False) is None
    assert rule.on_progress("b", success=True) == "b"
    rule.acted("b")
    assert rule.on_progress("b", success=True) is None  # latched in later messages: no second act
    assert rule.on_success("b") is None
    # EpisodeSuccess of the running episode acts at once ...
    assert rule.on_progress("c", success=False) is None
    assert rule.on_success("c") == "c"
    rule.acted("c")
    # ... and one that arrives before its episode's first progress waits for it.
    assert rule.on_success("d") is None
    assert rule.on_progress("d", success=False) == "d"
    # An act that could not be made (rule.acted not called) is offered again.
    assert rule.on_progress("d", success=False) == "d"


class Consumer:
    """An installed stop_on_success process and the Trigger service it calls (served here)."""

    def __init__(self, rig: Rig, service: str, log_path: Path) -> None:
        self.calls = 0
        self._lock = threading.Lock()
        self.service = rig.node.create_service(Trigger, service, self._serve)
        self.log_path = log_path
        self._log = open(log_path, "wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0")
        self.proc = subprocess.Popen(
            [str(EXECUTABLE), "--ros-args", "-p", f"stop_service:={service}",
             "-r", f"__node:=stop_on_success_{service.strip('/').replace('/', '_')}"],
            stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def _serve(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            self.calls += 1
            response.message = f"stopped (call {self.calls})"
        response.success = True
        return response

    def count(self) -> int:
        with self._lock:
            return self.calls

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_child(self.proc, timeout=20)
        self._log.close()


@pytest.fixture
def rig(tiny_model_dir: Path, tmp_path: Path) -> Any:
    if not EXECUTABLE.exists():
        pytest.fail(f"{EXECUTABLE} missing: run `make build`")
    with running_rig({**NODE_PARAMS, "model": str(tiny_model_dir)}, tmp_path / "node.log",
                     compressed_camera=False) as the_rig:
        yield the_rig


def progress_count(rig: Rig, episode: str) -> int:
    with rig.lock:
        return len(rig.progress_of(episode))


@pytest.mark.graph
def test_one_call_per_successful_episode_and_none_for_a_stale_latched_success(rig: Rig, tmp_path: Path) -> None:
    consumers: list[Consumer] = []
    try:
        first = Consumer(rig, "/recorder1/stop", tmp_path / "first.log")
        consumers.append(first)
        rig.wait_for("stop_on_success to subscribe to progress and success", lambda: (
            rig.node.count_subscribers("/task_progress") >= 2
            and rig.node.count_subscribers("/episode_success") >= 2), timeout=60)

        # Episode A succeeds: exactly one call.
        rig.instruct("stack the cups")
        episode_a = new_episode_after(rig, set(), "stack the cups")[0].episode_id
        rig.wait_for("EpisodeSuccess of episode A",
                     lambda: any(s.episode_id == episode_a for s in rig.successes))
        rig.wait_for("the first consumer's call for A", lambda: first.count() >= 1, timeout=60)

        # Episode B, undecided: nothing passes the threshold.
        results = rig.set_params(success_threshold=NEVER)
        assert all(r.successful for r in results), results
        rig.instruct("open the drawer")
        episode_b = new_episode_after(rig, {episode_a}, "open the drawer")[0].episode_id

        # A late consumer: the latched EpisodeSuccess it receives is A's.
        second = Consumer(rig, "/recorder2/stop", tmp_path / "second.log")
        consumers.append(second)
        rig.wait_for("the late consumer to leave A's latched success alone", lambda: (
            f"not acting on the EpisodeSuccess of episode {episode_a}" in second.log()), timeout=60)
        have = progress_count(rig, episode_b)
        rig.wait_for("more progress of the undecided episode B",
                     lambda: len(rig.progress_of(episode_b)) >= have + 4, timeout=60)
        assert first.count() == 1, first.log()
        assert second.count() == 0, f"acted on a stale latched success:\n{second.log()}"

        # B succeeds: one call from each consumer, and no more afterwards.
        results = rig.set_params(success_threshold=ALWAYS)
        assert all(r.successful for r in results), results
        rig.wait_for("EpisodeSuccess of episode B",
                     lambda: any(s.episode_id == episode_b for s in rig.successes), timeout=60)
        rig.wait_for("both consumers' calls for B",
                     lambda: first.count() >= 2 and second.count() >= 1, timeout=60)
        have = progress_count(rig, episode_b)
        rig.wait_for("more progress of B, success latched",
                     lambda: len([m for m in rig.progress_of(episode_b)[have:] if m.success]) >= 4, timeout=60)
        assert (first.count(), second.count()) == (2, 1), (first.log(), second.log())
        rig.wait_for("the second consumer's logged answer for B",
                     lambda: f"episode {episode_b}: /recorder2/stop answered" in second.log(), timeout=20)
    finally:
        for consumer in consumers:
            consumer.stop()
