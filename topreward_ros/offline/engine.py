"""Running sources through the runner into their outputs: the in-process engine.

An engine decides where episodes are scored; everything else is shared:

* ``OfflineSettings``: what changes the values (the node's episode settings,
  the timer and curve options) and which optional files to write;
* ``SourceOutput``: one source's output directory on the driver: its
  manifest (resume, settings check), the outcome of every episode, and the
  combined tables at the end. Only the driver writes there;
* ``score_episode``: the runner and the episode writer for one episode,
  the unit of work an engine hands out.

``run_local`` walks a source in this process with one loaded model:
episodes done by an earlier run are read past without decoding, the others
are scored and written, each recorded in the manifest only after its files
are in place. ``topreward_ros.scale`` hands the same unit to Ray replicas,
one episode at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from topreward_ros.episode.records import EpisodeSettings
from topreward_ros.offline.manifest import Manifest
from topreward_ros.offline.outputs import (
    EpisodeWriter,
    OutputOptions,
    episode_dir,
    unscored_record,
    write_combined_tables,
)
from topreward_ros.offline.report import EpisodeOutcome, RunReport
from topreward_ros.offline.runner import EpisodeResult, OfflineRunner, RunnerOptions, count_primary_frames
from topreward_ros.offline.source import EpisodeSource, EpisodeSpec, SourceFrame, SourceNotes, SourceReadError
from topreward_ros.rendering.progress_bar import progress_bar
from topreward_ros.scoring.backends.protocol import ScoringBackend


@dataclass(frozen=True)
class OfflineSettings:
    """Everything an offline run needs besides the model and the source."""

    episode: EpisodeSettings = field(default_factory=EpisodeSettings)
    runner: RunnerOptions = field(default_factory=RunnerOptions)
    outputs: OutputOptions = field(default_factory=OutputOptions)
    max_episodes: int | None = None  # score at most this many now; a re-run continues

    def __post_init__(self) -> None:
        if self.max_episodes is not None and self.max_episodes < 1:
            raise ValueError(f"max_episodes must be >= 1, got {self.max_episodes!r}")

    def record(self, model_id: str, source: EpisodeSource) -> dict[str, Any]:
        """Everything that changes the outputs; a resumed run must match it.

        Per-task thresholds appear as a map, and only when there are some
        (outputs scored before they existed still resume).
        """
        episode = asdict(self.episode)
        tasks = episode.pop("task_thresholds")
        if tasks:
            episode["task_thresholds"] = {instruction: value for instruction, value in tasks}
        return {"model": model_id, **episode, **asdict(self.runner), **source.settings_record()}

    def episode_runner(self, scorer: ScoringBackend, cameras: tuple[str, ...]) -> OfflineRunner:
        """The runner every engine scores with (in this process or on a replica)."""
        return OfflineRunner(scorer, self.episode, self.runner, cameras)

    def episode_writer(self, root: Path, record: dict[str, Any], cameras: tuple[str, ...]) -> EpisodeWriter:
        """The writer of one episode's files under ``root`` (the output, or a replica's scratch)."""
        return EpisodeWriter(root, self.episode, self.outputs, record, cameras, self.runner.tick_rate_hz)


#: Work done where the model is, after an episode is scored (e.g. the
#: evaluation's static control curve): (scorer, result) -> a picklable value.
EpisodeExtra = Callable[[ScoringBackend, EpisodeResult], Any]
#: Called on the driver with the episode's spec and the extra value, after
#: its files are written and before the manifest records it.
EpisodeHook = Callable[[EpisodeSpec, Any], None]


@dataclass
class ScoredFiles:
    """One scored episode as an engine hands it back: manifest entry, files, extra value."""

    spec: EpisodeSpec
    status: str
    message: str
    entry: dict[str, Any] | None = None
    unscored: tuple[str, dict[str, Any]] | None = None
    num_frames: int = 0
    extra: Any = None
    model_s: float = 0.0


def score_episode(
    runner: OfflineRunner,
    writer: EpisodeWriter,
    spec: EpisodeSpec,
    frames: Iterable[SourceFrame],
    extra: EpisodeExtra | None = None,
) -> ScoredFiles:
    """Score one episode and write its files under ``writer.root``."""
    result = runner.score(spec, frames)
    done = ScoredFiles(spec, result.status, result.message, num_frames=result.num_frames, model_s=result.model_s)
    if result.status != "scored":
        done.unscored = unscored_record(result)
        return done
    done.entry = writer.write(result)
    if extra is not None:
        done.extra = extra(runner.scorer, result)
    return done


class SourceOutput:
    """One source's output directory, as the driver keeps it (see the module doc)."""

    def __init__(
        self, source: EpisodeSource, out_dir: Path, model_id: str, settings: OfflineSettings, force: bool = False
    ) -> None:
        self.source = source
        self.out_dir = Path(out_dir)
        self.model_id = model_id
        self.settings = settings
        self.record = settings.record(model_id, source)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.manifest = Manifest.open(self.out_dir, source.path, source.fingerprint(), self.record, force=force)
        self.report = RunReport(str(source.path), str(self.out_dir), kind=source.kind)
        self.scored_now = 0

    def done(self, spec: EpisodeSpec) -> bool:
        """Recorded as done, with the same instruction and start and all its files present."""
        return self.manifest.completed(spec.index, spec.instruction, spec.start_ns)

    def budget_left(self) -> bool:
        limit = self.settings.max_episodes
        return limit is None or self.scored_now < limit

    def skipped(self, spec: EpisodeSpec, num_frames: int) -> None:
        self.report.episodes.append(
            EpisodeOutcome(
                spec.index,
                spec.instruction,
                "skipped",
                "done by an earlier run",
                directory=episode_dir(spec.index),
                num_frames=num_frames,
            )
        )

    def failed(self, spec: EpisodeSpec, message: str, num_frames: int = 0, record: bool = True) -> None:
        self.report.episodes.append(
            EpisodeOutcome(spec.index, spec.instruction, "failed", message, num_frames=num_frames)
        )
        if record:
            self.manifest.record_failure(
                {"episode_index": spec.index, "instruction": spec.instruction, "error": message}
            )

    def finished(self, done: ScoredFiles, on_episode: EpisodeHook | None = None) -> None:
        """Record an episode whose files (if scored) are in place under ``out_dir``."""
        spec = done.spec
        self.report.model_s += done.model_s
        if done.entry is None:
            assert done.unscored is not None
            kind, record = done.unscored
            (self.manifest.record_empty if kind == "empty" else self.manifest.record_failure)(record)
            outcome = EpisodeOutcome(
                spec.index, spec.instruction, done.status, done.message, num_frames=done.num_frames
            )
            if done.status == "refused":
                outcome.start_log_ns, outcome.end_log_ns = spec.start_ns, spec.end_ns
            self.report.episodes.append(outcome)
            return
        entry = done.entry
        if on_episode is not None:
            on_episode(spec, done.extra)
        self.manifest.record_episode(spec.index, entry)
        self.scored_now += 1
        self.report.episodes.append(
            EpisodeOutcome(
                spec.index,
                spec.instruction,
                "scored",
                done.message,
                directory=episode_dir(spec.index),
                num_frames=entry["num_frames"],
                num_samples=entry["num_samples"],
                num_ticks=entry["num_ticks"],
                stamps_not_increasing=dict(entry["stamps_not_increasing"]),
                sync_misses={k: n for k, n in entry["sync_misses"].items() if n},
            )
        )

    def close(self, notes: SourceNotes | None = None) -> RunReport:
        """Save the manifest (also when nothing was scored) and write the combined tables."""
        if notes is not None:
            self.report.notes.extend(notes.notes)
            self.report.frames_outside_episodes += notes.frames_outside_episodes
            if notes.read_error and not self.report.read_error:
                self.report.read_error = notes.read_error
        self.manifest.save()
        write_combined_tables(self.manifest, self.out_dir, self.model_id, self.source.rabc_index)
        return self.report


