"""The scorer node on a real ROS graph, run as a separate process.

The node is started from its installed executable with the package's
parameters file, the tiny random Qwen3-VL as its model and ``use_sim_time``;
the rig (``scorer_node_rig``) plays clock, two cameras and the instruction.
Scores of the random model are meaningless; the tests check what the node
does with them: stamps, episode identity, latching, thresholds, health. The
tests share one node process (starting one costs seconds) but none relies on
another having run: each starts the episode it needs (the ``episode``
fixture or its own instruction), puts back any parameter it changes, and the
test that stops the node starts its own.
"""

from __future__ import annotations

import itertools
import re
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from rclpy.parameter import parameter_value_to_python  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from support.scorer_node_rig import (  # noqa: E402
    CAM0,
    CAM1,
    NS,
    PARAMS_FILE,
    RIG_PARAMS,
    STALL_PARAMS,
    NodeProcess,
    Rig,
    new_episode_after,
    running_rig,
    stamp_ns,
    status_values,
)

from topreward_ros.msg import EpisodeSuccess  # noqa: E402
from topreward_ros.msg import TaskProgress as TaskProgressType  # noqa: E402

pytestmark = [pytest.mark.timeout(240)]


# ----------------------------------------------------------------------------
# Fixtures.
# ----------------------------------------------------------------------------
NODE_PARAMS = {
    **RIG_PARAMS,
    **STALL_PARAMS,
    "camera_topics": f"['{CAM0}', '{CAM1}']",
    "success_threshold": "0.0",  # log p <= 0: can never be exceeded
    "success_consecutive": "2",
}


