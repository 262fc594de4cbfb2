"""The scorer node's health: plain counters, and the /diagnostics entries built from them.

The node's callbacks update the records below (each camera's record only from
that camera's callback group); the diagnostics timer turns a snapshot of them
into ``DiagnosticStatus`` entries with the functions at the end. The builders
take plain values, not the node, so what a status says for a given state is
decided in one place and can be read without the node's threading around it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from topreward_ros.episode.cameras import CameraType
from topreward_ros.episode.records import EpisodeSummary, TickResult
from topreward_ros.episode.window import EpisodeWindow
from topreward_ros.scoring.stamps import NS_PER_S

#: Written into every status's hardware_id.
HARDWARE_ID = "scorer_node"
#: How long an error keeps a diagnostic status at WARN/ERROR after it happened.
ERROR_HOLD_S = 10.0
#: Frames remembered per camera for the arrival-rate estimate.
RATE_WINDOW = 64


@dataclass
class ErrorRecord:
    """The last error of one concern, with when it happened (monotonic s)."""

    message: str = ""
    at: float | None = None
    count: int = 0

    def record(self, message: str) -> None:
        self.message, self.at = message, time.monotonic()
        self.count += 1

    def recent(self, now: float, hold_s: float = ERROR_HOLD_S) -> bool:
        return self.at is not None and now - self.at <= hold_s


@dataclass
class CameraStats:
    """Per-camera counters, each with one writer.

    The camera's callback group writes all but ``bad``: a kept frame is only
    converted by the scoring tick, which counts the unusable ones in ``bad``
    (and records ``error``). ``kept`` therefore includes the frames later found
    bad; the diagnostics subtract them, so received = kept + not needed + bad
    + stale there.
    """

    topic: str
    camera_type: CameraType
    received: int = 0
    kept: int = 0
    not_needed: int = 0
    bad: int = 0
    stale: int = 0
    stamps_repeated: int = 0  # frames stamped like the one before (counted in not_needed too)
    stamp_gaps: int = 0  # forward stamp jumps that restarted the episode
    reordered: int = 0  # frames moved into an episode whose instruction was handled after them
    arrivals: deque = field(default_factory=lambda: deque(maxlen=RATE_WINDOW))
    last_stamp_ns: int | None = None
    error: ErrorRecord = field(default_factory=ErrorRecord)
    created_at: float = field(default_factory=time.monotonic)

    def rate_hz(self, now: float) -> float:
        """Arrival rate over the remembered frames, 0 when stalled."""
        if len(self.arrivals) < 2:
            return 0.0
        span = now - self.arrivals[0]
        return (len(self.arrivals) - 1) / span if span > 0 else 0.0


@dataclass
class ScoringStats:
    """Counters of the scoring timer; updated only by the tick."""

    ticks: int = 0
    published: int = 0
    skipped_ticks: int = 0
    idle_ticks: int = 0
    ooms: int = 0
    latencies: deque = field(default_factory=lambda: deque(maxlen=50))
    last_timings: dict[str, float] = field(default_factory=dict)
    error: ErrorRecord = field(default_factory=ErrorRecord)
    # Monotonic start of the tick now running (None between ticks): a forward
    # that hangs or takes far longer than 1 / rate_hz shows on /diagnostics.
    running_since: float | None = None


class ModelState:
    NOT_LOADED = "not loaded"
    LOADING = "loading"
    LOADED = "loaded"
    FAILED = "failed"


# --------------------------------------------------------------------------
# DiagnosticStatus builders.
# --------------------------------------------------------------------------
def make_status(name: str, level: bytes, message: str, values: dict[str, Any]) -> DiagnosticStatus:
    status = DiagnosticStatus()
    status.name = name
    status.level = level
    status.message = message
    status.hardware_id = HARDWARE_ID
    status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    return status


@dataclass(frozen=True)
class SlotView:
    """What diagnostics report of the model slot (``model_slot.ModelSlot.view``), read at one moment."""

    state: str
    error: ErrorRecord
    attempts: int
    retry_in_s: float
    model_id: str | None
    load_time_s: float


def model_status(prefix: str, model: str, slot: SlotView) -> DiagnosticStatus:
    """The model entry: OK once loaded, ERROR after a failed load, WARN while none is ready.

    ``model`` is the ``model`` parameter (what the node was asked to load).
    """
    values: dict[str, Any] = {
        "model": model,
        "state": slot.state,
        "attempts": slot.attempts,
        "last_error": slot.error.message,
    }
    if slot.state == ModelState.LOADED and slot.model_id is not None:
        level, message = DiagnosticStatus.OK, f"loaded {slot.model_id}"
        values["load_time_s"] = round(slot.load_time_s, 2)
    elif slot.state == ModelState.FAILED:
        level, message = DiagnosticStatus.ERROR, slot.error.message
        values["retry_in_s"] = round(max(slot.retry_in_s, 0.0), 1)
    else:
        level, message = DiagnosticStatus.WARN, f"{slot.state}: no scores until the model is ready"
    return make_status(f"{prefix}: model", level, message, values)


def camera_status(
    prefix: str,
    index: int,
    stats: CameraStats,
    now: float,
    *,
    resolved_topic: str,
    stall_warn_s: float,
    stall_error_s: float,
    ros_now_ns: int,
) -> DiagnosticStatus:
    """One camera's entry: stalled (by wall-clock arrival age), a recent error, or receiving."""
    s = stats
    last = s.arrivals[-1] if s.arrivals else None
    age = now - (last if last is not None else s.created_at)
    values: dict[str, Any] = {
        "topic": resolved_topic,
        "type": s.camera_type.short_name,
        "rate_hz": round(s.rate_hz(now) if age < stall_warn_s else 0.0, 2),
        "last_frame_age_s": round(age, 3) if last is not None else "never",
        "received": s.received,
        "kept": s.kept - s.bad,  # every bad frame was kept first (see CameraStats)
        "not_needed": s.not_needed,
        "bad_images": s.bad,
        "stale_or_reordered": s.stale,
        "stamps_not_increasing": s.stale + s.stamps_repeated,
        "stamp_gaps": s.stamp_gaps,
        "moved_to_next_episode": s.reordered,
        "last_error": s.error.message,
    }
    if last is not None and s.last_stamp_ns is not None:
        values["stamp_lag_s"] = round((ros_now_ns - s.last_stamp_ns) / NS_PER_S, 3)
    if age > stall_error_s:
        level = DiagnosticStatus.ERROR
        message = f"stalled: no frame for {age:.1f} s" if last is not None else f"no frame in {age:.1f} s"
    elif age > stall_warn_s:
        level = DiagnosticStatus.WARN
        message = f"stalled: no frame for {age:.1f} s" if last is not None else "no frame yet"
    elif s.error.recent(now):
        level, message = DiagnosticStatus.WARN, s.error.message
    else:
        level, message = DiagnosticStatus.OK, "receiving"
    role = "primary" if index == 0 else f"camera {index}"
    return make_status(f"{prefix}: camera {s.topic} ({role})", level, message, values)


