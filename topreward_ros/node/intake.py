"""Which episode a camera frame belongs to, and which instruction messages are new.

The live node receives frames and instructions on separate topics, and the
middleware delivers topics in no order with each other: a frame published just
before an instruction can be handled after it, and one published just after it
can be handled before. The bag tools read one log in publication order and
never see this. ``FrameIntake`` holds what the node needs to put each frame
where the bag's order would have put it, with plain values only (publication
times and stamps in integer nanoseconds, camera indices, messages it never
looks into), so its rules are tested without a ROS graph:

* instruction dedupe: the same published instruction reaching the node by two
  subscriptions (latched and volatile) counts once (``message_key``);
* publication-order bound: a frame published shortly before the instruction
  that started the running episode belongs to the episode before
  (``PUBLICATION_ORDER_BOUND_NS``); a larger gap reads as disagreeing clocks;
* reorder window: the frames handled in the last ``REORDER_WINDOW_S`` are
  remembered, and those published at or after a new instruction move into the
  episode it starts;
* stamp order of each camera, and the primary camera's stamp cuts
  (``topreward_ros.episode.runner.stamp_cut``, the offline sources' own rule).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from topreward_ros.episode.cuts import StampCut, stamp_cut

#: Frames published up to this long before an episode's instruction are taken
#: as belonging to the episode before (a busy node can hold a backlog of
#: seconds). Larger gaps are read as publishers' clocks that disagree (machines
#: without time sync), and then nothing is refused.
PUBLICATION_ORDER_BOUND_NS = 10_000_000_000
#: How long (wall clock) the node remembers the camera messages it handled, so
#: that frames published after an instruction but handled before it (topics are
#: not delivered in order with each other, and a busy machine runs callbacks
#: late) still go to the episode that instruction starts.
REORDER_WINDOW_S = 1.0
#: At most this many remembered messages per camera (bounds memory at high rates).
REORDER_MAX_MESSAGES = 64
#: Instruction messages remembered to recognise one that arrives by both routes.
SEEN_INSTRUCTIONS = 32

#: The orders a frame's stamp can have against the camera's previous one.
FIRST, FORWARD, REPEATED, BACK = "first", "forward", "repeated", "back"


def source_timestamp(info: Any) -> int | None:
    """Publication time of a message (publisher's system clock), if the middleware gives one.

    ``info``: the message info rclpy hands a subscription callback (a dict).
    """
    if not info:
        return None
    value = info.get("source_timestamp") if isinstance(info, dict) else None
    return int(value) if value else None


def message_key(text: str, info: Any) -> tuple | None:
    """What identifies one published instruction, whichever subscription it reached.

    The writer's GID (where rclpy gives it), publication time and sequence
    number are the same for the copy a latched and a volatile subscription
    each receive, and differ for any two publications. None when the info
    has no publication time (nothing to tell two copies by).
    """
    if not isinstance(info, dict) or not info.get("source_timestamp"):
        return None
    gid = info.get("publisher_gid")
    gid_bytes = bytes(gid.get("data", b"")) if isinstance(gid, dict) else None
    return (gid_bytes, int(info["source_timestamp"]), info.get("publication_sequence_number"), text)


def published_before(published_ns: int | None, episode_published_ns: int | None) -> bool:
    """Was a message published at ``published_ns`` shortly before the episode's instruction?"""
    if episode_published_ns is None or published_ns is None:
        return False
    return 0 < episode_published_ns - published_ns <= PUBLICATION_ORDER_BOUND_NS


@dataclass(frozen=True)
class Remembered:
    """A frame handled lately: its camera, publication time and message (never looked into)."""

    camera: int
    published_ns: int
    message: Any


@dataclass(frozen=True)
class StampCheck:
    """A frame's stamp against its camera's previous one.

    ``order``: FIRST (no previous stamp in this episode), FORWARD, REPEATED or
    BACK. ``cut``: the episode cut the stamp makes (primary camera only).
    """

    order: str
    previous_ns: int | None
    cut: StampCut | None


class FrameIntake:
    """The node's memory of recent frames and instructions, and its ordering rules.

    Not thread-safe: the node calls it under its frame lock.
    ``clock``: monotonic seconds, the reorder window's time base.
    """

    def __init__(self, num_cameras: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._recent: list[deque[tuple[float, Remembered]]] = [deque() for _ in range(num_cameras)]
        self._seen: deque[tuple] = deque(maxlen=SEEN_INSTRUCTIONS)
        self._last_stamp: list[int | None] = [None] * num_cameras
        #: Publication time of the instruction that started the running episode
        #: (None when it started otherwise: a reset, a stamp cut, the parameter).
        self.episode_published_ns: int | None = None
        #: The episode that ran before the current one (late frames may still join it).
        self.previous_episode: str | None = None

    # -- instructions -------------------------------------------------------------
    def is_repeat(self, key: tuple | None) -> bool:
        """Has this instruction message (``message_key``) been taken already? Remembers it if not."""
        if key is None:
            return False
        if key in self._seen:
            return True
        self._seen.append(key)
        return False

    # -- episodes -----------------------------------------------------------------
    def episode_started(self, previous_episode: str | None, published_ns: int | None) -> list[Remembered]:
        """A new episode runs; returns the remembered frames that move into it.

        ``published_ns``: publication time of the instruction that started it
        (None: nothing moves). Those frames were judged against the episode
        before, because their callbacks ran before the instruction's; by
        publication order they are the new episode's. The stamp order starts
        afresh for every camera.
        """
        self.episode_published_ns = published_ns
        self.previous_episode = previous_episode
        self._last_stamp = [None] * len(self._last_stamp)
        if published_ns is None:
            return []
        return [frame for recent in self._recent for _, frame in list(recent) if frame.published_ns >= published_ns]

    def episode_refused(self) -> None:
        """No episode runs (an instruction was refused): no frame belongs before one."""
        self.episode_published_ns = None

    # -- frames -------------------------------------------------------------------
    def remember(self, camera: int, published_ns: int | None, message: Any) -> None:
        """Keep a handled frame for the reorder window (frames without a publication time are not)."""
        if published_ns is None:
            return
        now = self._clock()
        recent = self._recent[camera]
        recent.append((now, Remembered(camera, published_ns, message)))
        while recent and (len(recent) > REORDER_MAX_MESSAGES or now - recent[0][0] > REORDER_WINDOW_S):
            recent.popleft()

    def remembered(self, camera: int) -> list[Remembered]:
        """The frames of ``camera`` the reorder window holds, oldest first."""
        return [frame for _, frame in self._recent[camera]]

    def forget(self) -> None:
        """Drop the remembered frames (the node stops taking frames)."""
        for recent in self._recent:
            recent.clear()

    def belongs_before(self, published_ns: int | None) -> bool:
        """Was this frame published shortly before the running episode's instruction?"""
        return published_before(published_ns, self.episode_published_ns)

    def check_stamp(self, camera: int, stamp_ns: int, jump_restart_s: float, gap_restart_s: float) -> StampCheck:
        """How ``stamp_ns`` follows the camera's previous stamp, and the cut it makes (camera 0)."""
        previous = self._last_stamp[camera]
        cut = stamp_cut(previous, stamp_ns, jump_restart_s, gap_restart_s) if camera == 0 else None
        if previous is None:
            order = FIRST
        elif stamp_ns < previous:
            order = BACK
        elif stamp_ns == previous:
            order = REPEATED
        else:
            order = FORWARD
        return StampCheck(order, previous, cut)

    def record_stamp(self, camera: int, stamp_ns: int) -> None:
        """The camera's latest stamp, the one the next frame's is checked against."""
        self._last_stamp[camera] = stamp_ns

    def last_stamp(self, camera: int) -> int | None:
        return self._last_stamp[camera]
