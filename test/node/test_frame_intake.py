"""The node's frame intake, without ROS: each ordering rule checked on plain values.

Times are integer nanoseconds as the middleware gives them; the reorder
window's clock is a value the test sets (the window is wall-clock time in the
node), so every check is exact and nothing waits.
"""

from __future__ import annotations

import numpy as np

from topreward_ros.episode.cuts import StampCut
from topreward_ros.node.intake import (
    BACK,
    FIRST,
    FORWARD,
    PUBLICATION_ORDER_BOUND_NS,
    REORDER_MAX_MESSAGES,
    REORDER_WINDOW_S,
    REPEATED,
    SEEN_INSTRUCTIONS,
    FrameIntake,
    Remembered,
    message_key,
    published_before,
    source_timestamp,
)

S = 1_000_000_000
INSTRUCTION_NS = 50 * S


class SetClock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_source_timestamp_is_the_publication_time_when_given() -> None:
    assert source_timestamp(None) is None
    assert source_timestamp({}) is None
    assert source_timestamp({"source_timestamp": 0}) is None  # not provided by the middleware
    assert source_timestamp({"source_timestamp": 123, "received_timestamp": 456}) == 123
    assert source_timestamp("not a dict") is None


def test_message_keys_tell_copies_from_new_messages() -> None:
    gid = {"data": np.arange(16, dtype=np.uint8).tolist()}
    a = {"source_timestamp": 5, "publication_sequence_number": 1, "publisher_gid": gid}
    assert message_key("x", a) == (bytes(range(16)), 5, 1, "x")
    assert message_key("x", a) == message_key("x", dict(a))
    assert message_key("x", a) != message_key("x", {**a, "source_timestamp": 6})
    assert message_key("x", a) != message_key("y", a)
    assert message_key("x", None) is None
    assert message_key("x", {"source_timestamp": 0}) is None
    # Two writers publishing the same text at the same instant, with the same sequence number:
    # two messages, told apart by the writer's GID.
    other = {"data": np.arange(1, 17, dtype=np.uint8).tolist()}
    assert message_key("x", a) != message_key("x", {**a, "publisher_gid": other})
    # One writer, two publications within one source-timestamp tick: told apart by the sequence number.
    assert message_key("x", a) != message_key("x", {**a, "publication_sequence_number": 2})


def test_publication_order_bound() -> None:
    before = INSTRUCTION_NS - 300_000_000
    assert published_before(before, INSTRUCTION_NS)  # queued behind the instruction
    assert published_before(INSTRUCTION_NS - PUBLICATION_ORDER_BOUND_NS, INSTRUCTION_NS)  # at the bound
    # Publishers whose clocks disagree by more than the bound: nothing is refused.
    assert not published_before(INSTRUCTION_NS - PUBLICATION_ORDER_BOUND_NS - 1, INSTRUCTION_NS)
    assert not published_before(INSTRUCTION_NS, INSTRUCTION_NS)  # same instant: the new episode's
    assert not published_before(INSTRUCTION_NS + 1, INSTRUCTION_NS)
    assert not published_before(before, None)  # episode not started by a message
    assert not published_before(None, INSTRUCTION_NS)  # no message info


def test_an_instruction_reaching_both_subscriptions_counts_once() -> None:
    intake = FrameIntake(1)
    key = ("gid", 5, 1, "fold")
    assert not intake.is_repeat(key)
    assert intake.is_repeat(key)  # the copy the other subscription got
    assert not intake.is_repeat(("gid", 6, 2, "fold"))  # the same text published again: new
    assert not intake.is_repeat(None) and not intake.is_repeat(None)  # no key: never a repeat
    # Only the latest SEEN_INSTRUCTIONS are remembered.
    for n in range(SEEN_INSTRUCTIONS):
        assert not intake.is_repeat(("other", n))
    assert not intake.is_repeat(key)


def test_frames_belong_before_the_instruction_by_publication_time() -> None:
    intake = FrameIntake(2)
    assert not intake.belongs_before(INSTRUCTION_NS - 1)  # no episode started by a message yet
    assert intake.episode_started("e1", INSTRUCTION_NS) == []
    assert intake.previous_episode == "e1" and intake.episode_published_ns == INSTRUCTION_NS
    assert intake.belongs_before(INSTRUCTION_NS - 1)
    assert not intake.belongs_before(INSTRUCTION_NS)
    assert not intake.belongs_before(None)
    intake.episode_refused()  # no episode runs: nothing belongs before one
    assert not intake.belongs_before(INSTRUCTION_NS - 1)
    assert intake.episode_started("e2", None) == []  # a reset: not started by a message
    assert intake.previous_episode == "e2" and not intake.belongs_before(INSTRUCTION_NS - 1)


