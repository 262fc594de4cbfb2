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

A recorder as ``ros2 bag record`` serves it (``~/pause``, ``~/resume``,
``~/split_bagfile`` of the real rosbag2_interfaces types, served here) is
paused and split on success and resumed when the next episode starts.

``SuccessRule`` (the rule without ROS) and the service type check are checked on their own too.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("rclpy")

from std_srvs.srv import Trigger  # noqa: E402
from support.install_tree import LIB_DIR  # noqa: E402
from support.ros_process import stop_child  # noqa: E402
from support.scorer_node_rig import RIG_PARAMS, Rig, new_episode_after, running_rig  # noqa: E402

from topreward_ros.examples.stop_on_success import ServiceTypeError, SuccessRule, answer_text, service_class  # noqa: E402

pytestmark = [pytest.mark.timeout(300)]

EXECUTABLE = LIB_DIR / "stop_on_success"
ALWAYS = -1.0e9
NEVER = 0.0
NODE_PARAMS = {**RIG_PARAMS, "success_threshold": str(ALWAYS), "success_window": "2", "success_consecutive": "1"}


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


def test_rule_offers_each_episode_start_once() -> None:
    rule = SuccessRule()
    assert rule.to_start() is None  # no episode runs yet
    rule.on_progress("a", success=False)
    assert rule.to_start() == "a"
    assert rule.to_start() == "a"  # not acted on (the service was not up): offered again
    rule.start_acted("a")
    rule.on_progress("a", success=True)
    assert rule.to_start() is None
    rule.on_success("b")  # a success of another episode starts nothing
    assert rule.to_start() is None
    rule.on_progress("b", success=False)
    assert rule.to_start() == "b"


def test_service_types_with_an_empty_request_only() -> None:
    from std_srvs.srv import Empty

    assert service_class("std_srvs/srv/Trigger") is Trigger
    assert service_class("std_srvs/Empty") is Empty
    with pytest.raises(ServiceTypeError, match=r"request has fields \(data\)"):
        service_class("std_srvs/srv/SetBool")
    with pytest.raises(ServiceTypeError, match="package/srv/Name"):
        service_class("Trigger")
    with pytest.raises(ServiceTypeError, match="no_such_pkg is not installed"):
        service_class("no_such_pkg/srv/Stop")
    with pytest.raises(ServiceTypeError, match="std_srvs has no service Stop"):
        service_class("std_srvs/srv/Stop")
    assert answer_text(Trigger.Response(success=False, message="busy")) == (False, "busy")
    assert answer_text(Trigger.Response(success=True)) == (True, "done")
    assert answer_text(Empty.Response()) == (True, "done")


