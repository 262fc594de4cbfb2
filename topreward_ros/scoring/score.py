"""The result of one scored prefix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Score:
    """Log-probabilities the VLM gives the answers after seeing a video prefix.

    Attributes:
        log_prob_true: log p(" True") in nats (log-softmax in float32 over the
            full vocabulary). This is the TOPReward reward.
        log_prob_false: log p(" False") at the same position, in nats.
        num_frames: frames of the prefix (before a single frame is duplicated).
        latency_s: wall time of the computation that produced this score.
    """

    log_prob_true: float
    log_prob_false: float
    num_frames: int
    latency_s: float
