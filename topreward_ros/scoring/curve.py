"""Progress curves: raw prefix scores, their per-episode normalisation, success.

A curve is what TOPReward reports per episode: the raw log p(" True") of K
growing prefixes, the same values min-max normalised to [0, 1] (the
progress estimate the paper evaluates with VOC), and the success score (mean
raw log-probability of the last prefixes). Min-max needs the whole episode:
it is for offline analysis; live use goes through ``progress.CausalProgress``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from topreward_ros.scoring.score import Score

#: Paper Eq. 3 defaults.
DENSE_TAU = 2.0
DENSE_DELTA_MAX = 2.0


def _finite_array(values: Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return arr


def normalize_minmax(values: Sequence[float]) -> list[float]:
    """(v - min) / (max - min) over the episode; a constant curve gives all ones.

    All ones (not zeros) for a constant curve, as in the released code: with
    no evidence of change the episode is not penalised.
    """
    arr = _finite_array(values, "values")
    low, high = float(arr.min()), float(arr.max())
    if high - low <= 0.0:
        return [1.0] * arr.size
    return ((arr - low) / (high - low)).tolist()


def success_score(raw: Sequence[float], window: int = 3) -> float:
    """Mean raw log p(" True") of the last ``window`` prefixes (all if fewer)."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an integer >= 1, got {window!r}")
    arr = _finite_array(raw, "raw")
    return float(arr[-window:].mean())


def dense_rewards(
    normalized: Sequence[float],
    prefix_lengths: Sequence[int],
    num_frames: int,
    tau: float = DENSE_TAU,
    delta_max: float = DENSE_DELTA_MAX,
) -> np.ndarray:
    """Per-frame weights for reward-aligned behaviour cloning (paper Eq. 3).

    Interpretation implemented here (the paper gives the formula, not these
    details):

    * ``delta_k = clip(tau * exp(s_k - s_{k-1}), 0, delta_max)`` with ``s``
      the min-max normalised curve, for prefixes ``k = 1..K-1``;
    * the first prefix has no predecessor: ``s_{-1} = s_0``, so
      ``delta_0 = clip(tau, 0, delta_max)``;
    * ``delta_k`` belongs to the last frame of prefix ``k`` (frame index
      ``prefix_lengths[k] - 1``); every frame gets the value linearly
      interpolated between those anchors (held constant before the first and
      after the last anchor).

    Returns an array of ``num_frames`` float64 weights in ``[0, delta_max]``.
    """
    s = _finite_array(normalized, "normalized")
    lengths = np.asarray(prefix_lengths, dtype=np.int64)
    if lengths.shape != s.shape:
        raise ValueError(f"prefix_lengths has {lengths.size} entries, normalized has {s.size}")
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be an integer >= 1, got {num_frames!r}")
    if np.any(np.diff(lengths) <= 0) or lengths[0] < 1 or lengths[-1] > num_frames:
        raise ValueError(f"prefix_lengths must increase strictly within 1..{num_frames}, got {lengths.tolist()}")
    if not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be a finite number > 0, got {tau!r}")
    if not (math.isfinite(delta_max) and delta_max > 0):
        raise ValueError(f"delta_max must be a finite number > 0, got {delta_max!r}")
    previous = np.concatenate(([s[0]], s[:-1]))
    deltas = np.clip(tau * np.exp(s - previous), 0.0, delta_max)
    return np.interp(np.arange(num_frames), lengths - 1, deltas)


@dataclass(frozen=True)
class ProgressCurve:
    """One episode's TOPReward progress curve.

    Attributes:
        prefix_lengths: number of (sampled) frames of each scored prefix.
        stamps_ns: capture stamp of the last frame of each prefix.
        log_prob_true: raw log p(" True") per prefix (nats).
        log_prob_false: raw log p(" False") per prefix (nats).
        normalized: min-max normalised ``log_prob_true`` (offline progress).
        success_score: mean raw log p(" True") of the last ``success_window`` prefixes.
        model_id: the model that produced it.
        latency_s: wall time of each prefix's score.
    """

    prefix_lengths: tuple[int, ...]
    stamps_ns: tuple[int, ...]
    log_prob_true: tuple[float, ...]
    log_prob_false: tuple[float, ...]
    normalized: tuple[float, ...]
    success_score: float
    model_id: str
    latency_s: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (lists, ints, floats, str)."""
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def build_curve(
    prefix_lengths: Sequence[int],
    stamps_ns: Sequence[int],
    scores: Sequence[Score],
    *,
    model_id: str,
    success_window: int = 3,
) -> ProgressCurve:
    """Assemble a ``ProgressCurve`` from per-prefix scores."""
    if not (len(prefix_lengths) == len(stamps_ns) == len(scores)) or not scores:
        raise ValueError(
            f"need one stamp and one score per prefix, got {len(prefix_lengths)} prefixes, "
            f"{len(stamps_ns)} stamps, {len(scores)} scores"
        )
    raw = [s.log_prob_true for s in scores]
    return ProgressCurve(
        prefix_lengths=tuple(int(n) for n in prefix_lengths),
        stamps_ns=tuple(int(t) for t in stamps_ns),
        log_prob_true=tuple(raw),
        log_prob_false=tuple(s.log_prob_false for s in scores),
        normalized=tuple(normalize_minmax(raw)),
        success_score=success_score(raw, success_window),
        model_id=model_id,
        latency_s=tuple(s.latency_s for s in scores),
    )