def test_a_service_type_that_cannot_be_called_stops_the_consumer_with_the_reason(tmp_path: Path) -> None:
    if not EXECUTABLE.exists():
        pytest.fail(f"{EXECUTABLE} missing: run `make build`")
    run = subprocess.run(
        [str(EXECUTABLE), "--ros-args", "-p", "stop_service:=/rig/set", "-p", "service_type:=std_srvs/srv/SetBool"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run
    assert "only services with an empty request can be called" in run.stderr, run.stderr


class Consumer:
    """An installed stop_on_success process; ``service`` (a Trigger) is served here and counted."""

    def __init__(self, rig: Rig, service: str, log_path: Path, **params: str) -> None:
        self.calls = 0
        self._lock = threading.Lock()
        self.service = rig.node.create_service(Trigger, service, self._serve) if not params else None
        self.log_path = log_path
        self._log = open(log_path, "wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0")
        args = [
            str(EXECUTABLE),
            "--ros-args",
            "-p",
            f"stop_service:={service}",
            "-r",
            f"__node:=stop_on_success_{service.strip('/').replace('/', '_')}",
        ]
        for name, value in params.items():
            args += ["-p", f"{name}:={value}"]
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env)

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


class Recorder:
    """The services ``ros2 bag record`` serves in Jazzy, of their real rosbag2_interfaces types.

    Keeps the state a recorder would: paused or not, and the number of bag files.
    """

    def __init__(self, rig: Rig, name: str = "/rosbag2_recorder") -> None:
        srv = pytest.importorskip(
            "rosbag2_interfaces.srv",
            reason="rosbag2_interfaces is not installed: `make ros-extras` builds it from the ros-extras "
            "sources beside the checkout (tools/install_rosbag2_interfaces.sh)",
        )
        self.name = name
        self._lock = threading.Lock()
        self.paused = False
        self.files = 1
        self.calls: list[str] = []
        self._services = [
            rig.node.create_service(srv.Pause, f"{name}/pause", self._pause),
            rig.node.create_service(srv.Resume, f"{name}/resume", self._resume),
            rig.node.create_service(srv.SplitBagfile, f"{name}/split_bagfile", self._split),
        ]

    def _pause(self, request: Any, response: Any) -> Any:
        with self._lock:
            self.calls.append("pause")
            self.paused = True
        return response

    def _resume(self, request: Any, response: Any) -> Any:
        with self._lock:
            self.calls.append("resume")
            self.paused = False
        return response

    def _split(self, request: Any, response: Any) -> Any:
        with self._lock:
            self.calls.append("split")
            self.files += 1
        return response

    def state(self) -> tuple[bool, int, list[str]]:
        with self._lock:
            return self.paused, self.files, list(self.calls)

    def count(self, call: str) -> int:
        return self.state()[2].count(call)


@pytest.fixture
def rig(tiny_model_dir: Path, tmp_path: Path) -> Any:
    if not EXECUTABLE.exists():
        pytest.fail(f"{EXECUTABLE} missing: run `make build`")
    with running_rig(
        {**NODE_PARAMS, "model": str(tiny_model_dir)}, tmp_path / "node.log", compressed_camera=False
    ) as the_rig:
        yield the_rig


def progress_count(rig: Rig, episode: str) -> int:
    with rig.lock:
        return len(rig.progress_of(episode))


def test_one_call_per_successful_episode_and_none_for_a_stale_latched_success(rig: Rig, tmp_path: Path) -> None:
    consumers: list[Consumer] = []
    try:
        first = Consumer(rig, "/recorder1/stop", tmp_path / "first.log")
        consumers.append(first)
        rig.wait_for(
            "stop_on_success to subscribe to progress and success",
            lambda: (
                rig.node.count_subscribers("/task_progress") >= 2
                and rig.node.count_subscribers("/episode_success") >= 2
            ),
            timeout=60,
        )

        # Episode A succeeds: exactly one call.
        rig.instruct("stack the cups")
        episode_a = new_episode_after(rig, set(), "stack the cups")[0].episode_id
        rig.wait_for("EpisodeSuccess of episode A", lambda: any(s.episode_id == episode_a for s in rig.successes))
        rig.wait_for("the first consumer's call for A", lambda: first.count() >= 1, timeout=60)

        # Episode B, undecided: nothing passes the threshold.
        results = rig.set_params(success_threshold=NEVER)
        assert all(r.successful for r in results), results
        rig.instruct("open the drawer")
        episode_b = new_episode_after(rig, {episode_a}, "open the drawer")[0].episode_id

        # A late consumer: the latched EpisodeSuccess it receives is A's.
        second = Consumer(rig, "/recorder2/stop", tmp_path / "second.log")
        consumers.append(second)
        rig.wait_for(
            "the late consumer to leave A's latched success alone",
            lambda: f"not acting on the EpisodeSuccess of episode {episode_a}" in second.log(),
            timeout=60,
        )
        have = progress_count(rig, episode_b)
        rig.wait_for(
            "more progress of the undecided episode B", lambda: len(rig.progress_of(episode_b)) >= have + 4, timeout=60
        )
        assert first.count() == 1, first.log()
        assert second.count() == 0, f"acted on a stale latched success:\n{second.log()}"

        # B succeeds: one call from each consumer, and no more afterwards.
        results = rig.set_params(success_threshold=ALWAYS)
        assert all(r.successful for r in results), results
        rig.wait_for(
            "EpisodeSuccess of episode B", lambda: any(s.episode_id == episode_b for s in rig.successes), timeout=60
        )
        rig.wait_for("both consumers' calls for B", lambda: first.count() >= 2 and second.count() >= 1, timeout=60)
        have = progress_count(rig, episode_b)
        rig.wait_for(
            "more progress of B, success latched",
            lambda: len([m for m in rig.progress_of(episode_b)[have:] if m.success]) >= 4,
            timeout=60,
        )
        assert (first.count(), second.count()) == (2, 1), (first.log(), second.log())
        rig.wait_for(
            "the second consumer's logged answer for B",
            lambda: f"episode {episode_b}: /recorder2/stop answered" in second.log(),
            timeout=20,
        )
    finally:
        for consumer in consumers:
            consumer.stop()


def test_success_pauses_and_splits_a_recorder_and_the_next_episode_resumes_it(rig: Rig, tmp_path: Path) -> None:
    recorder = Recorder(rig)
    consumers: list[Consumer] = []
    try:
        pauser = Consumer(
            rig,
            f"{recorder.name}/pause",
            tmp_path / "pause.log",
            service_type="rosbag2_interfaces/srv/Pause",
            start_service=f"{recorder.name}/resume",
            start_service_type="rosbag2_interfaces/srv/Resume",
        )
        consumers.append(pauser)
        splitter = Consumer(
            rig,
            f"{recorder.name}/split_bagfile",
            tmp_path / "split.log",
            service_type="rosbag2_interfaces/srv/SplitBagfile",
        )
        consumers.append(splitter)
        rig.wait_for(
            "both consumers to subscribe to progress and success",
            lambda: (
                rig.node.count_subscribers("/task_progress") >= 3
                and rig.node.count_subscribers("/episode_success") >= 3
            ),
            timeout=60,
        )

        # Episode A starts (resume: a no-op on a running recorder) and succeeds: paused, split.
        rig.instruct("stack the cups")
        episode_a = new_episode_after(rig, set(), "stack the cups")[0].episode_id
        rig.wait_for("EpisodeSuccess of episode A", lambda: any(s.episode_id == episode_a for s in rig.successes))
        rig.wait_for(
            "the recorder paused and split for A",
            lambda: recorder.count("pause") == 1 and recorder.count("split") == 1,
            timeout=60,
        )
        have = progress_count(rig, episode_a)
        rig.wait_for(
            "more progress of A, success latched",
            lambda: len([m for m in rig.progress_of(episode_a)[have:] if m.success]) >= 4,
            timeout=60,
        )
        paused, files, calls = recorder.state()
        assert (paused, files) == (True, 2), calls
        assert calls.count("resume") == 1 and calls.index("resume") < calls.index("pause"), calls

        # Episode B starts undecided: the recorder resumes, nothing else happens.
        results = rig.set_params(success_threshold=NEVER)
        assert all(r.successful for r in results), results
        rig.instruct("open the drawer")
        episode_b = new_episode_after(rig, {episode_a}, "open the drawer")[0].episode_id
        rig.wait_for("the recorder resumed for B", lambda: recorder.count("resume") == 2, timeout=60)
        have = progress_count(rig, episode_b)
        rig.wait_for(
            "more progress of the undecided episode B", lambda: len(rig.progress_of(episode_b)) >= have + 4, timeout=60
        )
        paused, files, calls = recorder.state()
        assert (paused, files) == (False, 2), calls
        assert calls.count("pause") == 1 and calls.count("resume") == 2, calls
        rig.wait_for(
            "the pauser's logged answer for B's start",
            lambda: f"episode {episode_b}: {recorder.name}/resume answered: done" in pauser.log(),
            timeout=20,
        )
        assert "rosbag2_interfaces/srv/Pause" in pauser.log(), pauser.log()
    finally:
        for consumer in consumers:
            consumer.stop()
