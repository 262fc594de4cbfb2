"""Scoring a recorded bag episode by episode: the offline twin of the node.

The bag's messages are handed, in log-time order, to the same
``EpisodeRunner`` the node uses (``wants`` -> convert -> ``add``), and its
``tick`` is fired on the node's timer schedule in bag time, as the node does
when it runs with ``use_sim_time`` during a replay. That gives the
live-style causal values a node would have published. At each episode's end
the paper's offline curve (K growing prefixes, min-max normalised) is
computed from the episode's sampled frames, and everything is written to the
output directory.

Outputs per episode (``episode_NNNN/``): ``curve.json``, ``frames.parquet``,
``frames.csv``, ``progress.mcap`` and ``plot.png``; a completed episode is
recorded in ``manifest.json`` only after all its files are in place. At the
end, ``frames.parquet`` / ``frames.csv`` at the top hold every completed
episode's rows, and ``topreward_progress.parquet`` the same frames in the
schema LeRobot's RA-BC sample weighting reads (``lerobot.progress``).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from topreward_ros.bag.episodes import EpisodeEvent, EpisodeSplitter, StampError, header_stamp_ns
from topreward_ros.bag.manifest import Manifest, bag_fingerprint, write_json_atomic
from topreward_ros.bag.progress_bag import TimedTick, write_progress_mcap
from topreward_ros.bag.progress_bar import progress_bar
from topreward_ros.bag.base import BagError, BagReadError
from topreward_ros.bag.tables import concat_frame_tables, frame_table, write_csv, write_parquet
from topreward_ros.episode import EpisodeRunner, EpisodeSettings
from topreward_ros.scoring.errors import InstructionError
from topreward_ros.scoring.prompt import validate_instruction
from topreward_ros.window import AddResult

if TYPE_CHECKING:  # the reader (rosbags) is imported when a bag is read, not by the LeRobot scorer
    from topreward_ros.bag.reader import BagMessage, BagReader

NS_PER_S = 1_000_000_000
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
STRING_TYPE = "std_msgs/msg/String"
EPISODE_DIR = "episode_{index:04d}"
EPISODE_FILES = ("curve.json", "frames.parquet", "frames.csv", "progress.mcap", "plot.png")
# Thumbnails on a plot: enough to see the task unfold, few enough to stay legible.
PLOT_THUMBNAILS = 8


class BagSetupError(BagError):
    """The options do not fit the bag (missing topic, wrong type, no instruction)."""


@dataclass(frozen=True)
class BagScoringOptions:
    """What to read from the bag and how to run the node's timer.

    camera_topics: image topics (sensor_msgs/Image or CompressedImage); the
        first is the primary camera that drives the 2 fps schedule and the
        per-frame table.
    instruction_topic: std_msgs/String topic carrying the task instruction.
    instruction: fixed instruction for the whole bag (overrides the topic).
    reset_topic: a message of any type here ends the episode and starts a
        new one with the same instruction.
    tick_rate_hz: rate of the node's scoring timer in bag time (the node's
        ``rate_hz``).
    stamp_jump_restart_s: a primary camera stamp this much older than the
        previous one starts a new episode (the node's parameter of that name).
    stamp_gap_restart_s: a primary camera stamp more than this after the
        episode's previous primary frame starts a new episode (the node's
        parameter of that name): stamps that are zero for a while and then
        real would otherwise put decades between two samples of one video.
    num_prefixes: K, prefixes of the offline curve (paper: 15).
    episode_offset: added to the bag's episode numbers in the tables, to
        match a LeRobot dataset assembled from several bags.
    max_episodes: score at most this many episodes in this run, then stop
        (the rest is done by a later run).
    plot: write a PNG plot per episode.
    video: write progress.mp4 per episode: the node's progress picture, one
        frame per tick (``topreward_ros.progress_video``).
    """

    camera_topics: tuple[str, ...]
    instruction_topic: str | None = "/instruction"
    instruction: str | None = None
    reset_topic: str | None = None
    tick_rate_hz: float = 1.0
    stamp_jump_restart_s: float = 1.0
    stamp_gap_restart_s: float = 60.0
    num_prefixes: int = 15
    episode_offset: int = 0
    max_episodes: int | None = None
    plot: bool = True
    video: bool = False

    def __post_init__(self) -> None:
        if not self.camera_topics:
            raise ValueError("camera_topics must name at least one image topic")
        if len(set(self.camera_topics)) != len(self.camera_topics):
            raise ValueError(f"camera_topics repeat a topic: {list(self.camera_topics)}")
        if self.instruction is not None and not self.instruction.strip():
            raise ValueError(
                "instruction must not be empty (omit it to read the instruction topic)")
        if self.instruction is not None:
            # The core's own check (control-token syntax such as <|im_end|>),
            # so a bad fixed instruction is refused before any model loads.
            validate_instruction(self.instruction)
        if self.instruction is None and not self.instruction_topic:
            raise ValueError("give an instruction topic or a fixed instruction")
        if not (math.isfinite(self.tick_rate_hz) and self.tick_rate_hz > 0):
            raise ValueError(
                f"tick_rate_hz must be a finite number > 0, got {self.tick_rate_hz!r}")
        if not (math.isfinite(self.stamp_jump_restart_s) and self.stamp_jump_restart_s >= 0):
            raise ValueError(
                "stamp_jump_restart_s must be a finite number >= 0, "
                f"got {self.stamp_jump_restart_s!r}"
            )
        if not (math.isfinite(self.stamp_gap_restart_s) and self.stamp_gap_restart_s > 0):
            raise ValueError(
                "stamp_gap_restart_s must be a finite number > 0, "
                f"got {self.stamp_gap_restart_s!r}"
            )
        if self.num_prefixes < 2:
            raise ValueError(f"num_prefixes must be >= 2, got {self.num_prefixes!r}")
        if self.episode_offset < 0:
            raise ValueError(f"episode_offset must be >= 0, got {self.episode_offset!r}")
        if self.max_episodes is not None and self.max_episodes < 1:
            raise ValueError(f"max_episodes must be >= 1, got {self.max_episodes!r}")


@dataclass(frozen=True)
class FinishedEpisode:
    """One episode's scored data, handed to ``BagScorer``'s ``on_episode`` callback.

    ``samples`` are the frames the model saw (views and stamps, after the
    window's thinning), ``curve`` is the offline K-prefix curve, ``ticks``
    the live-style ticks. The callback runs before the episode is entered in
    the manifest, so what it writes is never missing for a completed episode.
    """

    index: int
    instruction: str
    samples: list[Any]
    curve: Any
    ticks: list[TimedTick]
    num_frames: int


@dataclass
class EpisodeOutcome:
    """What happened to one episode of the bag in this run."""

    index: int
    instruction: str
    # "scored", "skipped" (done by an earlier run), "empty", "refused" (the
    # instruction cannot be put to the model), "failed"
    status: str
    message: str = ""
    directory: str = ""
    num_frames: int = 0
    num_samples: int = 0
    num_ticks: int = 0
    # Per camera topic: frames whose header stamp did not increase over that
    # camera's previous frame (never sampled); samples that got a grey view
    # because a secondary camera had no frame within the sync tolerance.
    stamps_not_increasing: dict[str, int] = field(default_factory=dict)
    sync_misses: dict[str, int] = field(default_factory=dict)
    # Log times the episode spans (set for refused episodes: the interval not scored).
    start_log_ns: int | None = None
    end_log_ns: int | None = None


@dataclass
class BagRunReport:
    """Everything a run did, for the CLI summary and for callers."""

    bag: str
    output: str
    episodes: list[EpisodeOutcome] = field(default_factory=list)
    read_error: str | None = None
    interrupted: bool = False
    stopped_early: bool = False
    notes: list[str] = field(default_factory=list)
    frames_outside_episodes: int = 0
    model_s: float = 0.0  # wall time spent inside the model (ticks and offline curves)

    def by_status(self, status: str) -> list[EpisodeOutcome]:
        return [e for e in self.episodes if e.status == status]

    @property
    def nothing_scored(self) -> bool:
        """The run finished without a single scored (or earlier scored) episode."""
        return not (self.interrupted or self.by_status("scored") or self.by_status("skipped"))

    @property
    def ok(self) -> bool:
        return not (self.read_error or self.interrupted or self.by_status("failed")
                    or self.by_status("refused") or self.nothing_scored)

    def summary(self) -> str:
        lines = [f"bag {self.bag} -> {self.output}"]
        for e in self.episodes:
            detail = f" ({e.message})" if e.message else ""
            lines.append(
                f"  episode {e.index:4d} {e.status:8s} {e.num_frames:5d} frames "
                f"{e.num_samples:4d} samples {e.num_ticks:4d} ticks  {e.instruction!r}{detail}"
            )
        counts = ", ".join(
            f"{len(self.by_status(s))} {s}"
            for s in ("scored", "skipped", "empty", "refused", "failed")
        )
        lines.append(f"episodes: {counts}")
        for e in self.episodes:
            for topic, count in e.stamps_not_increasing.items():
                lines.append(
                    f"WARNING: episode {e.index}: {count} of {topic}'s frames have a header stamp "
                    f"that does not increase over the previous frame (a driver publishing zero or "
                    f"repeated stamps?); they were never sampled")
            for topic, count in e.sync_misses.items():
                lines.append(
                    f"note: episode {e.index}: {count} of {e.num_samples} samples have no {topic} "
                    f"frame within the sync tolerance (grey view)")
        if self.nothing_scored:
            lines.append("NOTHING SCORED: no episode of the bag had a usable camera frame "
                         "(see the episodes above)")
        if self.frames_outside_episodes:
            lines.append(
                f"note: {self.frames_outside_episodes} primary camera frames arrived outside any "
                f"episode (before the first instruction or after an empty one) and were ignored"
            )
        lines.extend(f"note: {n}" for n in self.notes)
        if self.read_error:
            lines.append(f"READ ERROR: {self.read_error}")
        if self.interrupted:
            lines.append("INTERRUPTED: completed episodes are kept; re-run to continue")
        if self.stopped_early:
            lines.append("stopped after --max-episodes; re-run to continue")
        return "\n".join(lines)


@dataclass
class _Episode:
    """Bookkeeping of the episode being read."""

    index: int
    instruction: str
    start_log_ns: int
    skip: bool
    frame_stamps_ns: list[int] = field(default_factory=list)
    frame_log_ns: list[int] = field(default_factory=list)
    ticks: list[TimedTick] = field(default_factory=list)
    bad_frames: list[str] = field(default_factory=list)
    last_primary_ns: int | None = None
    end_log_ns: int = 0
    end_reason: str = ""
    refused: str | None = None  # why the instruction cannot be scored
    last_stamp_ns: dict[int, int] = field(default_factory=dict)  # per camera
    stamps_not_increasing: dict[int, int] = field(default_factory=dict)  # per camera
    # Primary frames the window kept as samples: header stamp -> frame index.
    kept_primary: dict[int, int] = field(default_factory=dict)


def check_bag(reader: BagReader, options: BagScoringOptions) -> None:
    """Raise ``BagSetupError`` (saying what to change) if the options do not fit the bag."""
    if reader.message_count == 0 or not reader.topics:
        raise BagSetupError(f"{reader.path}: the bag is empty (no messages)")
    topics = reader.topics
    image_topics = sorted(t for t, i in topics.items() if i.msgtype in IMAGE_TYPES)
    for topic in options.camera_topics:
        if topic not in topics:
            raise BagSetupError(
                f"camera topic {topic} is not in the bag; image topics there: "
                f"{', '.join(image_topics) or 'none'}"
            )
        if topics[topic].msgtype not in IMAGE_TYPES:
            raise BagSetupError(
                f"camera topic {topic} carries {topics[topic].msgtype}, expected "
                f"sensor_msgs/msg/Image or sensor_msgs/msg/CompressedImage"
            )
        if topics[topic].message_count == 0:
            raise BagSetupError(
                f"camera topic {topic} has no messages: nothing to score; image topics with "
                f"messages: {', '.join(t for t in image_topics if topics[t].message_count) or 'none'}"
            )
    if options.instruction is None:
        topic = options.instruction_topic
        assert topic is not None
        strings = sorted(t for t, i in topics.items() if i.msgtype == STRING_TYPE)
        if topic not in topics:
            raise BagSetupError(
                f"missing instruction: the bag has no topic {topic}; std_msgs/String topics "
                f"there: {', '.join(strings) or 'none'}; pass --instruction-topic TOPIC or "
                f"--instruction TEXT"
            )
        if topics[topic].msgtype != STRING_TYPE:
            raise BagSetupError(
                f"instruction topic {topic} carries {topics[topic].msgtype}, "
                f"expected {STRING_TYPE}"
            )
        if topics[topic].message_count == 0:
            raise BagSetupError(
                f"instruction topic {topic} has no messages, so no episode starts; pass "
                f"--instruction TEXT to score the whole bag as one task"
            )
    if options.reset_topic and options.reset_topic not in topics:
        raise BagSetupError(f"reset topic {options.reset_topic} is not in the bag")


class BagScorer:
    """Scores one bag into one output directory (resumable, see the module doc)."""

    def __init__(
        self,
        scorer: Any,
        settings: EpisodeSettings,
        options: BagScoringOptions,
        view_converter: Callable[[Any], Any] | None = None,
        on_episode: Callable[[FinishedEpisode], None] | None = None,
    ) -> None:
        self.scorer = scorer
        self.settings = settings
        self.options = options
        self._to_view = view_converter or self._default_view
        self._on_episode = on_episode

    def _default_view(self, msg: Any) -> Any:
        # Converted when the tick composes its sample, as in the node.
        from topreward_ros.camera_view import CameraView

        return CameraView(msg, self.settings.view_size)

    def settings_record(self) -> dict[str, Any]:
        """Everything that changes the outputs; a resumed run must match it."""
        options = asdict(self.options)
        for key in ("max_episodes", "plot", "video"):
            options.pop(key)
        options["camera_topics"] = list(self.options.camera_topics)
        return {"model": self.scorer.model_id, **asdict(self.settings), **options}

    def open_manifest(self, out_dir: Path, bag_path: Path, force: bool) -> Manifest:
        """The manifest episodes are recorded in (a remote replica relays it to its driver)."""
        return Manifest.open(out_dir, bag_path, bag_fingerprint(bag_path),
                             self.settings_record(), force=force)

    # -- the run ---------------------------------------------------------------------
    def run(self, bag_path: Path, out_dir: Path, force: bool = False,
            progress: bool = True) -> BagRunReport:
        """Score every episode of ``bag_path`` not already done in ``out_dir``.

        Raises ``BagError`` (with a clear message) when the bag cannot be used
        at all; problems after the start are recorded in the report instead,
        with every completed episode kept.
        """
        from topreward_ros.bag.reader import BagReader

        bag_path, out_dir = Path(bag_path), Path(out_dir)
        report = BagRunReport(str(bag_path), str(out_dir))
        with BagReader(bag_path) as reader:
            report.notes.extend(reader.notes)
            check_bag(reader, self.options)
            out_dir.mkdir(parents=True, exist_ok=True)
            manifest = self.open_manifest(out_dir, bag_path, force)
            runner = EpisodeRunner(self.scorer, self.settings, len(self.options.camera_topics))
            try:
                self._walk(reader, runner, manifest, out_dir, report, progress)
            finally:
                runner.stop()
                manifest.save()  # also when nothing was scored: it says what the run found
            self._write_combined(manifest, out_dir)
        return report

    def _walk(self, reader: BagReader, runner: EpisodeRunner, manifest: Manifest,
              out_dir: Path, report: BagRunReport, progress: bool) -> None:
        opts = self.options
        cameras = {topic: i for i, topic in enumerate(opts.camera_topics)}
        topics = set(cameras)
        if opts.instruction is None and opts.instruction_topic:
            topics.add(opts.instruction_topic)
        if opts.reset_topic:
            topics.add(opts.reset_topic)
        total = sum((reader.topics[t].message_count or 0) for t in topics) or None
        bar = progress_bar(total, progress, "bag")
        splitter = EpisodeSplitter(opts.instruction)
        tick_period_ns = int(round(NS_PER_S / opts.tick_rate_hz))
        restart_ns = int(round(opts.stamp_jump_restart_s * NS_PER_S))
        gap_ns = int(round(opts.stamp_gap_restart_s * NS_PER_S))
        next_tick_ns: int | None = None
        episode: _Episode | None = None
        next_index = 0
        scored_this_run = 0
        last_log_ns = 0

        def handle(events: list[EpisodeEvent]) -> None:
            nonlocal episode, next_index, scored_this_run
            for event in events:
                if event.action == "end" and episode is not None:
                    episode.end_log_ns, episode.end_reason = event.log_time_ns, event.reason
                    try:
                        if episode.refused is not None and not episode.skip:
                            outcome = self._refuse(episode, manifest)
                        else:
                            outcome = self._finish(episode, runner, manifest, out_dir, report)
                    except Exception as exc:  # noqa: BLE001 - one episode's failure stops no other
                        outcome = EpisodeOutcome(
                            episode.index, episode.instruction, "failed",
                            f"scoring or writing failed: {type(exc).__name__}: {exc}",
                            num_frames=len(episode.frame_stamps_ns))
                        manifest.record_failure({"episode_index": episode.index,
                                                 "instruction": episode.instruction,
                                                 "error": outcome.message})
                    report.episodes.append(outcome)
                    if outcome.status == "scored":
                        scored_this_run += 1
                    episode = None
                    runner.stop()
                elif event.action == "start":
                    index = next_index
                    next_index += 1
                    skip = manifest.completed(index, event.instruction, event.log_time_ns)
                    if (not skip and opts.max_episodes is not None
                            and scored_this_run >= opts.max_episodes):
                        raise _StopRun()
                    episode = _Episode(index, event.instruction, event.log_time_ns, skip,
                                       refused=None if skip else self._refusal(event.instruction))
                    if not skip and episode.refused is None:
                        runner.start(event.instruction, episode_id=f"bag-episode-{index:04d}")

        try:
            for message in reader.messages(topics):
                bar.update(1)
                t = message.log_time_ns
                last_log_ns = max(last_log_ns, t)
                if next_tick_ns is None:
                    next_tick_ns = t + tick_period_ns
                    handle(splitter.begin(t))
                while next_tick_ns <= t:
                    if episode is not None and not episode.skip and episode.refused is None:
                        try:
                            result = runner.tick()
                        except InstructionError as exc:  # the model's own tokens, if any beyond <|...|>
                            episode.refused = str(exc)
                            runner.stop()
                            result = None
                        self._take_bad_frames(runner, episode)
                        if result is not None:
                            episode.ticks.append(TimedTick(next_tick_ns, result))
                            report.model_s += result.timings.get("model_s", 0.0)
                    next_tick_ns += tick_period_ns
                if message.topic in cameras:
                    camera = cameras[message.topic]
                    if episode is None:
                        if camera == 0:
                            report.frames_outside_episodes += 1
                        continue
                    try:
                        stamp_ns = header_stamp_ns(message.data)
                    except StampError as exc:
                        episode.bad_frames.append(f"{message.topic} at log time {t}: {exc}")
                        continue
                    if camera == 0:
                        previous = episode.last_primary_ns
                        if previous is not None and previous - stamp_ns > restart_ns:
                            handle(splitter.on_stamp_jump(t, (previous - stamp_ns) / NS_PER_S))
                        elif previous is not None and stamp_ns - previous > gap_ns:
                            ended = episode.index
                            handle(splitter.on_stamp_gap(t, (stamp_ns - previous) / NS_PER_S))
                            report.notes.append(
                                f"episode {ended} ended at log time {t}: the primary camera stamp jumped "
                                f"forward by {(stamp_ns - previous) / NS_PER_S:.3f} s "
                                f"(from {previous} to {stamp_ns} ns, more than stamp_gap_restart_s); "
                                f"the frames from there on are a new episode with the same instruction")
                        assert episode is not None
                        episode.last_primary_ns = stamp_ns
                    self._on_frame(message, camera, stamp_ns, episode, runner, reader)
                elif message.topic == opts.reset_topic:
                    handle(splitter.on_reset(t))
                else:
                    handle(splitter.on_instruction(self._text(reader, message), t))
            handle(splitter.finish(last_log_ns))
            if splitter.ignored_empty:
                report.notes.append(f"{splitter.ignored_empty} empty instruction message(s) "
                                    f"ignored (as the node does: the episode goes on)")
            if splitter.ignored_resets:
                report.notes.append(f"{splitter.ignored_resets} reset(s) before any instruction "
                                    f"ignored")
        except _StopRun:
            report.stopped_early = True
        except BagReadError as exc:
            report.read_error = str(exc)
            if episode is not None:
                self._fail(episode, manifest, report,
                           f"bag unreadable before the episode ended: {exc}")
        except KeyboardInterrupt:
            report.interrupted = True
            if episode is not None and not episode.skip:
                report.episodes.append(EpisodeOutcome(
                    episode.index, episode.instruction, "failed",
                    "interrupted before the episode ended",
                    num_frames=len(episode.frame_stamps_ns)))
        finally:
            bar.close()

    def _refusal(self, instruction: str) -> str | None:
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

    def _refuse(self, episode: _Episode, manifest: Manifest) -> EpisodeOutcome:
        """A refused episode's record names the interval left unscored; its frames count nowhere."""
        frames = len(episode.frame_stamps_ns)
        message = (f"instruction refused, episode not scored: {episode.refused}; {frames} primary camera "
                   f"frames from log time {episode.start_log_ns} to {episode.end_log_ns} ns not scored")
        manifest.record_failure({"episode_index": episode.index,
                                 "instruction": episode.instruction, "error": message,
                                 "start_log_ns": episode.start_log_ns, "end_log_ns": episode.end_log_ns,
                                 "end_reason": episode.end_reason, "frames_not_scored": frames})
        return EpisodeOutcome(episode.index, episode.instruction, "refused", message,
                              num_frames=frames, start_log_ns=episode.start_log_ns,
                              end_log_ns=episode.end_log_ns)

    @staticmethod
    def _text(reader: BagReader, message: BagMessage) -> str:
        return str(reader.deserialize(message).data)

    def _on_frame(self, message: BagMessage, camera: int, stamp_ns: int, episode: _Episode,
                  runner: EpisodeRunner, reader: BagReader) -> None:
        if camera == 0:
            episode.frame_stamps_ns.append(stamp_ns)
            episode.frame_log_ns.append(message.log_time_ns)
        previous = episode.last_stamp_ns.get(camera)
        if previous is not None and stamp_ns <= previous:
            # The window never samples such a frame (as the node counts it out
            # of order); count it so zero or repeated stamps are not silent.
            episode.stamps_not_increasing[camera] = episode.stamps_not_increasing.get(camera, 0) + 1
        else:
            episode.last_stamp_ns[camera] = stamp_ns
        if episode.skip or episode.refused is not None or not runner.wants(camera, stamp_ns):
            return
        try:
            msg = reader.deserialize(message)
            view = self._to_view(msg)
        except (BagError, ValueError) as exc:
            # A frame that cannot be decoded is left out (its slot goes to the
            # next good frame) and reported; an episode with no usable frame fails.
            episode.bad_frames.append(
                f"{message.topic} frame stamped {stamp_ns} ns: {exc}"
            )
            return
        result = runner.add(camera, stamp_ns, view, getattr(msg.header, "frame_id", ""))
        if result is AddResult.KEPT and camera == 0:
            episode.kept_primary[stamp_ns] = len(episode.frame_stamps_ns) - 1
        if result is AddResult.STALE:
            episode.bad_frames.append(
                f"{message.topic} frame stamped {stamp_ns} ns is not newer than the previous "
                f"frame (clock jump or reordered recording); ignored"
            )

    def _take_bad_frames(self, runner: EpisodeRunner, episode: _Episode) -> None:
        """Frames the tick could not convert: left out and reported, like undecodable ones."""
        for bad in runner.take_bad_frames():
            episode.bad_frames.append(
                f"{self.options.camera_topics[bad.camera]} frame stamped {bad.stamp_ns} ns: {bad.error}")

    def _fail(self, episode: _Episode, manifest: Manifest, report: BagRunReport,
              message: str) -> None:
        if episode.skip:
            return
        report.episodes.append(EpisodeOutcome(
            episode.index, episode.instruction, "failed", message,
            num_frames=len(episode.frame_stamps_ns)))
        manifest.record_failure({"episode_index": episode.index,
                                 "instruction": episode.instruction, "error": message})

    # -- one episode's outputs ------------------------------------------------------------
    def _finish(self, episode: _Episode, runner: EpisodeRunner, manifest: Manifest,
                out_dir: Path, report: BagRunReport) -> EpisodeOutcome:
        outcome = EpisodeOutcome(episode.index, episode.instruction, "skipped",
                                 num_frames=len(episode.frame_stamps_ns),
                                 directory=EPISODE_DIR.format(index=episode.index))
        if episode.skip:
            outcome.message = "done by an earlier run"
            return outcome
        runner.flush()
        self._take_bad_frames(runner, episode)
        samples = runner.samples
        outcome.num_samples, outcome.num_ticks = len(samples), len(episode.ticks)
        topics = self.options.camera_topics
        outcome.stamps_not_increasing = {topics[c]: n for c, n in
                                         sorted(episode.stamps_not_increasing.items())}
        outcome.sync_misses = {topics[c]: n for c, n in
                               enumerate(runner.window.sync_misses_by_camera) if c > 0 and n}
        sync_misses = {topics[c]: n for c, n in
                       enumerate(runner.window.sync_misses_by_camera) if c > 0}
        first_bad = f"; first bad frame: {episode.bad_frames[0]}" if episode.bad_frames else ""
        if not samples:
            if episode.bad_frames:
                outcome.status = "failed"
                outcome.message = (f"no usable camera frame ({len(episode.bad_frames)} bad)"
                                   f"{first_bad}")
                manifest.record_failure({"episode_index": episode.index,
                                         "instruction": episode.instruction,
                                         "error": outcome.message})
            else:
                outcome.status = "empty"
                outcome.message = (
                    f"no camera frame before the episode ended ({episode.end_reason})")
                manifest.record_empty({"episode_index": episode.index,
                                       "instruction": episode.instruction,
                                       "reason": outcome.message})
            return outcome
        t0 = time.perf_counter()
        curve = self.scorer.curve([s.image for s in samples], [s.stamp_ns for s in samples],
                                  episode.instruction, num_prefixes=self.options.num_prefixes)
        report.model_s += time.perf_counter() - t0
        ep_dir = out_dir / outcome.directory
        ep_dir.mkdir(parents=True, exist_ok=True)
        columns = self._frame_columns(episode, samples, curve)
        table = frame_table(columns)
        files = []
        write_parquet(ep_dir / "frames.parquet", table)
        write_csv(ep_dir / "frames.csv", table)
        write_progress_mcap(ep_dir / "progress.mcap", episode.ticks,
                            self.settings.success_consecutive)
        files += ["frames.parquet", "frames.csv", "progress.mcap"]
        if self.options.plot:
            self._plot(ep_dir / "plot.png", curve, samples,
                       f"episode {episode.index}: {episode.instruction}")
            files.append("plot.png")
        if self.options.video:
            from topreward_ros.progress_video import VIDEO_FILE, tick_pictures, write_video

            pictures = tick_pictures(samples, [t.result for t in episode.ticks], self.settings.view_size)
            if write_video(ep_dir / VIDEO_FILE, pictures, self.options.tick_rate_hz):
                files.append(VIDEO_FILE)
        write_json_atomic(ep_dir / "curve.json",
                          self._curve_record(episode, samples, curve, columns, sync_misses))
        files.append("curve.json")
        if self._on_episode is not None:
            self._on_episode(FinishedEpisode(episode.index, episode.instruction, samples, curve,
                                             list(episode.ticks), len(episode.frame_stamps_ns)))
        outcome.status = "scored"
        if episode.bad_frames:
            outcome.message = f"{len(episode.bad_frames)} bad frames left out{first_bad}"
        manifest.record_episode(episode.index, {
            "instruction": episode.instruction,
            "start_log_ns": episode.start_log_ns,
            "end_log_ns": episode.end_log_ns,
            "end_reason": episode.end_reason,
            "num_frames": outcome.num_frames,
            "num_samples": outcome.num_samples,
            "num_ticks": outcome.num_ticks,
            "stamps_not_increasing": outcome.stamps_not_increasing,
            "sync_misses": sync_misses,
            "files": [f"{outcome.directory}/{f}" for f in files],
        })
        return outcome

    def _frame_columns(self, episode: _Episode, samples: list[Any], curve: Any) -> dict[str, Any]:
        from topreward_ros.scoring.curve import dense_rewards

        stamps = np.asarray(episode.frame_stamps_ns, dtype=np.int64)
        n = len(stamps)
        sample_stamps = np.asarray([s.stamp_ns for s in samples], dtype=np.int64)
        # The offline curve's time axis: each prefix ends at its last sampled frame.
        prefix_end = np.asarray(curve.stamps_ns, dtype=np.int64)
        normalized = np.asarray(curve.normalized, dtype=np.float64)
        rel = (stamps - stamps[0]).astype(np.float64)
        progress = np.interp(rel, (prefix_end - stamps[0]).astype(np.float64), normalized)
        # Eq. 3 weights per sampled frame, then carried to every camera frame by stamp.
        sample_reward = dense_rewards(normalized, curve.prefix_lengths, len(samples))
        reward = np.interp(rel, (sample_stamps - stamps[0]).astype(np.float64), sample_reward)
        live_progress = np.full(n, np.nan)
        live_lp = np.full(n, np.nan)
        live_success = np.zeros(n, dtype=bool)
        for timed in episode.ticks:  # ticks are in time order; later ones overwrite
            r = timed.result
            covered = stamps >= r.stamp_ns
            live_progress[covered] = r.progress
            live_lp[covered] = r.log_prob_true
            live_success[covered] = r.success
        episode_success = bool(curve.success_score > self.settings.success_threshold)
        # Exactly the rows of the frames that became samples (one row per
        # sample), not every frame that shares a sample's stamp.
        sampled = np.zeros(n, dtype=bool)
        sampled[[episode.kept_primary[int(s)] for s in sample_stamps]] = True
        return {
            "episode_index": np.full(n, episode.index + self.options.episode_offset),
            "frame_index": np.arange(n),
            "timestamp": rel / NS_PER_S,
            "stamp_ns": stamps,
            "log_time_ns": np.asarray(episode.frame_log_ns, dtype=np.int64),
            "sampled": sampled,
            "progress": progress,
            "reward": reward,
            "success": live_success,
            "live_progress": live_progress,
            "live_log_prob_true": live_lp,
            "episode_success": np.full(n, episode_success),
        }

    def _curve_record(self, episode: _Episode, samples: list[Any], curve: Any,
                      columns: dict[str, Any], sync_misses: dict[str, int]) -> dict[str, Any]:
        topics = self.options.camera_topics
        return {
            "episode_index": episode.index + self.options.episode_offset,
            "bag_episode": episode.index,
            "instruction": episode.instruction,
            "start_log_ns": episode.start_log_ns,
            "end_log_ns": episode.end_log_ns,
            "end_reason": episode.end_reason,
            "num_frames": len(episode.frame_stamps_ns),
            "sample_stamps_ns": [int(s.stamp_ns) for s in samples],
            "offline": curve.to_dict(),
            "episode_success": bool(columns["episode_success"][0]) if len(samples) else False,
            "success_threshold": self.settings.success_threshold,
            "live": [
                {
                    "tick_log_ns": t.log_time_ns,
                    "stamp_ns": t.result.stamp_ns,
                    "frames_used": t.result.frames_used,
                    "log_prob_true": t.result.log_prob_true,
                    "log_prob_false": t.result.log_prob_false,
                    "progress": t.result.progress,
                    "success_score": t.result.success_score,
                    "success": t.result.success,
                    "success_fired": t.result.success_fired,
                }
                for t in episode.ticks
            ],
            "bad_frames": episode.bad_frames,
            "stamps_not_increasing": {topic: episode.stamps_not_increasing.get(c, 0)
                                      for c, topic in enumerate(topics)},
            "sync_misses": sync_misses,
            "settings": self.settings_record(),
        }

    def _plot(self, path: Path, curve: Any, samples: list[Any], title: str) -> None:
        from topreward_ros.bag.manifest import write_atomic
        from topreward_ros.plotting import plot_curve

        picks = np.unique(np.linspace(0, len(samples) - 1, min(PLOT_THUMBNAILS, len(samples)))
                          .round().astype(int))
        thumbnails = [samples[i].image for i in picks]
        stamps = [samples[i].stamp_ns for i in picks]
        tmp = path.with_name(f".{path.stem}.tmp.png")
        try:
            plot_curve(tmp, curve, thumbnails=thumbnails, thumbnail_stamps_ns=stamps,
                       title=f"{title}  [{curve.model_id}]")
            write_atomic(path, lambda f: f.write(tmp.read_bytes()))
        finally:
            tmp.unlink(missing_ok=True)

    def _write_combined(self, manifest: Manifest, out_dir: Path) -> None:
        write_combined_tables(manifest, out_dir)


def write_combined_tables(manifest: Manifest, out_dir: Path) -> None:
    """The combined outputs of ``out_dir``: every completed episode's rows.

    ``frames.parquet`` / ``frames.csv``, and the LeRobot RA-BC progress
    parquet (``index`` counts the rows across episodes), stamped with the
    model the manifest's settings name.
    """
    from topreward_ros.lerobot.progress import PROGRESS_FILE, write_progress_parquet

    paths = [out_dir / EPISODE_DIR.format(index=i) / "frames.parquet"
             for i in sorted(manifest.episodes)]
    table = concat_frame_tables([p for p in paths if p.is_file()])
    write_parquet(out_dir / "frames.parquet", table)
    write_csv(out_dir / "frames.csv", table)
    write_progress_parquet(out_dir / PROGRESS_FILE, table, str(manifest.settings.get("model", "")))


class _StopRun(Exception):
    """--max-episodes reached."""