class _Stop(Exception):
    """max_episodes reached."""


def run_local(
    scorer: ScoringBackend,
    settings: OfflineSettings,
    source: EpisodeSource,
    out_dir: Path,
    force: bool = False,
    progress: bool = True,
    extra: EpisodeExtra | None = None,
    on_episode: EpisodeHook | None = None,
) -> RunReport:
    """Score every episode of ``source`` not already done in ``out_dir``, in this process.

    Raises ``SourceError`` when the source cannot be used at all and
    ``ManifestError`` when ``out_dir`` holds other results; problems after
    the start are recorded in the report, with every completed episode kept.
    """
    source.check()
    output = SourceOutput(source, out_dir, scorer.model_id, settings, force=force)
    runner = settings.episode_runner(scorer, source.cameras)
    writer = settings.episode_writer(output.out_dir, output.record, source.cameras)
    notes = SourceNotes()
    bar = progress_bar(None, progress, source.kind, unit="episode")
    spec: EpisodeSpec | None = None
    try:
        for spec, frames in source.walk(notes):
            if output.done(spec):
                output.skipped(spec, count_primary_frames(frames))
                bar.update(1)
                spec = None
                continue
            if not output.budget_left():
                raise _Stop()
            if spec.error is not None:
                output.failed(spec, spec.error)
                continue
            try:
                done = score_episode(runner, writer, spec, frames, extra)
            except (SourceReadError, KeyboardInterrupt):
                raise
            except Exception as exc:  # noqa: BLE001 - one episode's failure stops no other
                output.failed(spec, f"scoring or writing failed: {type(exc).__name__}: {exc}")
                spec = None
                continue
            output.finished(done, on_episode)
            bar.update(1)
            spec = None
    except _Stop:
        output.report.stopped_early = True
    except SourceReadError as exc:
        output.report.read_error = str(exc)
        if spec is not None:
            output.failed(spec, f"{source.kind} unreadable before the episode ended: {exc}")
    except KeyboardInterrupt:
        output.report.interrupted = True
        if spec is not None:
            output.failed(spec, "interrupted before the episode ended", record=False)
    finally:
        bar.close()
        runner.close()
        report = output.close(notes)
    return report
