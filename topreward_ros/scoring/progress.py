"""Live progress and success from a stream of raw scores.

Per-episode min-max normalisation (what the paper reports) needs the lowest
and highest score of the whole episode, so it is not causal: a live value
computed that way would change retroactively as the episode goes on. Live use
needs a mapping fixed at the start. ``CausalProgress`` anchors 0 at the
episode's first score and 1 at the success threshold: the same raw score
always means the same progress within an episode, and reaching 1 coincides
with what the success detector considers done.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


def _finite(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


class CausalProgress:
    """Progress in [0, 1]: 0 at the first score, 1 at ``threshold`` (nats), clipped.

    If the first score is already at or above the threshold the span is
    empty: progress is then 1 while the score stays at or above the
    threshold and 0 below it.
    """

    def __init__(self, threshold: float) -> None:
        self.threshold = _finite(threshold, "threshold")
        self.reset()

    def reset(self) -> None:
        """Forget the episode: the next score becomes the anchor."""
        self.anchor: float | None = None

    def update(self, raw: float) -> float:
        """Progress for a new raw log p(" True")."""
        raw = _finite(raw, "raw")
        if self.anchor is None:
            self.anchor = raw
        span = self.threshold - self.anchor
        if span <= 0.0:
            return 1.0 if raw >= self.threshold else 0.0
        return min(1.0, max(0.0, (raw - self.anchor) / span))


@dataclass(frozen=True)
class SuccessVerdict:
    """What one update of a ``SuccessDetector`` concluded.

    Attributes:
        score: success score, the mean of the last ``window`` raw scores (of
            all scores so far while there are fewer).
        success: the episode has been declared successful (stays True after
            firing, until ``reset()``).
        fired: this very update declared it (True once per episode).
    """

    score: float
    success: bool
    fired: bool


def _count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


class SuccessDetector:
    """Success when the mean of the last ``window`` raw scores exceeds ``threshold``.

    No decision is taken before ``window`` scores exist (a single early score
    must not end an episode); the mean must then exceed the threshold for
    ``consecutive`` updates in a row. Success fires once per episode and
    stays declared until ``reset()``: the verdict is about the episode, so
    no later score, setting change (``reconfigure``) or restart of the
    evidence (``restart_evidence``) takes it back or fires it a second time.
    """

    def __init__(self, threshold: float, window: int = 3, consecutive: int = 1) -> None:
        self.threshold = _finite(threshold, "threshold")
        self.window = _count(window, "window")
        self.consecutive = _count(consecutive, "consecutive")
        self.reset()

    def reset(self) -> None:
        """Start a new episode."""
        self.restart_evidence()
        self.fired = False
        self.updates = 0

    def restart_evidence(self) -> None:
        """Forget the scores and the streak, keep the verdict.

        For a change of what the scores are computed on (the episode's
        window restarted with other sampling): scores of different frame sets
        are not averaged together, but a success already declared stands.
        """
        self._recent: deque[float] = deque(maxlen=self.window)
        self._streak = 0

    def reconfigure(
        self, threshold: float | None = None, window: int | None = None, consecutive: int | None = None
    ) -> None:
        """Apply new settings from the next update on, keeping the verdict.

        A new threshold or consecutive count keeps the recent scores and the
        streak (each update was judged by the threshold in force then). A new
        window keeps the latest scores that fit in it but restarts the streak,
        since the scores counted so far were means over another window.
        """
        new_threshold = self.threshold if threshold is None else _finite(threshold, "threshold")
        new_window = self.window if window is None else _count(window, "window")
        new_consecutive = self.consecutive if consecutive is None else _count(consecutive, "consecutive")
        self.threshold, self.consecutive = new_threshold, new_consecutive
        if new_window != self.window:
            self.window = new_window
            self._recent = deque(self._recent, maxlen=new_window)
            self._streak = 0

    @property
    def success_score(self) -> float | None:
        """Mean of the last ``window`` raw scores (of all, while fewer; None before any)."""
        if not self._recent:
            return None
        return sum(self._recent) / len(self._recent)

    def update(self, raw: float) -> SuccessVerdict:
        """Add a raw score and decide."""
        self._recent.append(_finite(raw, "raw"))
        self.updates += 1
        score = sum(self._recent) / len(self._recent)
        if len(self._recent) == self.window and score > self.threshold:
            self._streak += 1
        else:
            self._streak = 0
        fired_now = not self.fired and self._streak >= self.consecutive
        if fired_now:
            self.fired = True
        return SuccessVerdict(score=score, success=self.fired, fired=fired_now)
