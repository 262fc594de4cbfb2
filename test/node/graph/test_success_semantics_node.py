"""Success semantics of the running scorer_node, on a real rclpy graph.

The installed node runs as its own process with the tiny random model and
``use_sim_time``; the rig plays /clock and a camera, sends instructions,
calls ``~/reset`` and changes parameters through the node's parameter
service (what ``ros2 param set`` does). Thresholds are set at the two ends
where the random model's scores cannot matter: -1e9 (every score passes)
and 0.0 (log p <= 0: none passes).

* Success stays latched for the episode across every run-time parameter
  change, and EpisodeSuccess is sent once per episode.
* After a success, a reset or a new instruction starts an undecided episode
  that can succeed on its own; until it does, a late subscriber to the
  latched EpisodeSuccess gets the OLD episode's message (its episode_id is
  not the running episode's), never one claiming the new episode.
* A stalled primary camera turns the scoring diagnostic to WARN.

The node process is shared by the module; each test starts from the node's
starting parameters (fixture ``node``) and makes the episodes it needs
(``succeeded_episode``), so any test passes alone and in any order.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from support.scorer_node_rig import (  # noqa: E402
    NS,
    RIG_PARAMS,
    STALL_PARAMS,
    Rig,
    new_episode_after,
    running_rig,
    stamp_ns,
    status_values,
)

from topreward_ros.msg import EpisodeSuccess  # noqa: E402
from topreward_ros.node.params import PARAM_BY_NAME  # noqa: E402

pytestmark = [pytest.mark.timeout(300)]

ALWAYS = -1.0e9
NEVER = 0.0

NODE_PARAMS = {
    **RIG_PARAMS,
    **STALL_PARAMS,
    "success_threshold": str(ALWAYS),
    "success_window": "3",
    "success_consecutive": "2",
}


@pytest.fixture(scope="module")
def rig(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    log = tmp_path_factory.mktemp("success_node") / "node.log"
    with running_rig({**NODE_PARAMS, "model": str(tiny_model_dir)}, log, compressed_camera=False) as the_rig:
        yield the_rig


def set_ok(rig: Rig, **values: Any) -> None:
    results = rig.set_params(**values)
    assert all(r.successful for r in results), [r.reason for r in results]


# Every run-time parameter a test here changes, at the value the node started with.
STARTING_VALUES = {
    "success_threshold": ALWAYS,
    "success_window": int(NODE_PARAMS["success_window"]),
    "success_consecutive": int(NODE_PARAMS["success_consecutive"]),
    "sample_fps": PARAM_BY_NAME["sample_fps"].default,
    "max_frames": int(NODE_PARAMS["max_frames"]),
    "sync_tolerance_s": PARAM_BY_NAME["sync_tolerance_s"].default,
}


@pytest.fixture
def node(rig: Rig) -> Rig:
    """The shared node with its starting parameters and a streaming camera, whatever ran before."""
    rig.paused.clear()
    set_ok(rig, **STARTING_VALUES)
    return rig


def start_episode(rig: Rig, instruction: str) -> str:
    """Send an instruction; the id of the episode it starts, once that episode is scored."""
    with rig.lock:
        old = {m.episode_id for m in rig.progress}
    rig.instruct(instruction)
    return new_episode_after(rig, old, instruction)[0].episode_id


@pytest.fixture
def succeeded_episode(node: Rig) -> str:
    """The id of an episode that has succeeded; the threshold is then NEVER."""
    episode = start_episode(node, "wipe the table")
    node.wait_for(
        "EpisodeSuccess of the wiping episode",
        lambda: next((s for s in node.successes if s.episode_id == episode), None),
    )
    set_ok(node, success_threshold=NEVER)
    return episode


def successes_of(rig: Rig, episode_id: str) -> list[EpisodeSuccess]:
    with rig.lock:
        return [s for s in rig.successes if s.episode_id == episode_id]


def wait_more_progress(rig: Rig, episode_id: str, more: int) -> list:
    with rig.lock:
        have = len(rig.progress_of(episode_id))
    rig.wait_for(
        f"{more} more progress messages of episode {episode_id}",
        lambda: len(rig.progress_of(episode_id)) >= have + more,
        timeout=60,
    )
    with rig.lock:
        return rig.progress_of(episode_id)[have:]


def late_subscriber_gets(rig: Rig) -> EpisodeSuccess:
    """What a subscriber that joins now receives on the latched success topic."""
    got: list[EpisodeSuccess] = []
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    sub = rig.node.create_subscription(EpisodeSuccess, "episode_success", got.append, latched)
    try:
        return rig.wait_for("the latched EpisodeSuccess on a late subscription", lambda: got[0] if got else None)
    finally:
        rig.node.destroy_subscription(sub)


def test_success_stays_latched_across_parameter_changes(node: Rig) -> None:
    rig = node
    episode = start_episode(rig, "stack the cups")
    done = rig.wait_for(
        "EpisodeSuccess of the episode", lambda: next((s for s in rig.successes if s.episode_id == episode), None)
    )
    # Every change a user can make at run time, one after the other. With NEVER,
    # a rebuilt success decision would drop to false; with ALWAYS it would fire again.
    changes = [
        {"success_threshold": NEVER},
        {"success_window": 2},
        {"success_consecutive": 5},
        {"success_window": 5, "success_threshold": ALWAYS},
        {"success_consecutive": 1},
        {"sample_fps": 4.0},  # restarts the episode's window
        {"max_frames": 12},  # restarts the window
        {"sync_tolerance_s": 0.1},  # restarts the window
        {"success_threshold": NEVER, "success_window": 1},
    ]
    restarting = {"sample_fps", "max_frames", "sync_tolerance_s"}
    for change in changes:
        with rig.lock:
            have = len(rig.progress_of(episode))
        changed_at = rig.sim_now_ns()
        set_ok(rig, **change)
        if restarting & set(change):
            # The window really restarted: a message scores only frames from then on.
            rig.wait_for(
                f"a message on the restarted window after {change}",
                lambda: any(
                    stamp_ns(m.oldest_frame_stamp) >= changed_at - NS // 2 for m in rig.progress_of(episode)[have:]
                ),
                timeout=60,
            )
        wait_more_progress(rig, episode, 3)
        with rig.lock:
            after = rig.progress_of(episode)[have:]
        assert all(m.success for m in after), f"success dropped after {change}"
    assert after[-1].success_threshold == NEVER
    with rig.lock:
        msgs = rig.progress_of(episode)
    fired_at = next(i for i, m in enumerate(msgs) if m.success)
    assert all(m.success for m in msgs[fired_at:]), "success is latched for the rest of the episode"
    assert stamp_ns(msgs[fired_at].header.stamp) == stamp_ns(done.header.stamp)
    assert len(successes_of(rig, episode)) == 1, "EpisodeSuccess sent once per episode"
    assert late_subscriber_gets(rig).episode_id == episode


def test_after_success_a_new_episode_decides_on_its_own(node: Rig, succeeded_episode: str) -> None:
    # The threshold is NEVER now and the last episode succeeded.
    rig, succeeded = node, succeeded_episode
    with rig.lock:
        old = {m.episode_id for m in rig.progress}
    # A reset: a new, undecided episode. Until it succeeds, a late subscriber still
    # gets the old episode's success, which names the old episode.
    reset_id = rig.reset().message
    assert reset_id and reset_id not in old
    msgs = new_episode_after(rig, old, count=3)
    assert msgs[0].episode_id == reset_id
    assert not any(m.success for m in msgs)
    late = late_subscriber_gets(rig)
    assert late.episode_id == succeeded != reset_id
    assert successes_of(rig, reset_id) == []
    # It succeeds on its own once the threshold allows.
    set_ok(rig, success_threshold=ALWAYS)
    own = rig.wait_for(
        "EpisodeSuccess of the reset episode",
        lambda: next((s for s in rig.successes if s.episode_id == reset_id), None),
    )
    assert own.threshold == ALWAYS
    assert late_subscriber_gets(rig).episode_id == reset_id

    # The same after a new instruction.
    set_ok(rig, success_threshold=NEVER)
    with rig.lock:
        old = {m.episode_id for m in rig.progress}
    rig.instruct("fold the towel")
    msgs = new_episode_after(rig, old, "fold the towel", count=3)
    new_id = msgs[0].episode_id
    assert not any(m.success for m in rig.progress_of(new_id))
    assert late_subscriber_gets(rig).episode_id == reset_id
    assert successes_of(rig, new_id) == []
    set_ok(rig, success_threshold=ALWAYS)
    rig.wait_for(
        "EpisodeSuccess of the instructed episode",
        lambda: next((s for s in rig.successes if s.episode_id == new_id), None),
    )
    late = late_subscriber_gets(rig)
    assert (late.episode_id, late.instruction) == (new_id, "fold the towel")
    for episode_id in (succeeded, reset_id, new_id):
        assert len(successes_of(rig, episode_id)) == 1


def test_a_stalled_primary_camera_shows_in_the_scoring_diagnostic(node: Rig) -> None:
    """The stall is named in the scoring entry whatever else holds (skipped ticks on a busy machine).

    The waits key on the stall's own value, not on the level: skipped ticks may
    make the entry WARN too, and both conditions are then reported together.
    """
    rig = node
    start_episode(rig, "sort the blocks")  # a stall is reported while an episode runs

    def scoring(since: float, stalled: bool) -> DiagnosticStatus | None:
        s = rig.latest_status(": scoring", since=since)
        return s if s is not None and status_values(s)["primary_camera_stalled"] == str(stalled) else None

    since = time.monotonic()
    status = rig.wait_for("the scoring diagnostic while frames come", lambda: scoring(since, False))
    assert "stalled" not in status.message, status.message
    rig.paused.add(0)
    paused_at = time.monotonic()
    try:
        status = rig.wait_for("the scoring diagnostic to report the stall", lambda: scoring(paused_at, True))
        assert status.level >= DiagnosticStatus.WARN, status
        with rig.lock:
            last_stamp = rig.published[0][-1]
        found = re.search(r"no new frames since stamp (\d+\.\d+) s", status.message)
        assert found, status.message
        # The stamp of the last frame that reached the node (the very last one may be dropped
        # by the best-effort camera subscription).
        assert last_stamp / NS - 0.5 <= float(found.group(1)) <= last_stamp / NS + 1e-3
        # Skipped ticks, when the machine is busy enough to cause them, are named beside the stall.
        if status_values(status)["scoring_slower_than_rate"] == "True":
            assert "ticks skipped" in status.message, status.message
    finally:
        rig.paused.discard(0)
    resumed = time.monotonic()
    status = rig.wait_for("the scoring diagnostic without the stall", lambda: scoring(resumed, False))
    assert "stalled" not in status.message, status.message
