"""The managed scorer through its lifecycle, driven by `ros2 lifecycle` on a real graph.

The installed ``managed_scorer_node`` runs as its own process; the rig (test
process) plays /clock, two cameras and the instruction and records what the
node publishes. Transitions are requested with the command line operators
use, ``ros2 lifecycle set /scorer_node <transition>``, and read back with
``ros2 lifecycle get``:

* unconfigured: no model, nothing subscribed, nothing published;
* configure loads the model before it returns; a model that cannot load
  fails the transition, names why, and leaves the node unconfigured;
* active: instructions start episodes, scores and success are published;
* deactivate: nothing is scored and no frame is taken; the episode and its
  latched success survive, and at the next activate the same episode goes on,
  still successful, with no second EpisodeSuccess;
* release_model_on_deactivate frees the model and activate loads it again;
* cleanup frees everything: unconfigured again.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from support.ros2_daemon import fresh_daemon, node_listed, ros2  # noqa: E402
from support.scorer_node_rig import (  # noqa: E402
    MANAGED_EXECUTABLE,
    NODE,
    NodeProcess,
    Rig,
    new_episode_after,
    stamp_ns,
    status_values,
)

PARAMS = {
    "use_sim_time": "true",
    "camera_topics": "['cam0/image_raw', 'cam1/image_raw/compressed']",
    "rate_hz": "4.0",
    "view_size": "64",
    "max_frames": "24",
    "success_threshold": "0.0",  # log p <= 0: can never be exceeded
    "success_consecutive": "2",
    "diagnostics_period_s": "0.25",
    "torch_threads": "1",
}


#: The node process of the running test: a command that hangs fails with its log.
running: list[NodeProcess] = []


def lifecycle(*argv: str, timeout: float = 180.0) -> subprocess.CompletedProcess:
    """`ros2 lifecycle ...` (the operator's tool), in this module's DDS domain."""
    if shutil.which("ros2") is None:
        pytest.skip("the ros2 command line is not installed (make test installs it from ros-extras)")
    try:
        return ros2("lifecycle", *argv, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        log = running[-1].log()[-6000:] if running else ""
        pytest.fail(
            f"`ros2 lifecycle {' '.join(argv)}` still running after {timeout} s; its output: "
            f"{exc.stdout!r}\nits stderr (the stack of each thread):\n{exc.stderr}\nnode log tail:\n{log}"
        )


def lifecycle_set(transition: str) -> subprocess.CompletedProcess:
    return lifecycle("set", f"/{NODE}", transition)


def lifecycle_get() -> str:
    out = lifecycle("get", f"/{NODE}")
    assert out.returncode == 0, out.stderr
    return out.stdout.split()[0]


@pytest.fixture(scope="module", autouse=True)
def ros2_daemon(ros_domain: int) -> Iterator[None]:
    """The graph daemon of this module's domain, started before any test (see ``ros2_daemon.py`` for why)."""
    if shutil.which("ros2") is None:
        yield
        return
    with fresh_daemon():
        yield


@pytest.fixture
def managed(tiny_model_dir: Path, tmp_path: Path) -> Iterator[Rig]:
    proc = NodeProcess({**PARAMS, "model": str(tiny_model_dir)}, tmp_path / "node.log", executable=MANAGED_EXECUTABLE)
    try:
        rig = Rig(proc)
    except BaseException:
        proc.stop(signal.SIGKILL)
        raise
    running.append(proc)
    try:
        rig.start_streaming()
        rig.wait_for("the node's parameter services", rig.params.services_are_ready, timeout=60)
        if shutil.which("ros2") is not None:
            # Every `ros2 lifecycle` call then reads a daemon view that holds the node.
            rig.wait_for("`ros2 node list` to list the node", lambda: node_listed(f"/{NODE}"), timeout=60)
        yield rig
    finally:
        running.remove(proc)
        rig.close()
        if proc.alive():
            assert proc.stop(signal.SIGINT) == 0


def model_state(rig: Rig) -> str:
    status = rig.latest_status(": model")
    return status_values(status)["state"] if status is not None else ""


def test_configure_activate_deactivate_activate_cleanup(managed: Rig) -> None:
    rig = managed
    assert lifecycle_get() == "unconfigured"
    rig.wait_for("diagnostics of the unconfigured node", lambda: model_state(rig) == "not loaded")
    assert rig.instruction_pub.get_subscription_count() == 0  # nothing subscribed yet

    out = lifecycle_set("configure")
    assert out.returncode == 0 and "Transitioning successful" in out.stdout, out.stdout + out.stderr
    assert lifecycle_get() == "inactive"
    # configure returned with the model loaded.
    rig.wait_for("the model loaded", lambda: model_state(rig) == "loaded")

    assert lifecycle_set("activate").returncode == 0
    assert lifecycle_get() == "active"
    rig.wait_matched()
    rig.instruct("stack the red cup on the blue cup")
    first = new_episode_after(rig, set(), "stack the red cup on the blue cup", count=2)
    episode_id = first[0].episode_id
    assert rig.set_params(success_threshold=-1.0e9)[0].successful
    rig.wait_for("success to latch", lambda: any(m.success for m in rig.progress_of(episode_id)))
    rig.wait_for("the EpisodeSuccess", lambda: rig.successes)

    assert lifecycle_set("deactivate").returncode == 0
    assert lifecycle_get() == "inactive"
    rig.wait_for(
        "the scoring diagnostic to say inactive",
        lambda: (
            (s := rig.latest_status(": scoring")) is not None and status_values(s)["node_state"] == "inactive" and s
        ),
    )
    with rig.lock:
        count = len(rig.progress)
        paused_from = rig.camera_now_ns()
    # Frames keep coming while inactive: none is taken, nothing is scored.
    rig.wait_for("frames published while inactive", lambda: rig.camera_now_ns() > paused_from + 2_000_000_000)
    with rig.lock:
        paused_to = rig.camera_now_ns()
        assert len(rig.progress) == count, "the inactive node published scores"

    assert lifecycle_set("activate").returncode == 0
    later = rig.wait_for(
        "scores of the same episode after activate",
        lambda: len(m := [p for p in rig.progress[count:] if p.episode_id == episode_id]) >= 2 and m,
    )
    for msg in later:
        assert msg.success, "the success latched before deactivate was lost"
        stamps = [stamp_ns(s) for s in msg.frame_stamps]
        assert not [s for s in stamps if paused_from < s < paused_to], "a frame of the inactive time was scored"
    with rig.lock:
        assert len([s for s in rig.successes if s.episode_id == episode_id]) == 1

    # Free the model on deactivate; activate loads it again.
    assert rig.set_params(release_model_on_deactivate=True)[0].successful
    assert lifecycle_set("deactivate").returncode == 0
    rig.wait_for("the model released", lambda: model_state(rig) == "not loaded")
    assert lifecycle_set("activate").returncode == 0
    rig.wait_for("the model loaded again", lambda: model_state(rig) == "loaded")
    with rig.lock:
        count = len(rig.progress)
    rig.wait_for("scores after the reload", lambda: len(rig.progress) > count + 1)

    assert lifecycle_set("deactivate").returncode == 0
    assert lifecycle_set("cleanup").returncode == 0
    assert lifecycle_get() == "unconfigured"
    rig.wait_for("the model freed by cleanup", lambda: model_state(rig) == "not loaded")
    status = rig.wait_for(
        "the episode gone",
        lambda: (s := rig.latest_status(": episode")) is not None and status_values(s)["episode_id"] == "" and s,
    )
    assert status.level == DiagnosticStatus.WARN


def test_configure_that_cannot_load_the_model_fails_and_stays_unconfigured(
    managed: Rig, tiny_model_dir: Path, tmp_path: Path
) -> None:
    rig = managed
    missing = tmp_path / "no-such-model"
    assert rig.set_params(model=str(missing))[0].successful
    out = lifecycle_set("configure")
    assert "Transitioning failed" in out.stdout + out.stderr, out.stdout + out.stderr
    assert lifecycle_get() == "unconfigured"
    status = rig.wait_for(
        "the load error on diagnostics",
        lambda: (s := rig.latest_status(": model")) is not None and str(missing) in s.message and s,
    )
    assert status.level == DiagnosticStatus.ERROR
    assert "configure failed, node stays unconfigured" in rig.node_proc.log()
    # The node is in a valid state: with a model that loads, configure succeeds.
    assert rig.set_params(model=str(tiny_model_dir))[0].successful
    out = lifecycle_set("configure")
    assert "Transitioning successful" in out.stdout, out.stdout + out.stderr
    assert lifecycle_get() == "inactive"
    rig.wait_for("the model loaded", lambda: model_state(rig) == "loaded")