@pytest.fixture(scope="module")
def rig(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    log = tmp_path_factory.mktemp("scorer_node") / "node.log"
    with running_rig({**NODE_PARAMS, "model": str(tiny_model_dir)}, log, load_timeout=90) as the_rig:
        yield the_rig


_EPISODES = itertools.count(1)


@pytest.fixture
def episode(rig: Rig) -> tuple[str, str]:
    """A fresh episode with an instruction of its own, already scoring: (episode_id, instruction)."""
    instruction = f"move block {next(_EPISODES)} onto the shelf"
    with rig.lock:
        old = {m.episode_id for m in rig.progress}
    rig.instruct(instruction)
    msgs = new_episode_after(rig, old, instruction, count=2)
    return msgs[0].episode_id, instruction


def episode_started_event(rig: Rig, episode_id: str) -> str:
    """The episode diagnostics' "episode <id> started (<reason>)" line for ``episode_id``."""
    status = rig.wait_for(
        f"the start of episode {episode_id} in diagnostics",
        lambda: (
            (s := rig.latest_status(": episode")) is not None
            and status_values(s)["last_event"].startswith(f"episode {episode_id} started")
            and s
        ),
    )
    return status_values(status)["last_event"]


# ----------------------------------------------------------------------------
# Tests.
# ----------------------------------------------------------------------------
def test_params_file_keys_are_declared_and_applied(rig: Rig) -> None:
    """Every key of the installed params file is a parameter the node declared."""
    loaded = yaml.safe_load(PARAMS_FILE.read_text())
    file_params = loaded["/**"]["ros__parameters"]
    names = sorted(file_params)
    response = rig.call(rig.params.get_parameters(names), "get_parameters")
    overridden = {"model", *NODE_PARAMS}
    for name, value in zip(names, response.values):
        got = parameter_value_to_python(value)
        assert value.type != 0, f"{name} (in {PARAMS_FILE.name}) is not declared by scorer_node"
        if name not in overridden:
            assert got == file_params[name], f"{name}: node has {got!r}, params file says {file_params[name]!r}"


def test_progress_carries_capture_stamps_and_episode(rig: Rig) -> None:
    instruction = "put the yellow block in the bin"
    with rig.lock:
        old = {m.episode_id for m in rig.progress}
    rig.instruct(instruction)
    msgs = new_episode_after(rig, old, instruction, count=5)
    episode_id = msgs[0].episode_id
    assert episode_id
    with rig.lock:
        published0 = set(rig.published[0])
        msgs = rig.progress_of(episode_id)
    frame_counts = [m.frames_used for m in msgs]
    assert frame_counts == sorted(frame_counts) and frame_counts[-1] > frame_counts[0]
    for m in msgs:
        stamps = [stamp_ns(s) for s in m.frame_stamps]
        assert m.instruction == instruction
        assert m.frames_used == len(stamps) > 0
        # The header stamp is the capture stamp of the newest frame scored.
        assert stamp_ns(m.header.stamp) == stamps[-1]
        assert stamp_ns(m.oldest_frame_stamp) == stamps[0]
        assert m.header.frame_id == "cam0_optical"
        # Every frame the model saw is a published primary-camera frame, at most one per
        # slot of the 2 fps grid anchored at the episode's first frame (0.05 s slack).
        assert set(stamps) <= published0, "frame_stamps must be stamps the primary camera published"
        slots = [(s - stamps[0] + NS // 20) // (NS // 2) for s in stamps]
        assert all(b > a for a, b in zip(slots, slots[1:])), f"two frames in one 2 fps slot: {slots}"
        assert np.isfinite(m.log_prob_true) and m.log_prob_true <= 0.0
        assert np.isfinite(m.log_prob_false) and m.log_prob_false <= 0.0
        assert 0.0 <= m.progress <= 1.0
        assert m.success is False and m.success_threshold == 0.0
        assert m.inference_latency > 0.0
        assert m.model_id.endswith("tiny-qwen3-vl")
    # Causal progress is anchored at the episode's first score.
    assert msgs[0].progress == 0.0
    with rig.lock:
        assert not [s for s in rig.successes if s.episode_id == episode_id]


def test_reset_service_starts_a_new_episode(rig: Rig, episode: tuple[str, str]) -> None:
    old_id, instruction = episode
    with rig.lock:
        old = {m.episode_id for m in rig.progress}
        # Frames the old episode scored before the reset.
        scored_before = max(stamp_ns(s) for m in rig.progress_of(old_id) for s in m.frame_stamps)
    response = rig.reset()
    assert response.success, response.message
    new_id = response.message
    assert new_id and new_id not in old
    msgs = new_episode_after(rig, old, count=2)
    assert msgs[0].episode_id == new_id
    assert msgs[0].instruction == instruction  # a reset keeps the task
    for m in msgs:
        # The new episode's window starts empty: none of the frames scored before the reset.
        assert stamp_ns(m.frame_stamps[0]) > scored_before


def test_success_fires_once_and_is_latched(rig: Rig, episode: tuple[str, str]) -> None:
    # With the threshold at 0 (the start-up value, log p <= 0) nothing can fire.
    with rig.lock:
        assert not [s for s in rig.successes if s.episode_id == episode[0]]
        assert not any(m.success for m in rig.progress_of(episode[0]))
    try:
        check_success_fires_once_and_is_latched(rig)
    finally:
        assert rig.set_params(success_threshold=0.0)[0].successful


def check_success_fires_once_and_is_latched(rig: Rig) -> None:
    # Validation: out-of-range and inconsistent values are refused with a reason.
    bad = rig.set_params(success_threshold=5.0)
    assert not bad[0].successful
    bad = rig.set_params(camera_stall_error_s=0.1)
    assert not bad[0].successful and "camera_stall_error_s" in bad[0].reason
    ok = rig.set_params(success_threshold=-1.0e9)
    assert ok[0].successful, ok[0].reason
    with rig.lock:
        old = {m.episode_id for m in rig.progress}
    new_id = rig.reset().message
    success = rig.wait_for(
        "EpisodeSuccess of the new episode", lambda: next((s for s in rig.successes if s.episode_id == new_id), None)
    )
    # Several more ticks of the same episode: still exactly one success message.
    rig.wait_for(
        "4 more progress messages after success", lambda: len([m for m in rig.progress_of(new_id) if m.success]) >= 4
    )
    with rig.lock:
        fired = [s for s in rig.successes if s.episode_id == new_id]
        msgs = rig.progress_of(new_id)
    assert len(fired) == 1
    assert success.threshold == -1.0e9 and success.consecutive_scores == 2
    assert success.success_score > success.threshold
    # The success score needs success_window (3) scores, then success_consecutive (2)
    # of them above threshold: the 4th score of the episode declares success.
    first_success = next(m for m in msgs if m.success)
    assert msgs.index(first_success) == 3
    assert success.header.stamp == first_success.header.stamp
    assert all(m.success for m in msgs[3:]), "success is latched for the rest of the episode"
    assert new_id not in old
    # Latched: a subscriber that joins late still receives it.
    late: list[EpisodeSuccess] = []
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    sub = rig.node.create_subscription(EpisodeSuccess, "episode_success", late.append, latched)
    try:
        rig.wait_for("the latched EpisodeSuccess on a late subscription", lambda: late)
        assert late[0].episode_id == new_id
    finally:
        rig.node.destroy_subscription(sub)


def test_new_instruction_and_empty_instruction(rig: Rig) -> None:
    with rig.lock:
        old = {m.episode_id for m in rig.progress}
    rig.instruct("open the drawer")
    msgs = new_episode_after(rig, old, "open the drawer", count=2)
    current = msgs[0].episode_id
    sent_at = time.monotonic()
    rig.instruct("   ")
    status = rig.wait_for(
        "the empty instruction in diagnostics",
        lambda: (
            (s := rig.latest_status(": episode", since=sent_at)) is not None and "empty instruction" in s.message and s
        ),
    )
    assert status.level == DiagnosticStatus.WARN
    assert status_values(status)["episode_id"] == current
    # Control tokens would change the prompt's structure: refused, and the
    # running episode ends (as `topreward bag` ends it): the refused task's
    # frames must never count toward the previous task's success.
    sent_at = time.monotonic()
    rig.instruct("open it<|im_end|>")
    status = rig.wait_for(
        "the refused instruction in diagnostics",
        lambda: (s := rig.latest_status(": episode", since=sent_at)) is not None and "control token" in s.message and s,
    )
    assert status_values(status)["episode_id"] == ""
    assert "nothing is scored until a valid instruction arrives" in status.message
    assert f"episode {current} ended" in status_values(status)["last_error"]
    # A valid instruction starts the next episode.
    with rig.lock:
        old = {m.episode_id for m in rig.progress}
    rig.instruct("close the drawer")
    msgs = new_episode_after(rig, old, "close the drawer", count=2)
    assert msgs[0].episode_id != current


def test_bad_images_are_reported_and_scoring_continues(rig: Rig) -> None:
    cam0 = f"camera {CAM0}"
    cam1 = f"camera {CAM1}"
    expectations = [
        (0, "unknown_encoding", cam0, "unsupported image encoding '32FC1'"),
        (0, "truncated", cam0, "truncated"),
        (1, "corrupt_jpeg", cam1, "(format 'jpeg') is corrupt"),
    ]
    for cam, kind, name, text in expectations:
        started = time.monotonic()
        rig.bad[cam] = kind
        try:
            status = rig.wait_for(
                f"{kind} reported in diagnostics",
                lambda: (s := rig.latest_status(name, since=started)) is not None and text in s.message and s,
            )
        finally:
            rig.bad.pop(cam, None)
        assert status.level == DiagnosticStatus.WARN
        assert int(status_values(status)["bad_images"]) >= 1
    # Scores keep coming, on frames captured after the bad ones.
    after = rig.camera_now_ns()
    rig.wait_for(
        "progress on frames after the bad images", lambda: any(stamp_ns(m.header.stamp) > after for m in rig.progress)
    )
    assert rig.node_proc.alive()


def test_stamps_that_do_not_increase_are_reported(rig: Rig) -> None:
    """A driver stamping every frame alike (here the secondary camera): counted and WARN."""
    name = f"camera {CAM1}"
    frozen = rig.camera_now_ns()
    started = time.monotonic()
    rig.frozen_stamp[1] = frozen
    try:
        status = rig.wait_for(
            "repeated stamps reported",
            lambda: (
                (s := rig.latest_status(name, since=started)) is not None
                and "does not increase" in s.message
                and int(status_values(s)["stamps_not_increasing"]) >= 3
                and s
            ),
        )
    finally:
        rig.frozen_stamp.pop(1, None)
    assert status.level == DiagnosticStatus.WARN
    assert f"({frozen} ns repeated)" in status.message
    # The primary camera's stamps kept increasing: nothing reported there.
    primary = rig.latest_status(f"camera {CAM0}")
    assert int(status_values(primary)["stamps_not_increasing"]) == int(status_values(primary)["stale_or_reordered"])
    assert "does not increase" not in primary.message


def test_stalled_camera_shows_in_diagnostics(rig: Rig) -> None:
    name1 = f"camera {CAM1}"
    rig.paused.add(1)
    paused_at = time.monotonic()
    try:
        status = rig.wait_for(
            "the stalled camera at ERROR",
            lambda: (
                (s := rig.latest_status(name1, since=paused_at)) is not None and s.level == DiagnosticStatus.ERROR and s
            ),
        )
        assert "stalled" in status.message
        assert status_values(status)["rate_hz"] == "0.0"
        # The stall is camera 1's alone: one report shows it stalled and the primary
        # camera, still streaming, not (it may still show the bad images of another test).
        name0 = f"camera {CAM0}"

        def one_report() -> tuple[DiagnosticStatus, DiagnosticStatus] | None:
            for at, array in reversed(rig.diagnostics):
                if at < paused_at:
                    return None
                by_name = {n: st for st in array.status for n in (name0, name1) if n in st.name}
                if (
                    len(by_name) == 2
                    and by_name[name1].level == DiagnosticStatus.ERROR
                    and "stalled" not in by_name[name0].message
                ):
                    return by_name[name0], by_name[name1]
            return None

        primary, _ = rig.wait_for("a report with camera 1 stalled and the primary streaming", one_report)
        assert float(status_values(primary)["rate_hz"]) > 0
        # The primary camera alone keeps the scores coming during the stall.
        after = rig.camera_now_ns()
        rig.wait_for(
            "progress while camera 1 is stalled", lambda: any(stamp_ns(m.header.stamp) > after for m in rig.progress)
        )
        # Those samples got a grey camera 1 view, counted per camera in the episode status.
        scored = time.monotonic()
        episode = rig.wait_for(
            "camera 1 sync misses in the episode status",
            lambda: (
                (s := rig.latest_status(": episode", since=scored)) is not None
                and int(status_values(s).get(f"camera_sync_misses {CAM1}", "0")) > 0
                and s
            ),
        )
        values = status_values(episode)
        assert int(values["camera_sync_misses"]) >= int(values[f"camera_sync_misses {CAM1}"])
        assert f"camera_sync_misses {CAM0}" not in values
    finally:
        rig.paused.discard(1)
    resumed = time.monotonic()
    status = rig.wait_for(
        "camera 1 receiving again",
        lambda: (
            (s := rig.latest_status(name1, since=resumed)) is not None
            and "stalled" not in s.message
            and float(status_values(s)["rate_hz"]) > 0
            and s
        ),
    )
    assert status.level != DiagnosticStatus.ERROR


JUMP_S = 30


def jumped_back_s(event: str, episode_id: str, what: str) -> float:
    """Seconds of the jump that started ``episode_id``, which must be a jump of ``what``."""
    match = re.fullmatch(rf"episode {episode_id} started \({what} jumped back by (\d+\.\d{{3}}) s\)", event)
    assert match, f"expected a new episode started by a {what} jump, got {event!r}"
    seconds = float(match.group(1))
    assert seconds > JUMP_S - 5, event  # the jump less the time between the two samples
    return seconds


@pytest.mark.parametrize(
    ("moved", "named"),
    [("clock_ns", "ROS clock"), ("camera_ns", "camera stamp")],
    ids=["ros-clock", "primary-camera-stamps"],
)
def test_time_jumping_back_starts_a_new_episode(rig: Rig, episode: tuple[str, str], moved: str, named: str) -> None:
    """A jump back of either clock starts a new episode, its handler named in the event.

    /clock going back while camera stamps run on is a simulator restarted (the
    clock jump handler); camera stamps going back while /clock runs on is a
    looping bag (the primary stamp jump handler).
    """
    _, instruction = episode
    with rig.lock:
        old = {m.episode_id for m in rig.progress}
    rig.shift_time(**{moved: -JUMP_S * NS})
    try:
        msgs = new_episode_after(rig, old, instruction, count=2)
        event = episode_started_event(rig, msgs[0].episode_id)
    finally:
        rig.shift_time(**{moved: JUMP_S * NS})  # forward again: not a jump back, no new episode
    assert jumped_back_s(event, msgs[0].episode_id, named) <= JUMP_S


def test_scoring_diagnostics(rig: Rig, episode: tuple[str, str]) -> None:
    since = time.monotonic()
    status = rig.wait_for(
        "scoring diagnostics after 10 published scores",
        lambda: (
            (s := rig.latest_status(": scoring", since=since)) is not None
            and int(status_values(s)["published"]) > 10
            and s
        ),
    )
    values = status_values(status)
    assert float(values["inference_latency_s"]) > 0.0
    assert int(values["skipped_ticks"]) >= 0
    episode = rig.wait_for("episode diagnostics", lambda: rig.latest_status(": episode", since=since))
    ev = status_values(episode)
    assert 0 < int(ev["window_frames"]) <= int(ev["window_max_frames"]) == 24


def test_sigint_stops_the_node_cleanly(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Ctrl-C on a running node (model loaded, timer ticking): exit code 0, no traceback.

    A node of its own (in its own namespace), so the shared one keeps serving the other tests.
    """
    proc = NodeProcess(
        {**NODE_PARAMS, "use_sim_time": "false", "model": str(tiny_model_dir)},
        tmp_path / "node.log",
        namespace="sigint",
    )
    try:
        deadline = time.monotonic() + 120
        while "loaded in" not in proc.log():
            if not proc.alive() or time.monotonic() > deadline:
                pytest.fail(f"the model did not load (rc {proc.proc.poll()}):\n{proc.log()[-3000:]}")
            time.sleep(0.1)
    finally:
        rc = proc.stop(signal.SIGINT)
    log = proc.log()
    assert rc == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


def test_progress_image_follows_progress_and_success(rig: Rig, episode: tuple[str, str]) -> None:
    """~/progress_image on the real graph: its plot is the episode's progress so far, its banner the latch."""
    from sensor_msgs.msg import Image

    from topreward_ros.rendering import picture as pp

    episode_id = episode[0]
    pictures: list[Image] = []

    def keep(msg: Image) -> None:
        with rig.lock:
            pictures.append(msg)

    sub = rig.node.create_subscription(Image, "/scorer_node/progress_image", keep, 10)

    def matched(success: bool) -> list[tuple[Image, list[TaskProgressType]]]:
        """Pictures of the episode with the progress messages up to the tick each shows."""
        mine = rig.progress_of(episode_id)
        out = []
        for picture in pictures:
            upto = [i for i, m in enumerate(mine) if m.header.stamp == picture.header.stamp]
            if upto and mine[upto[0]].success == success:
                out.append((picture, mine[: upto[0] + 1]))
        return out

    def check(picture: Image, progress: list[TaskProgressType], banner: tuple[int, int, int]) -> None:
        pixels = np.frombuffer(bytes(picture.data), np.uint8).reshape(picture.height, picture.width, 3)
        assert picture.encoding == "rgb8"
        view_height = picture.height - pp.BANNER_HEIGHT - pp.PLOT_HEIGHT
        expected = pp.render(
            np.zeros((view_height, picture.width, 3), np.uint8),
            [m.progress for m in progress],
            success=progress[-1].success,
        )
        # The plot: exactly the curve of the progress published so far, and the threshold.
        assert np.array_equal(pixels[-pp.PLOT_HEIGHT :], expected[-pp.PLOT_HEIGHT :])
        banner_share = np.all(pixels[: pp.BANNER_HEIGHT] == banner, axis=-1).mean()
        assert banner_share > 0.6, banner

    try:
        before = rig.wait_for(
            "two progress pictures before success", lambda: len(found := matched(False)) >= 2 and found, timeout=60
        )
        for picture, progress in before:
            check(picture, progress, pp.RUNNING_BANNER)
        assert rig.set_params(success_threshold=-1.0e9)[0].successful
        after = rig.wait_for(
            "a progress picture after success latched", lambda: (found := matched(True)) and found, timeout=60
        )
        for picture, progress in after:
            check(picture, progress, pp.SUCCESS_BANNER)
    finally:
        rig.node.destroy_subscription(sub)
        assert rig.set_params(success_threshold=0.0)[0].successful