def test_frames_published_after_the_instruction_move_into_its_episode() -> None:
    clock = SetClock()
    intake = FrameIntake(2, clock=clock)
    early, at, late, other = object(), object(), object(), object()
    intake.remember(0, INSTRUCTION_NS - 1, early)
    intake.remember(0, INSTRUCTION_NS, at)
    intake.remember(1, INSTRUCTION_NS + 5, other)
    intake.remember(0, INSTRUCTION_NS + 7, late)
    intake.remember(1, None, object())  # no publication time: cannot be ordered, not kept
    moved = intake.episode_started("e1", INSTRUCTION_NS)
    # Camera by camera, oldest first; the frame published before the instruction stays.
    assert moved == [
        Remembered(0, INSTRUCTION_NS, at),
        Remembered(0, INSTRUCTION_NS + 7, late),
        Remembered(1, INSTRUCTION_NS + 5, other),
    ]
    assert moved[0].message is at
    assert intake.remembered(1) == [Remembered(1, INSTRUCTION_NS + 5, other)]
    intake.forget()
    assert intake.remembered(0) == [] and intake.episode_started("e2", INSTRUCTION_NS) == []


def test_the_reorder_window_holds_recent_frames_only() -> None:
    clock = SetClock()
    intake = FrameIntake(1, clock=clock)
    intake.remember(0, 1, "old")
    clock.now += REORDER_WINDOW_S / 2
    intake.remember(0, 2, "half")
    clock.now += REORDER_WINDOW_S / 2 + 0.001  # "old" is now past the window, "half" is not
    intake.remember(0, 3, "new")
    assert [f.message for f in intake.remembered(0)] == ["half", "new"]
    # At most REORDER_MAX_MESSAGES per camera, the newest kept.
    for n in range(REORDER_MAX_MESSAGES + 10):
        intake.remember(0, 10 + n, n)
    assert [f.message for f in intake.remembered(0)] == list(range(10, REORDER_MAX_MESSAGES + 10))


def test_stamp_order_and_the_primary_cameras_cuts() -> None:
    intake = FrameIntake(2)
    jump_s, gap_s = 1.0, 5.0
    first = intake.check_stamp(0, 10 * S, jump_s, gap_s)
    assert (first.order, first.previous_ns, first.cut) == (FIRST, None, None)
    intake.record_stamp(0, 10 * S)
    assert intake.last_stamp(0) == 10 * S
    forward = intake.check_stamp(0, 11 * S, jump_s, gap_s)
    assert (forward.order, forward.previous_ns, forward.cut) == (FORWARD, 10 * S, None)
    assert intake.check_stamp(0, 10 * S, jump_s, gap_s).order == REPEATED
    small_back = intake.check_stamp(0, 10 * S - S // 2, jump_s, gap_s)
    assert (small_back.order, small_back.cut) == (BACK, None)  # within stamp_jump_restart_s: stale only
    big_back = intake.check_stamp(0, 8 * S, jump_s, gap_s)
    assert (big_back.order, big_back.cut) == (BACK, StampCut("back", 2.0))
    gap = intake.check_stamp(0, 16 * S, jump_s, gap_s)
    assert (gap.order, gap.cut) == (FORWARD, StampCut("forward", 6.0))
    assert gap.cut.reason == "camera stamp jumped forward by 6.000 s"
    # Only the primary camera cuts episodes.
    intake.record_stamp(1, 10 * S)
    secondary = intake.check_stamp(1, 100 * S, jump_s, gap_s)
    assert (secondary.order, secondary.previous_ns, secondary.cut) == (FORWARD, 10 * S, None)
    # A new episode starts every camera's stamp order afresh.
    intake.episode_started("e1", None)
    assert intake.last_stamp(0) is None and intake.last_stamp(1) is None
    assert intake.check_stamp(0, 1 * S, jump_s, gap_s).order == FIRST