def episode_status(
    prefix: str,
    now: float,
    *,
    episode_id: str | None,
    instruction: str | None,
    window: EpisodeWindow,
    max_frames: int,
    event: ErrorRecord,
    error: ErrorRecord,
    last_result: TickResult | None,
    secondary_topics: Sequence[str] = (),
    refused_since: tuple[float, str] | None = None,
    refused_instructions: int = 0,
    threshold: float | None = None,
    per_task_threshold: bool = False,
    last_ended: EpisodeSummary | None = None,
    results_published: int = 0,
) -> DiagnosticStatus:
    """The episode entry: its identity, how full the window is, and the latest scores.

    ``refused_since``: (monotonic time, why) while no episode runs because the
    last instruction was refused; the time nothing has been scored is reported.
    ``threshold``: the success threshold the running episode is judged with
    (``per_task_threshold``: its instruction's own, else the global one);
    ``last_ended``: the verdict of the last episode that ended (its EpisodeResult).
    """
    filled = len(window.samples)
    values: dict[str, Any] = {
        "episode_id": episode_id or "",
        "instruction": instruction or "",
        "window_frames": filled,
        "window_max_frames": max_frames,
        "window_fill": round(filled / max_frames, 3),
        "window_thinned": window.thinned,
        "camera_sync_misses": window.sync_misses,
        "last_event": event.message,
        "last_error": error.message,
        "refused_instructions": refused_instructions,
        "unscored_since_refusal_s": round(now - refused_since[0], 3) if refused_since else 0.0,
        "episode_results": results_published,
    }
    if threshold is not None:
        values["success_threshold"] = threshold
        values["success_threshold_source"] = "task" if per_task_threshold else "global"
    if last_ended is not None:
        values.update(
            {
                "last_ended_episode": last_ended.episode_id,
                "last_ended_reason": last_ended.end_reason,
                "last_ended_success": last_ended.success,
                "last_ended_threshold": last_ended.threshold,
                "last_ended_final_frames_scored": last_ended.final_frames_scored,
            }
        )
    # Samples that got a grey view: that camera had no frame within sync_tolerance_s.
    misses = window.sync_misses_by_camera
    for index, topic in enumerate(secondary_topics[: len(misses) - 1], start=1):
        values[f"camera_sync_misses {topic}"] = misses[index]
    if last_result is not None and last_result.episode_id == episode_id:
        values.update(
            progress=round(last_result.progress, 4),
            success=last_result.success,
            success_score=round(last_result.success_score, 4),
        )
    if refused_since is not None and episode_id is None:
        level = DiagnosticStatus.WARN
        message = (
            f"no episode for {now - refused_since[0]:.1f} s: {refused_since[1]}; "
            f"nothing is scored until a valid instruction arrives"
        )
    elif error.recent(now):
        level, message = DiagnosticStatus.WARN, error.message
    elif episode_id is None:
        level, message = DiagnosticStatus.WARN, "waiting for an instruction"
    else:
        level, message = DiagnosticStatus.OK, f"episode {episode_id}"
    return make_status(f"{prefix}: episode", level, message, values)


