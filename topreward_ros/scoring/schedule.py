"""Which frames the model sees: the prefix-stable 2 fps schedule.

TOPReward samples the video at a fixed rate (2 fps by default) from the
frames' real capture stamps, and the frames chosen for a prefix must be
exactly the frames of the full episode that fall inside that prefix. A rule
that decides each frame from its own stamp and the frames before it, never
from later ones, has that property by construction, and it is also the only
kind of rule a live node can apply. ``FrameSampler`` is that rule; the node,
the bag tools and the offline scorer all call it, so they keep the same
frames.

Stamps are integer nanoseconds throughout (as in ROS headers and rosbag2), so
that no float rounding can move a frame across a slot boundary.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from topreward_ros.scoring.stamps import NS_PER_S

# A frame may fill a slot this fraction of the period before the slot time.
# Cameras stamp frames at slightly irregular times (a 30 Hz camera's 15th
# frame lands at 499.99 ms, just before the 500 ms slot); without this slack
# the schedule would take the frame after it and drift by a frame period.
SLOT_SLACK_FRACTION = 0.1


class FrameSampler:
    """Online, prefix-stable frame selection on a fixed-rate time grid.

    Slots lie at ``t0 + n / sample_fps`` where ``t0`` is the stamp of the
    episode's first frame. A frame is kept when its stamp reaches the next
    unfilled slot (less ``SLOT_SLACK_FRACTION`` of a period); the next slot is
    then the first one after that stamp, so a stalled camera leaves a gap
    instead of a burst of back-filled duplicates.
    """

    def __init__(self, sample_fps: float) -> None:
        if not sample_fps > 0:
            raise ValueError(f"sample_fps must be > 0, got {sample_fps!r}")
        self.sample_fps = float(sample_fps)
        self._base_period_ns = int(round(NS_PER_S / self.sample_fps))
        self.reset()

    @property
    def next_slot_ns(self) -> int | None:
        """Stamp of the next unfilled slot (None before the first frame)."""
        if self._t0_ns is None:
            return None
        return self._t0_ns + self._next_slot * self.period_ns

    @property
    def slack_ns(self) -> int:
        return self._slack_ns

    def coarsen(self, factor: int = 2) -> None:
        """Multiply the period (used when a window thins its history).

        Slots stay anchored at the episode's first frame; the next slot is the
        first one of the coarser grid after the newest kept frame.
        """
        if factor < 1:
            raise ValueError(f"factor must be >= 1, got {factor}")
        self.period_ns *= factor
        self._slack_ns = int(self.period_ns * SLOT_SLACK_FRACTION)
        if self._t0_ns is not None and self._last_kept_ns is not None:
            elapsed = self._last_kept_ns - self._t0_ns + self._slack_ns
            self._next_slot = elapsed // self.period_ns + 1

    def reset(self) -> None:
        """Forget the episode: the next frame offered becomes slot 0."""
        self.period_ns = self._base_period_ns
        self._slack_ns = int(self.period_ns * SLOT_SLACK_FRACTION)
        self._t0_ns: int | None = None
        self._next_slot = 0
        self._last_kept_ns: int | None = None

    @property
    def started(self) -> bool:
        return self._t0_ns is not None

    @property
    def last_kept_ns(self) -> int | None:
        return self._last_kept_ns

    def wants(self, stamp_ns: int) -> bool:
        """Would a frame with this stamp be kept? Does not change state."""
        if self._t0_ns is None:
            return True
        if self._last_kept_ns is not None and stamp_ns <= self._last_kept_ns:
            return False
        slot_ns = self._t0_ns + self._next_slot * self.period_ns
        return stamp_ns >= slot_ns - self._slack_ns

    def offer(self, stamp_ns: int) -> bool:
        """Offer a frame; returns True (and advances) if it fills a slot."""
        if not self.wants(stamp_ns):
            return False
        if self._t0_ns is None:
            self._t0_ns = stamp_ns
            self._next_slot = 1
        else:
            elapsed = stamp_ns - self._t0_ns + self._slack_ns
            self._next_slot = elapsed // self.period_ns + 1
        self._last_kept_ns = stamp_ns
        return True


def sample_indices(stamps_ns: Sequence[int] | Iterable[int], sample_fps: float) -> list[int]:
    """Indices of the frames kept from a whole stream of stamps (in order)."""
    sampler = FrameSampler(sample_fps)
    return [i for i, stamp in enumerate(stamps_ns) if sampler.offer(int(stamp))]


def prefix_lengths(num_frames: int, num_prefixes: int) -> list[int]:
    """The paper's prefix lengths: linspace(1, N, K) rounded, unique, ascending."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_prefixes < 1:
        raise ValueError(f"num_prefixes must be >= 1, got {num_prefixes}")
    points = np.linspace(1, num_frames, num_prefixes)
    return sorted({int(x) for x in np.rint(points)})
