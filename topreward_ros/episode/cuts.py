"""Where episodes begin and end: the cut rules the node and the offline sources share.

A recording holds many episodes back to back. The offline tools must cut a
bag exactly where the node (``scorer_node``) would have started a new
episode while watching it live, so these rules mirror the node's:

* every non-empty instruction message starts a new episode (even with the
  same text: the node treats each one as "begin this task now");
* an empty instruction is ignored (the episode goes on) and counted;
* a reset (the node's ``~/reset`` service; offline, a message on a reset
  topic) starts a new episode with the current instruction;
* a primary camera stamp that jumps back by more than
  ``stamp_jump_restart_s`` (a looping recording, a restarted driver) starts
  a new episode with the current instruction;
* its forward twin: a primary camera stamp more than
  ``stamp_gap_restart_s`` after the episode's previous primary frame (a
  driver that stamped zero until its clock came up, a recording paused for
  long) starts a new episode with the current instruction, so the 2 fps
  schedule never anchors at the old stamps and the model never gets frames
  that far apart as one video;
* a fixed instruction (``--instruction``, like the node's ``instruction``
  parameter) starts an episode at the first message; the instruction topic
  is then not read;
* the end of the bag ends the current episode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from topreward_ros.scoring.stamps import NS_PER_S


@dataclass(frozen=True)
class StampCut:
    """A primary camera stamp that starts a new episode with the same instruction.

    The node and the offline sources cut by this one rule, so a recording
    is cut live where it is cut offline: a stamp that jumps back by more
    than ``stamp_jump_restart_s`` (a looping recording, a restarted driver)
    or forward by more than ``stamp_gap_restart_s`` (zero stamps turning
    real, a long pause) would otherwise put one video's samples years apart.
    """

    direction: str  # "back" or "forward"
    seconds: float

    @property
    def reason(self) -> str:
        return f"camera stamp jumped {self.direction} by {self.seconds:.3f} s"


def stamp_cut(previous_ns: int | None, stamp_ns: int, jump_restart_s: float, gap_restart_s: float) -> StampCut | None:
    """The cut a primary frame stamped ``stamp_ns`` after one stamped ``previous_ns`` makes, if any."""
    if previous_ns is None:
        return None
    if (previous_ns - stamp_ns) / NS_PER_S > jump_restart_s:
        return StampCut("back", (previous_ns - stamp_ns) / NS_PER_S)
    if (stamp_ns - previous_ns) / NS_PER_S > gap_restart_s:
        return StampCut("forward", (stamp_ns - previous_ns) / NS_PER_S)
    return None


Action = Literal["start", "end"]


@dataclass(frozen=True)
class EpisodeEvent:
    """An episode starts or ends at a log time, for a reason."""

    action: Action
    log_time_ns: int
    instruction: str
    reason: str


class EpisodeSplitter:
    """Turns instruction / reset / stamp-jump observations into episode events."""

    def __init__(self, fixed_instruction: str | None = None) -> None:
        if fixed_instruction is not None and not fixed_instruction.strip():
            raise ValueError("the fixed instruction must not be empty")
        self.fixed_instruction = fixed_instruction
        self._instruction: str | None = None
        self.active = False
        self.ignored_empty = 0
        self.ignored_resets = 0

    @property
    def instruction(self) -> str | None:
        return self._instruction

    def continue_episode(self, instruction: str) -> None:
        """Pick up inside an episode that started earlier (reading one episode by its time range)."""
        self._instruction = instruction
        self.active = True

    def begin(self, log_time_ns: int) -> list[EpisodeEvent]:
        """The first message of the bag: a fixed instruction starts its episode here."""
        if self.fixed_instruction is None or self._instruction is not None:
            return []
        return self._restart(log_time_ns, self.fixed_instruction, "fixed instruction")

    def on_instruction(self, text: str, log_time_ns: int) -> list[EpisodeEvent]:
        if self.fixed_instruction is not None:
            return []
        if not text.strip():
            self.ignored_empty += 1
            return []
        return self._restart(log_time_ns, text, "instruction")

    def on_reset(self, log_time_ns: int) -> list[EpisodeEvent]:
        if self._instruction is None:
            self.ignored_resets += 1
            return []
        return self._restart(log_time_ns, self._instruction, "reset")

    def on_stamp_cut(self, log_time_ns: int, cut: StampCut) -> list[EpisodeEvent]:
        """A primary camera stamp jumped back or far forward (``episode.stamp_cut``)."""
        if not self.active or self._instruction is None:
            return []
        return self._restart(log_time_ns, self._instruction, cut.reason)

    def finish(self, log_time_ns: int, reason: str = "end of bag") -> list[EpisodeEvent]:
        return self._end(log_time_ns, reason)

    def _restart(self, log_time_ns: int, instruction: str, reason: str) -> list[EpisodeEvent]:
        events = self._end(log_time_ns, reason)
        self._instruction = instruction
        self.active = True
        events.append(EpisodeEvent("start", log_time_ns, instruction, reason))
        return events

    def _end(self, log_time_ns: int, reason: str) -> list[EpisodeEvent]:
        if not self.active:
            return []
        self.active = False
        assert self._instruction is not None
        return [EpisodeEvent("end", log_time_ns, self._instruction, reason)]