def _primary_stall(now: float, primary: CameraStats | None, episode_active: bool, stall_warn_s: float) -> str:
    """Why scores are not updating when the primary camera (it drives the schedule) is silent; "" if it is not."""
    if primary is None or not episode_active:
        return ""
    last_arrival = primary.arrivals[-1] if primary.arrivals else primary.created_at
    if now - last_arrival <= stall_warn_s:
        return ""
    stamp_ns = primary.last_stamp_ns
    since = "the episode began" if stamp_ns is None else f"stamp {stamp_ns / NS_PER_S:.3f} s"
    return (
        f"primary camera {primary.topic} stalled: no new frames since {since}, "
        f"{now - last_arrival:.1f} s ago; scores are not updating"
    )


def scoring_status(
    prefix: str,
    now: float,
    stats: ScoringStats,
    *,
    rate_hz: float,
    primary: CameraStats | None = None,
    episode_active: bool = False,
    stall_warn_s: float = float("inf"),
    last_result: TickResult | None = None,
    lifecycle_state: str = "active",
) -> DiagnosticStatus:
    """The scoring entry: ERROR after a recent failed tick; WARN when the primary camera stalls or ticks are skipped.

    The level is the worst condition that holds and the message names every
    one of them, joined by "; " (failed tick, stall, skipped ticks), with a
    boolean value per condition for consumers that parse values.

    A stalled primary camera is reported here too, not only on the camera's
    own entry: scores stop changing with it, and a consumer that watches only
    the scoring entry must not read "OK" as "the score is current".
    """
    sc = stats
    lat = list(sc.latencies)
    values: dict[str, Any] = {
        "rate_hz": rate_hz,
        "ticks": sc.ticks,
        "published": sc.published,
        "skipped_ticks": sc.skipped_ticks,
        "out_of_memory": sc.ooms,
        "inference_latency_s": round(lat[-1], 4) if lat else "",
        "inference_latency_mean_s": round(sum(lat) / len(lat), 4) if lat else "",
        "inference_latency_max_s": round(max(lat), 4) if lat else "",
        "last_error": sc.error.message,
    }
    running_since = sc.running_since
    values["tick_running_s"] = round(now - running_since, 3) if running_since is not None else 0.0
    for key, value in sc.last_timings.items():
        values[f"last_{key}"] = round(value, 5)
    if last_result is not None:
        # How decided the model was, and how much of the prompt the KV cache saved.
        values["last_margin_nats"] = round(last_result.margin, 4)
        values["last_prompt_tokens"] = last_result.prompt_tokens
        values["last_reused_tokens"] = last_result.reused_tokens
        values["last_cache_reuse"] = round(last_result.cache_reuse, 4)
    stalled = _primary_stall(now, primary, episode_active, stall_warn_s)
    values["primary_camera_stalled"] = bool(stalled)
    slow = bool(sc.skipped_ticks and lat and lat[-1] * rate_hz > 1.0)
    values["scoring_slower_than_rate"] = slow
    values["node_state"] = lifecycle_state
    if lifecycle_state != "active":
        # A managed node that is not active scores nothing, by the operator's choice.
        level, message = DiagnosticStatus.OK, f"{lifecycle_state}: not scoring"
    else:
        # Every condition that holds is named, worst first: an operator who sees
        # "ticks skipped" must also learn that the primary camera has stalled.
        conditions: list[tuple[bytes, str]] = []
        if sc.error.recent(now):
            conditions.append((DiagnosticStatus.ERROR, sc.error.message))
        if stalled:
            conditions.append((DiagnosticStatus.WARN, stalled))
        if slow:
            conditions.append((DiagnosticStatus.WARN, f"scoring slower than rate_hz: {sc.skipped_ticks} ticks skipped"))
        if conditions:
            level = max(worst for worst, _ in conditions)
            message = "; ".join(text for _, text in conditions)
        else:
            level, message = DiagnosticStatus.OK, f"{sc.published} scores published"
    return make_status(f"{prefix}: scoring", level, message, values)


def qos_status(prefix: str, counts: dict[str, int], policies: Sequence[str]) -> DiagnosticStatus:
    """Incompatible QoS between this node's endpoints and others: WARN while any was seen.

    Such a peer is never connected (no frames, no instruction, nobody reading
    the scores), so one sighting stays reported.
    """
    values: dict[str, Any] = {f"incompatible {key}": n for key, n in counts.items()}
    values["incompatible_total"] = sum(counts.values())
    if policies:
        level = DiagnosticStatus.WARN
        message = "incompatible QoS (never connected): " + "; ".join(policies)
    else:
        level, message = DiagnosticStatus.OK, "no incompatible QoS seen"
    return make_status(f"{prefix}: qos", level, message, values)
