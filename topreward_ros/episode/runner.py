"""One episode of live scoring: the tick that the node and the offline runner share.

The node calls ``EpisodeRunner`` from ROS callbacks and a timer; the offline
runner (``offline.runner``) calls the very same methods while it walks an
episode of any source (bag, dataset, video) in time order and fires the
timer on the source's time axis. Keeping window handling, incremental
scoring, causal progress and success detection in this one class is what
guarantees that an offline-scored recording carries the numbers the live
node would have published.

Threading: image callbacks (``wants``/``add``) and the scoring tick may run on
different executor threads. A lock guards the window and the episode identity
and is never held while the model runs, so camera callbacks never wait for
inference. Kept frames may arrive unconverted (``CameraView``): the tick
converts them before it takes the lock, so callbacks do not wait for image
decoding either. A new episode, model or window started during a tick makes
that tick's result void: it is never returned, so never published, and it
counts towards no episode's progress or success.

Every episode ends with a verdict (``EpisodeSummary``), whatever ends it: a
new instruction, a reset, a refusal, a stamp cut, the end of a recording or
of the node. An episode that ends is set aside with its window and success
evidence; ``finish_ended`` (on the scoring thread, under the tick lock)
scores its final samples once when no tick scored them (ticks that fell
behind, frames after the last tick) and returns its summary. When that
score cannot be made (no model, out of memory) the summary says why.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from topreward_ros.episode.records import END_NEW_INSTRUCTION, END_SHUTDOWN, EpisodeSettings, EpisodeSummary, TickResult
from topreward_ros.episode.window import AddResult, BadFrame, EpisodeWindow, Sample, ViewSource
from topreward_ros.scoring.progress import CausalProgress, SuccessDetector
from topreward_ros.scoring.stamps import NS_PER_S

if TYPE_CHECKING:
    from topreward_ros.scoring.backends.protocol import EpisodeScoring, ScoringBackend


@dataclass
class _EpisodeTally:
    """What an episode counted while it ran (guarded by the runner's lock)."""

    frames: int = 0
    first_stamp_ns: int | None = None
    last_stamp_ns: int | None = None
    ticks: int = 0
    scored_stamps: tuple[int, ...] = ()
    log_prob_true: float = float("nan")
    progress: float = float("nan")
    model_id: str = ""

    def frame(self, camera: int, stamp_ns: int) -> None:
        if camera != 0:
            return
        self.frames += 1
        if self.first_stamp_ns is None:
            self.first_stamp_ns = stamp_ns
        if self.last_stamp_ns is None or stamp_ns > self.last_stamp_ns:
            self.last_stamp_ns = stamp_ns


@dataclass
class _EndedEpisode:
    """An episode set aside when it ended, until ``finish_ended`` judges it."""

    episode_id: str
    instruction: str
    end_reason: str
    end_detail: str
    window: EpisodeWindow
    session: EpisodeScoring | None
    unfed: list[Sample]
    session_generation: int
    tick_in_flight: bool
    scorer: ScoringBackend | None
    progress: CausalProgress
    success: SuccessDetector
    tally: _EpisodeTally
    threshold: float


class EpisodeRunner:
    """Window + incremental VLM session + causal progress + success, per episode."""

    _counter = itertools.count(1)

    def __init__(
        self, scorer: ScoringBackend | None, settings: EpisodeSettings | None = None, num_cameras: int = 1
    ) -> None:
        # ``scorer`` may be None while a model is still loading: frames are
        # collected and ticks return None until ``set_scorer`` is called.
        self._scorer = scorer
        self.settings = settings or EpisodeSettings()
        self.num_cameras = num_cameras
        self._lock = threading.Lock()
        self._tick_lock = threading.Lock()
        self._window = self._new_window()
        self._episode_id: str | None = None
        self._instruction: str | None = None
        self._session: EpisodeScoring | None = None
        self._session_generation = -1
        self._progress: CausalProgress | None = None
        self._success: SuccessDetector | None = None
        # Samples composed since the session last saw new ones, and frames found unusable.
        self._unfed: list[Sample] = []
        self._bad_frames: list[BadFrame] = []
        self._tally = _EpisodeTally()
        self._ended: list[_EndedEpisode] = []
        self._rebuilds = 0

    def _new_window(self) -> EpisodeWindow:
        s = self.settings
        return EpisodeWindow(
            num_cameras=self.num_cameras,
            sample_fps=s.sample_fps,
            max_frames=s.max_frames,
            sync_tolerance_ns=int(round(s.sync_tolerance_s * NS_PER_S)),
        )

    @property
    def scorer(self) -> ScoringBackend | None:
        return self._scorer

    def set_scorer(self, scorer: ScoringBackend | None) -> None:
        """Use another model from the next tick on.

        The episode's frames are kept; its incremental session is dropped, so
        the next tick rescores them with the new model. Scores of different
        models are not comparable: callers usually start a new episode too.
        """
        with self._lock:
            self._scorer = scorer
            self._session = None
            self._session_generation = -1

    # -- episode identity ------------------------------------------------------
    @property
    def episode_id(self) -> str | None:
        return self._episode_id

    @property
    def instruction(self) -> str | None:
        return self._instruction

    @property
    def active(self) -> bool:
        return self._episode_id is not None

    @property
    def cache_rebuilds(self) -> int:
        """Ticks of this episode that recomputed its whole prefix instead of extending the cache.

        Expected once per thinning of the window (its history changes), and
        never while the window fills: frames are sized for ``max_frames``
        samples from the first tick on. A new model or new window settings
        also start over, but are not counted.
        """
        return self._rebuilds

    @property
    def window(self) -> EpisodeWindow:
        """The live window (read it under no assumptions of stability)."""
        return self._window

    @property
    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._window.samples)

    def sample_image(self, episode_id: str, stamp_ns: int) -> np.ndarray | None:
        """The composed image of the episode's sample at ``stamp_ns`` (None if gone or another episode)."""
        with self._lock:
            if episode_id != self._episode_id:
                return None
            for sample in reversed(self._window.samples):
                if sample.stamp_ns == stamp_ns:
                    return sample.image
        return None

    def start(
        self,
        instruction: str,
        episode_id: str | None = None,
        end_reason: str = END_NEW_INSTRUCTION,
        end_detail: str = "",
    ) -> str:
        """Begin a new episode for ``instruction``; returns its id.

        The running episode, if any, ends for ``end_reason`` (a code of
        ``END_REASONS``; ``end_detail`` the text) and waits for ``finish_ended``.
        """
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError("instruction is empty: a task instruction is required to score")
        if episode_id is None:
            episode_id = f"{next(self._counter):04d}-{uuid.uuid4().hex[:8]}"
        with self._lock:
            self._set_aside(end_reason, end_detail)
            self._episode_id = episode_id
            self._instruction = instruction
            self._session = None
            self._session_generation = -1
            self._rebuilds = 0
            self._progress = CausalProgress(self.settings.threshold_for(instruction))
            self._success = self._new_success_detector(instruction)
        return episode_id

    def _new_success_detector(self, instruction: str) -> SuccessDetector:
        return SuccessDetector(
            self.settings.threshold_for(instruction),
            window=self.settings.success_window,
            consecutive=self.settings.success_consecutive,
        )

    def stop(self, end_reason: str = END_SHUTDOWN, end_detail: str = "") -> None:
        """End the episode without starting another (frames are then ignored).

        The episode, if one runs, waits for ``finish_ended`` like one ended by ``start``.
        """
        with self._lock:
            self._set_aside(end_reason, end_detail)
            self._episode_id = None
            self._instruction = None

    def _set_aside(self, end_reason: str, end_detail: str) -> None:
        """Move the running episode to the ended ones; a fresh window (callers hold _lock)."""
        if self._episode_id is not None and self._progress is not None and self._success is not None:
            self._ended.append(
                _EndedEpisode(
                    episode_id=self._episode_id,
                    instruction=self._instruction or "",
                    end_reason=end_reason,
                    end_detail=end_detail,
                    window=self._window,
                    session=self._session,
                    unfed=self._unfed,
                    session_generation=self._session_generation,
                    # A tick running now may be extending this session: never reuse it then.
                    tick_in_flight=self._tick_lock.locked(),
                    scorer=self._scorer,
                    progress=self._progress,
                    success=self._success,
                    tally=self._tally,
                    threshold=self._success.threshold,
                )
            )
        self._window = self._new_window()
        self._unfed = []
        self._session = None
        self._session_generation = -1
        self._tally = _EpisodeTally()

    @property
    def ended_pending(self) -> int:
        """Ended episodes waiting for ``finish_ended``."""
        with self._lock:
            return len(self._ended)

    def add_to_ended(
        self, episode_id: str, camera: int, stamp_ns: int, view: ViewSource, frame_id: str = ""
    ) -> AddResult:
        """A late frame of an episode that has ended but is not finished yet.

        A frame published before the instruction that ended its episode,
        handled after it, still belongs to that episode, as long as its
        verdict is not made.
        """
        with self._lock:
            for ended in self._ended:
                if ended.episode_id == episode_id:
                    ended.tally.frame(camera, stamp_ns)
                    if not ended.window.wants(camera, stamp_ns):
                        return AddResult.SKIPPED
                    return ended.window.add(camera, stamp_ns, view, frame_id)
        return AddResult.OTHER_EPISODE

    def discard_ended(self) -> int:
        """Drop the ended episodes without a verdict (an offline run that broke off); how many."""
        with self._lock:
            count, self._ended = len(self._ended), []
        return count

    def finish_ended(self, unscored: str | None = None) -> list[EpisodeSummary]:
        """Judge the ended episodes, oldest first: final samples scored once, then the verdict.

        Runs the model (outside the window lock, under the tick lock, so
        never beside a tick). A score that cannot be made leaves the
        verdict of the ticks, with the reason in the summary. ``unscored``:
        make no score (a tick may still be running, and the caller cannot
        wait for it); the text is the reason given where one was due.
        """
        if unscored is not None:
            return self._finish_all(unscored)
        with self._tick_lock:
            return self._finish_all(None)

    def _finish_all(self, unscored: str | None) -> list[EpisodeSummary]:
        summaries = []
        while True:
            with self._lock:
                if not self._ended:
                    return summaries
                ended = self._ended.pop(0)
            summaries.append(self._finish(ended, unscored))

    def _finish(self, ended: _EndedEpisode, unscored: str | None = None) -> EpisodeSummary:
        window = ended.window
        for view in window.lazy_views():
            try:
                view.view()
            except ValueError:
                pass  # listed in bad_frames when the sample is composed
        with self._lock:
            new = window.flush()
            self._bad_frames.extend(window.take_bad_frames())
            samples = list(window.samples)
        tally = ended.tally
        stamps = tuple(s.stamp_ns for s in samples)
        samples_seen = len(samples)
        scored_at_end, reason = False, ""
        if not samples and tally.scored_stamps:
            # A settings change restarted the window and no sample came since: the
            # samples the model last saw were scored, nothing is left unscored.
            samples_seen = len(tally.scored_stamps)
        elif not samples:
            reason = "no usable camera frame"
        elif stamps != tally.scored_stamps:
            if unscored is not None:
                reason = unscored
            elif ended.scorer is None:
                reason = "no model loaded"
            else:
                reuse = (
                    ended.session is not None
                    and not ended.tick_in_flight
                    and ended.session_generation == window.generation
                )
                try:
                    if reuse:
                        session, feed = ended.session, [*ended.unfed, *new]
                    else:
                        session, feed = ended.scorer.start_episode(ended.instruction, window.max_frames), samples
                    session.extend([s.image for s in feed], [s.stamp_ns for s in feed])
                    score = session.score()
                except Exception as exc:  # out of memory, a refused instruction, ...
                    reason = f"final frames not scored: {type(exc).__name__}: {exc}"
                else:
                    scored_at_end = True
                    tally.log_prob_true = score.log_prob_true
                    tally.progress = ended.progress.update(score.log_prob_true)
                    ended.success.update(score.log_prob_true)
                    tally.scored_stamps = stamps
                    tally.model_id = ended.scorer.model_id
        success_score = ended.success.success_score
        model_id = tally.model_id or (ended.scorer.model_id if ended.scorer is not None else "")
        return EpisodeSummary(
            episode_id=ended.episode_id,
            instruction=ended.instruction,
            end_reason=ended.end_reason,
            end_detail=ended.end_detail,
            first_stamp_ns=tally.first_stamp_ns,
            last_stamp_ns=tally.last_stamp_ns,
            log_prob_true=tally.log_prob_true,
            progress=tally.progress,
            success_score=float("nan") if success_score is None else float(success_score),
            success=bool(ended.success.fired),
            threshold=float(ended.success.threshold),
            frames=tally.frames,
            samples=samples_seen,
            ticks=tally.ticks,
            final_frames_scored=not reason,
            scored_at_end=scored_at_end,
            not_scored_reason=reason,
            model_id=model_id,
        )

    def update_settings(self, settings: EpisodeSettings) -> None:
        """Apply new settings at run time, to the episode that is running.

        The episode goes on (same id) and a success it has declared stays
        declared: no change un-latches it or fires it again. A new threshold
        or consecutive count applies from the next score, with the streak
        kept; a new success window keeps the latest scores and restarts the
        streak; sampling and window changes start an empty window (the scorer
        then rebuilds its session from the frames that arrive) and restart
        the success evidence, since scores of the old frames and of the new
        ones are not averaged together. Progress keeps its anchor (the
        episode's first score) and moves its 1 to the new threshold.
        """
        with self._lock:
            old, self.settings = self.settings, settings
            window_keys = ("sample_fps", "max_frames", "sync_tolerance_s", "view_size")
            restart = any(getattr(old, k) != getattr(settings, k) for k in window_keys)
            if restart:
                self._window = self._new_window()
                self._unfed = []
                self._session = None
                self._session_generation = -1
            threshold = settings.threshold_for(self._instruction)
            if self._progress is not None:
                self._progress.threshold = threshold
            if self._success is not None:
                self._success.reconfigure(
                    threshold=threshold, window=settings.success_window, consecutive=settings.success_consecutive
                )
                if restart:
                    self._success.restart_evidence()

    # -- frames ------------------------------------------------------------------
    def wants(self, camera: int, stamp_ns: int) -> bool:
        """Cheap check before converting an image: is this frame needed?"""
        with self._lock:
            if self._episode_id is None:
                return False
            self._tally.frame(camera, stamp_ns)
            return self._window.wants(camera, stamp_ns)

    def add(
        self, camera: int, stamp_ns: int, view: ViewSource, frame_id: str = "", episode_id: str | None = None
    ) -> AddResult:
        """Store a wanted frame: its view, or a lazy view the tick converts (``CameraView``).

        With ``episode_id`` the frame is stored only if that episode is still
        the running one (else ``OTHER_EPISODE``): a caller that decided, from
        the episode it saw, that the frame belongs to it cannot put the frame
        into an episode that began in the meantime on another thread.
        """
        with self._lock:
            if self._episode_id is None:
                return AddResult.SKIPPED
            if episode_id is not None and episode_id != self._episode_id:
                return AddResult.OTHER_EPISODE
            return self._window.add(camera, stamp_ns, view, frame_id)

    def flush(self) -> None:
        """Complete pending samples with what arrived (end of a recording)."""
        with self._tick_lock:
            self._compose(final=True)

    def compose(self) -> None:
        """Convert and compose the complete samples without scoring them.

        For the time no model is ready: kept frames are then held as small
        views, not as camera images, however long the model takes to load.
        The next tick scores the composed samples.
        """
        with self._tick_lock:
            self._compose()

    def take_bad_frames(self) -> list[BadFrame]:
        """Kept frames found unusable when they were converted, since the last call.

        Each was left out of the episode (a primary frame with its sample, a
        secondary one replaced by the grey missing view).
        """
        with self._lock:
            bad, self._bad_frames = self._bad_frames, []
        return bad

    def _convert_pending(self) -> None:
        """Convert the lazy views of pending samples, outside the lock (callers hold _tick_lock)."""
        with self._lock:
            views = self._window.lazy_views()
        for view in views:
            try:
                view.view()
            except ValueError:
                pass  # the window lists it in bad_frames when it composes the sample

    def _compose(self, final: bool = False) -> None:
        """Complete samples into the window (callers hold _tick_lock)."""
        self._convert_pending()
        with self._lock:
            if self._episode_id is not None:
                self._unfed.extend(self._window.flush() if final else self._window.finalize())
            if self._session is None or self._window.generation != self._session_generation:
                self._unfed = []  # the next tick rebuilds the session from every sample
            self._bad_frames.extend(self._window.take_bad_frames())

    # -- scoring -------------------------------------------------------------------
    def tick(self) -> TickResult | None:
        """Score the episode so far if new frames arrived; None otherwise.

        Runs the model outside the window lock. Raises what the model raises
        (out of memory, ...) after discarding the session, so the next tick
        rebuilds it from the window instead of scoring a corrupt cache.
        """
        with self._tick_lock:
            t_start = time.perf_counter()
            self._compose()
            t_converted = time.perf_counter()
            with self._lock:
                episode_id = self._episode_id
                scorer = self._scorer
                if episode_id is None or scorer is None:
                    return None
                instruction = self._instruction
                window = self._window
                new, self._unfed = self._unfed, []
                samples = list(self._window.samples)
                generation = self._window.generation
                session = self._session
                rebuild = session is None or generation != self._session_generation
                if not samples or (not new and not rebuild):
                    return None
                progress, success = self._progress, self._success
                # A session of this episode exists and the window's history changed (thinning).
                rethinned = session is not None and rebuild
                max_frames = self.settings.max_frames
            t_assembled = time.perf_counter()
            try:
                if rebuild:
                    session = scorer.start_episode(instruction, max_frames)
                    feed = samples
                else:
                    feed = new
                before = session.cache_rebuilds
                session.extend([s.image for s in feed], [s.stamp_ns for s in feed])
                score = session.score()
            except BaseException:
                with self._lock:
                    if self._episode_id == episode_id:
                        self._session = None
                raise
            t_scored = time.perf_counter()
            with self._lock:
                if self._episode_id != episode_id or self._scorer is not scorer or self._window is not window:
                    # A new episode, model or window came while the model ran:
                    # the score belongs to none of them, so it is dropped.
                    return None
                self._session = session
                self._session_generation = generation
                self._rebuilds += int(rethinned) + session.cache_rebuilds - before
                value = progress.update(score.log_prob_true)
                verdict = success.update(score.log_prob_true)
                tally = self._tally
                tally.ticks += 1
                tally.scored_stamps = tuple(s.stamp_ns for s in samples)
                tally.log_prob_true, tally.progress = score.log_prob_true, value
                tally.model_id = scorer.model_id
            newest = samples[-1]
            return TickResult(
                episode_id=episode_id,
                instruction=instruction,
                log_prob_true=score.log_prob_true,
                log_prob_false=score.log_prob_false,
                stamp_ns=newest.stamp_ns,
                frame_id=newest.frame_id,
                frame_stamps_ns=tuple(s.stamp_ns for s in samples),
                progress=value,
                success_score=verdict.score,
                success_threshold=success.threshold,
                success=verdict.success,
                success_fired=verdict.fired,
                latency_s=t_scored - t_start,
                model_id=scorer.model_id,
                prompt_tokens=session.last_prompt_tokens,
                reused_tokens=session.last_reused_tokens,
                timings={
                    "convert_s": t_converted - t_start,
                    "assembly_s": t_assembled - t_converted,
                    "model_s": t_scored - t_assembled,
                },
            )
