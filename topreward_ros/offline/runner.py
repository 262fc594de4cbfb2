"""Scoring one episode of any source: the offline twin of the node.

The episode's frames go, in time order, to the same ``EpisodeRunner`` the
node uses (``wants`` -> decode -> ``add``), and its ``tick`` is fired on the
node's timer schedule on the source's time axis, as the node does when it
runs with ``use_sim_time`` during a replay. That gives the live-style causal
values a node would have published. At the episode's end the paper's
offline curve (K growing prefixes, min-max normalised) is computed from the
episode's samples. Nothing here writes a file (``offline.outputs`` does) or
knows where the frames came from (``offline.source``).

Tick rule (shared with the node's timer): ticks fire at
``tick_phase_ns + k * period`` for every such time in the episode's span
``(start_ns, end_ns]``; a tick at T sees the frames logged before T.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from topreward_ros.episode.records import END_REFUSED, EpisodeSettings, EpisodeSummary, TickResult, end_reason_code
from topreward_ros.episode.runner import EpisodeRunner
from topreward_ros.episode.window import AddResult
from topreward_ros.offline.source import EpisodeSpec, SourceFrame
from topreward_ros.scoring.backends.protocol import ScoringBackend
from topreward_ros.scoring.errors import InstructionError
from topreward_ros.scoring.prompt import validate_instruction
from topreward_ros.scoring.stamps import NS_PER_S


@dataclass(frozen=True)
class TimedTick:
    """A tick's result and the source time at which the simulated timer fired."""

    log_time_ns: int
    result: TickResult


@dataclass(frozen=True)
class RunnerOptions:
    """The node's timer and the offline curve.

    tick_rate_hz: rate of the node's scoring timer in source time (the
        node's ``rate_hz``).
    num_prefixes: K, prefixes of the offline curve (paper: 15).
    """

    tick_rate_hz: float = 1.0
    num_prefixes: int = 15

    def __post_init__(self) -> None:
        if not (math.isfinite(self.tick_rate_hz) and self.tick_rate_hz > 0):
            raise ValueError(f"tick_rate_hz must be a finite number > 0, got {self.tick_rate_hz!r}")
        if self.num_prefixes < 2:
            raise ValueError(f"num_prefixes must be >= 2, got {self.num_prefixes!r}")


@dataclass
class EpisodeResult:
    """One episode after the runner: its status, what the model saw, and what went wrong.

    status: "scored", "empty" (no usable frame and none bad), "failed" (no
    usable frame, some bad), "refused" (the instruction cannot be put to
    the model; nothing scored).
    """

    spec: EpisodeSpec
    status: str = "scored"
    message: str = ""
    frame_stamps_ns: list[int] = field(default_factory=list)  # primary camera frames
    frame_log_ns: list[int] = field(default_factory=list)
    ticks: list[TimedTick] = field(default_factory=list)
    bad_frames: list[str] = field(default_factory=list)
    stamps_not_increasing: dict[int, int] = field(default_factory=dict)  # per camera
    last_stamp_ns: dict[int, int] = field(default_factory=dict)  # per camera
    sync_misses: list[int] = field(default_factory=list)  # per camera
    # Primary frames the window kept as samples: stamp -> primary frame index.
    kept_primary: dict[int, int] = field(default_factory=dict)
    samples: list[Any] = field(default_factory=list)
    curve: Any = None
    model_s: float = 0.0
    refused: str | None = None
    #: The episode's verdict, as the node's EpisodeResult message carries it.
    summary: EpisodeSummary | None = None

    @property
    def num_frames(self) -> int:
        return len(self.frame_stamps_ns)


def count_primary_frames(frames: Iterable[SourceFrame]) -> int:
    """Read an episode without scoring it (done by an earlier run): its primary frame count."""
    return sum(1 for f in frames if f.camera == 0 and f.stamp_ns is not None)


class OfflineRunner:
    """Scores episodes one after another with one loaded scorer."""

    def __init__(
        self, scorer: ScoringBackend, settings: EpisodeSettings, options: RunnerOptions, cameras: tuple[str, ...]
    ) -> None:
        self.scorer = scorer
        self.settings = settings
        self.options = options
        self.cameras = cameras
        self.episode_runner = EpisodeRunner(scorer, settings, len(cameras))

    def close(self) -> None:
        self.episode_runner.stop()
        self.episode_runner.discard_ended()

    def refusal(self, instruction: str) -> str | None:
        """Why the model cannot be asked about ``instruction`` (None: it can).

        The same check the node applies to an instruction it receives: the
        loaded scorer's (it knows its tokenizer's control tokens), else the core's.
        """
        check = getattr(self.scorer, "validate_instruction", None) or validate_instruction
        try:
            check(instruction)
        except InstructionError as exc:
            return str(exc)
        return None

    def score(self, spec: EpisodeSpec, frames: Iterable[SourceFrame]) -> EpisodeResult:
        """Feed the episode through the node's code path; the curve if any frame was usable.

        A ``SourceReadError`` from the frames and ``KeyboardInterrupt`` pass
        through (the engine records them); the runner is left stopped.
        """
        result = EpisodeResult(spec, refused=self.refusal(spec.instruction))
        runner = self.episode_runner
        period = int(round(NS_PER_S / self.options.tick_rate_hz))
        # The first timer tick after the episode started.
        next_tick = spec.tick_phase_ns + period * ((spec.start_ns - spec.tick_phase_ns) // period + 1)
        if result.refused is None:
            runner.start(spec.instruction, episode_id=spec.episode_id or f"episode-{spec.index:06d}")
        try:
            for frame in frames:
                while next_tick <= frame.log_ns:
                    self._tick(result, next_tick)
                    next_tick += period
                self._on_frame(result, frame)
            while next_tick <= spec.end_ns:  # the timer runs until the episode's end
                self._tick(result, next_tick)
                next_tick += period
            if result.refused is not None:
                return self._refused(result)
            return self._finish(result)
        finally:
            runner.stop()
            runner.discard_ended()  # judged in _finish, or broken off

    # -- frames and ticks -----------------------------------------------------------------
    def _tick(self, result: EpisodeResult, at_ns: int) -> None:
        runner = self.episode_runner
        if result.refused is not None or not runner.active:
            return
        try:
            tick = runner.tick()
        except InstructionError as exc:  # the model's own tokens, if any beyond <|...|>
            result.refused = str(exc)
            runner.stop()
            tick = None
        self._take_bad_frames(result)
        if tick is not None:
            result.ticks.append(TimedTick(at_ns, tick))
            result.model_s += tick.timings.get("model_s", 0.0)

    def _on_frame(self, result: EpisodeResult, frame: SourceFrame) -> None:
        stamp = frame.stamp_ns
        if stamp is None:
            result.bad_frames.append(f"{frame.label}: {frame.error}")
            return
        camera = frame.camera
        if camera == 0:
            result.frame_stamps_ns.append(stamp)
            result.frame_log_ns.append(frame.log_ns)
        previous = result.last_stamp_ns.get(camera)
        if previous is not None and stamp <= previous:
            # The window never samples such a frame (as the node counts it out
            # of order); count it so zero or repeated stamps are not silent.
            result.stamps_not_increasing[camera] = result.stamps_not_increasing.get(camera, 0) + 1
        else:
            result.last_stamp_ns[camera] = stamp
        runner = self.episode_runner
        if result.refused is not None or not runner.wants(camera, stamp):
            return
        if frame.error is not None or frame.decode is None:
            result.bad_frames.append(f"{frame.label}: {frame.error or 'no picture'}")
            return
        try:
            view, frame_id = frame.decode(self.settings.view_size)
        except ValueError as exc:
            # A frame that cannot be decoded is left out (its slot goes to the
            # next good frame) and reported; an episode with no usable frame fails.
            result.bad_frames.append(f"{frame.label}: {exc}")
            return
        added = runner.add(camera, stamp, view, frame_id)
        if added is AddResult.KEPT and camera == 0:
            # The per-frame table marks exactly the frames the model saw.
            result.kept_primary[stamp] = len(result.frame_stamps_ns) - 1
        if added is AddResult.STALE:
            result.bad_frames.append(
                f"{frame.label} is not newer than the previous frame (clock jump or reordered recording); ignored"
            )

    def _take_bad_frames(self, result: EpisodeResult) -> None:
        """Frames the tick could not convert: left out and reported, like undecodable ones."""
        for bad in self.episode_runner.take_bad_frames():
            result.bad_frames.append(f"{self.cameras[bad.camera]} frame stamped {bad.stamp_ns} ns: {bad.error}")

    # -- the end ----------------------------------------------------------------------------
    def _refused(self, result: EpisodeResult) -> EpisodeResult:
        spec = result.spec
        result.summary = self._refused_summary(result)
        result.status = "refused"
        result.message = (
            f"instruction refused, episode not scored: {result.refused}; {result.num_frames} "
            f"primary camera frames from log time {spec.start_ns} to {spec.end_ns} ns not scored"
        )
        return result

    def _refused_summary(self, result: EpisodeResult) -> EpisodeSummary:
        """A refused episode's verdict: never scored, so no success."""
        spec, stamps = result.spec, result.frame_stamps_ns
        nan = float("nan")
        return EpisodeSummary(
            episode_id=spec.episode_id or f"episode-{spec.index:06d}",
            instruction=spec.instruction,
            end_reason=end_reason_code(spec.end_reason),
            end_detail=spec.end_reason,
            first_stamp_ns=stamps[0] if stamps else None,
            last_stamp_ns=max(stamps) if stamps else None,
            log_prob_true=nan,
            progress=nan,
            success_score=nan,
            success=False,
            threshold=float(self.settings.threshold_for(spec.instruction)),
            frames=len(stamps),
            samples=0,
            ticks=len(result.ticks),
            final_frames_scored=False,
            scored_at_end=False,
            not_scored_reason=f"{END_REFUSED}: {result.refused}",
            model_id=str(getattr(self.scorer, "model_id", "")),
        )

    def _finish(self, result: EpisodeResult) -> EpisodeResult:
        runner = self.episode_runner
        runner.flush()
        self._take_bad_frames(result)
        result.samples = samples = runner.samples
        result.sync_misses = list(runner.window.sync_misses_by_camera)
        # The episode ends here, as the node ends it: its final samples scored once
        # if no tick did, then its verdict.
        t0 = time.perf_counter()
        runner.stop(end_reason_code(result.spec.end_reason), result.spec.end_reason)
        result.summary = runner.finish_ended()[0]
        result.model_s += time.perf_counter() - t0
        self._take_bad_frames(result)
        first_bad = f"; first bad frame: {result.bad_frames[0]}" if result.bad_frames else ""
        if not samples:
            if result.bad_frames:
                result.status = "failed"
                result.message = f"no usable camera frame ({len(result.bad_frames)} bad){first_bad}"
            else:
                result.status = "empty"
                result.message = f"no camera frame before the episode ended ({result.spec.end_reason})"
            return result
        t0 = time.perf_counter()
        result.curve = self.scorer.curve(
            [s.image for s in samples],
            [s.stamp_ns for s in samples],
            result.spec.instruction,
            num_prefixes=self.options.num_prefixes,
            max_frames=self.settings.max_frames,
        )
        result.model_s += time.perf_counter() - t0
        if result.bad_frames:
            result.message = f"{len(result.bad_frames)} bad frames left out{first_bad}"
        return result
