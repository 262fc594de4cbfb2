"""Scoring labelled episodes and their static-video controls, resumably.

For every episode: the paper's offline K-prefix curve, its VOC, the raw and
two-way success scores, the node's live-style ticks, and the **static-video
control**: the episode's first sampled frame repeated at the very same
sample stamps, scored by the same curve code. The control holds no task
progress at all, so whatever VOC it reaches measures how much the score
rises with video length alone (the authors report VOC ~0.99 for Qwen3-VL-8B
on such videos).

Every input is an episode source (``sources``) scored by the offline
pipeline that ``topreward bag`` and ``topreward lerobot`` use, so an
evaluated episode has exactly the curve those commands give it, and the
same files: bags go to ``bags/<bag name>/``, LeRobot datasets to
``datasets/<dataset name>/``, videos and frame folders to
``videos/<name>/``. Each input is one job on an engine (this process, or
Ray replicas with ``--ray``): the control is computed where the model is
(``StaticControl``, the engine's ``extra``) and the episode's record is
written on the driver (the engine's ``on_episode``).

Resumable: each finished episode is written atomically to
``episodes/<name>.json`` before its source's manifest lists it, and
``eval_manifest.json`` holds the settings; a re-run with the same settings
skips finished episodes, other settings are refused unless ``force``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from topreward_ros.evaluation.inputs import EvalInput, episode_name
from topreward_ros.evaluation.labels import Label
from topreward_ros.files.atomic import write_json_atomic
from topreward_ros.scoring.backends.protocol import ScoringBackend
from topreward_ros.scoring.calibration import two_way_log_probs, window_mean
from topreward_ros.scoring.metrics import voc

EVAL_MANIFEST = "eval_manifest.json"
EVAL_MANIFEST_VERSION = 1
RECORDS_DIR = "episodes"


class EvalSetupError(RuntimeError):
    """The output directory holds an evaluation with other settings (message for the user)."""


@dataclass(frozen=True)
class EvalSettings:
    """Everything besides the model that changes the scores (a resumed run must match).

    dataset_cameras: the video features of datasets (``--camera`` as given
        on the command line; None: each dataset's only one). A parameters
        file's ``camera_topics`` names ROS topics, which a dataset does not
        have, so it applies to bags only.
    """

    sample_fps: float = 2.0
    max_frames: int = 256
    sync_tolerance_s: float = 0.05
    view_size: int = 244
    num_prefixes: int = 15
    success_window: int = 3
    success_consecutive: int = 2
    tick_rate_hz: float = 1.0
    stamp_jump_restart_s: float = 1.0
    stamp_gap_restart_s: float = 60.0
    camera_topics: tuple[str, ...] | None = None
    instruction_topic: str = "/instruction"
    reset_topic: str | None = None
    source_fps: float = 30.0
    fixed_instruction: str | None = None
    dataset_cameras: tuple[str, ...] | None = None
    video_tolerance_frames: float = 0.5

    def record(self, model_id: str) -> dict[str, Any]:
        data = asdict(self)
        for key in ("camera_topics", "dataset_cameras"):
            data[key] = list(data[key]) if data[key] else None
        return {"model": model_id, **data}

    def offline(self, max_episodes: int | None) -> Any:
        """The offline pipeline's settings: the node's episode settings, timer and curve, plots."""
        from topreward_ros.episode.records import EpisodeSettings
        from topreward_ros.offline.engine import OfflineSettings
        from topreward_ros.offline.outputs import OutputOptions
        from topreward_ros.offline.runner import RunnerOptions

        episode = EpisodeSettings(
            sample_fps=self.sample_fps,
            max_frames=self.max_frames,
            sync_tolerance_s=self.sync_tolerance_s,
            view_size=self.view_size,
            success_window=self.success_window,
            success_consecutive=self.success_consecutive,
        )
        return OfflineSettings(
            episode=episode,
            runner=RunnerOptions(tick_rate_hz=self.tick_rate_hz, num_prefixes=self.num_prefixes),
            outputs=OutputOptions(plot=True),
            max_episodes=max_episodes,
        )


def record_file_name(name: str) -> str:
    """A file name for an episode name: readable, and unique even when slugs collide."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "episode"
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    return f"{slug}-{digest}.json"


def episode_order(inputs: Sequence[EvalInput]) -> Callable[[str], tuple[int, int]]:
    """A sort key for episode names: input order, then the bag's or dataset's episode index."""
    order = {i.name: n for n, i in enumerate(inputs)}
    multi = {i.name for i in inputs if i.multi_episode}

    def key(name: str) -> tuple[int, int]:
        head, _, tail = name.rpartition("/")
        if head in multi and tail.isdigit():
            return order[head], int(tail)
        return order.get(name, len(order)), 0

    return key


def episode_record(
    name: str,
    source: EvalInput,
    instruction: str,
    num_frames: int,
    curve: Any,
    control: Any,
    window: int,
    live: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The JSON record of one scored episode: curves, VOCs and success scores."""
    two_way = two_way_log_probs(curve.log_prob_true, curve.log_prob_false)
    control_two_way = two_way_log_probs(control.log_prob_true, control.log_prob_false)
    return {
        "episode": name,
        "source": source.name,
        "input": str(source.path),
        "kind": source.kind,
        "instruction": instruction,
        "num_frames": num_frames,
        "num_samples": int(curve.prefix_lengths[-1]),
        "model_id": curve.model_id,
        "voc": voc(curve.normalized),
        "control_voc": voc(control.normalized),
        "raw_success_score": window_mean(curve.log_prob_true, window),
        "two_way_success_score": window_mean(two_way, window),
        "control_raw_success_score": window_mean(control.log_prob_true, window),
        "control_two_way_success_score": window_mean(control_two_way, window),
        "curve": {**curve.to_dict(), "two_way": two_way},
        "control": {**control.to_dict(), "two_way": control_two_way},
        "live": list(live),
    }


def static_control(
    scorer: ScoringBackend,
    first_view: Any,
    stamps_ns: Sequence[int],
    instruction: str,
    num_prefixes: int,
    max_frames: int | None = None,
) -> Any:
    """The curve of ``first_view`` repeated at ``stamps_ns`` (the length-bias control).

    ``max_frames``: sized as the episode's own curve is, so the control sees
    the same pixels per frame as the scores it is compared with.
    """
    return scorer.curve(
        [first_view] * len(stamps_ns), list(stamps_ns), instruction, num_prefixes=num_prefixes, max_frames=max_frames
    )


@dataclass
class ControlledEpisode:
    """What an episode's record needs from where it was scored (small and picklable).

    Under Ray the scorer and the samples live on a replica; the driver,
    which writes the record, gets only this.
    """

    instruction: str
    num_frames: int
    sample_stamps_ns: list[int]
    curve: Any
    control: Any
    live: list[dict[str, Any]]


@dataclass(frozen=True)
class StaticControl:
    """The engines' ``extra``: the static-video control of a scored episode.

    A module-level class, not a closure, because under Ray it is pickled to
    the replica that holds the model and the episode's samples (the first
    sample's view is repeated there; shipping views back would cost more
    than the forward passes).
    """

    num_prefixes: int
    max_frames: int | None = None

    def __call__(self, scorer: ScoringBackend, result: Any) -> ControlledEpisode:
        spec, samples = result.spec, result.samples
        stamps = [int(sample.stamp_ns) for sample in samples]
        control = static_control(scorer, samples[0].image, stamps, spec.instruction, self.num_prefixes, self.max_frames)
        live = [
            {
                "stamp_ns": t.result.stamp_ns,
                "frames_used": t.result.frames_used,
                "log_prob_true": t.result.log_prob_true,
                "log_prob_false": t.result.log_prob_false,
                "success_score": t.result.success_score,
            }
            for t in result.ticks
        ]
        return ControlledEpisode(spec.instruction, result.num_frames, stamps, result.curve, control, live)


@dataclass
class EvalRunReport:
    """What a run did: episodes scored now, found done, failed; why it stopped.

    ``unscored`` holds, for each episode this run met but could not score,
    its status (``failed``, ``refused``, ``empty``) and why: the row
    ``episodes.csv`` gives it. A refused episode is also in ``failed`` (it
    needs attention as a failure does). ``input_errors`` names the bags
    and datasets that could not be used (or broke part-way), by input name.
    ``input_episodes`` holds the episode indices a bag or dataset has, for
    the inputs in ``complete_inputs`` (those whose whole list is known), so
    a label naming an episode it lacks is reported. ``camera_topics``: the
    topics each usable bag was scored with.
    """

    scored: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    unscored: dict[str, tuple[str, str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    input_errors: dict[str, str] = field(default_factory=dict)
    input_episodes: dict[str, set[int]] = field(default_factory=dict)
    complete_inputs: set[str] = field(default_factory=set)
    camera_topics: dict[str, tuple[str, ...]] = field(default_factory=dict)
    interrupted: bool = False
    stopped_early: bool = False


class EvalRunner:
    """Scores the episodes of the inputs into ``out_dir`` (see the module doc).

    ``model_id`` is the model the engine loads (``ScorerConfig.model``): it is
    known before any model loads, so a directory of other settings is
    refused before the slow load.
    """

    def __init__(
        self, settings: EvalSettings, out_dir: Path, model_id: str, force: bool = False, max_episodes: int | None = None
    ) -> None:
        self.settings = settings
        self.out_dir = Path(out_dir)
        self.model_id = model_id
        self.force = force
        self.max_episodes = max_episodes
        self.records_dir = self.out_dir / RECORDS_DIR
        self._scored_now = 0

    # -- settings / records ---------------------------------------------------------
    def check(self) -> None:
        """Refuse a directory that holds an evaluation of other settings (unless ``force``)."""
        path = self.out_dir / EVAL_MANIFEST
        if not path.exists() or self.force:
            return
        current = self.settings.record(self.model_id)
        try:
            old = json.loads(path.read_text())["settings"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EvalSetupError(f"{path} is unreadable ({exc}); pass --force to redo everything") from exc
        changed = {k: (old.get(k), current.get(k)) for k in set(old) | set(current) if old.get(k) != current.get(k)}
        if changed:
            detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items()))
            raise EvalSetupError(
                f"{self.out_dir} holds an evaluation with other settings ({detail}); "
                f"use another --output directory or pass --force to redo everything"
            )

    def open(self) -> None:
        """Check (or write) the directory's settings; ``force`` starts afresh."""
        self.check()
        if self.force and self.records_dir.exists():
            shutil.rmtree(self.records_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            self.out_dir / EVAL_MANIFEST,
            {"version": EVAL_MANIFEST_VERSION, "settings": self.settings.record(self.model_id)},
        )

    def record_path(self, name: str) -> Path:
        return self.records_dir / record_file_name(name)

    def load_record(self, name: str) -> dict[str, Any] | None:
        path = self.record_path(name)
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return record if record.get("episode") == name else None

    def load_records(self, inputs: Sequence[EvalInput]) -> list[dict[str, Any]]:
        """Every finished episode of these inputs, in input then episode order."""
        order = {i.name: n for n, i in enumerate(inputs)}
        key = episode_order(inputs)
        records = []
        for path in sorted(self.records_dir.glob("*.json")) if self.records_dir.exists() else []:
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if record.get("source") in order and path.name == record_file_name(record.get("episode", "")):
                records.append(record)
        return sorted(records, key=lambda r: key(r["episode"]))

    def _budget_left(self) -> int | None:
        if self.max_episodes is None:
            return None
        return max(0, self.max_episodes - self._scored_now)

    # -- sources ----------------------------------------------------------------------
    def output_dir(self, source: EvalInput) -> Path:
        return self.out_dir / source.source_kind.output_dir / source.name

    def make_source(self, source: EvalInput, labels: dict[str, Label]) -> Any:
        """The episode source of an input with the evaluation's options (opens nothing heavy).

        A video or frame folder is scored with its label's instruction (or
        the fixed one; ``inputs.check_labels`` made sure there is one).
        """
        label = labels.get(source.name)
        instruction = (label.instruction if label else None) or self.settings.fixed_instruction
        return source.source_kind.build(source.path, self.settings, instruction)

    def plan(self, inputs: Sequence[EvalInput], labels: dict[str, Label]) -> list[Any]:
        """One engine job per input, its source built and checked now, before any model loads.

        An input that cannot be used becomes a job with an error: it is
        reported with the others after the run, as an input that broke
        part-way would be.
        """
        from topreward_ros.bag.base import BagError
        from topreward_ros.offline.fleet import InputJob
        from topreward_ros.offline.source import SourceError

        jobs = []
        for source in inputs:
            try:
                episode_source = self.make_source(source, labels)
                episode_source.check()
            except (SourceError, BagError, ValueError) as exc:
                jobs.append(InputJob(source.name, source.path, self.output_dir(source), None, str(exc)))
                continue
            jobs.append(InputJob(source.name, source.path, self.output_dir(source), episode_source))
        return jobs

    # -- the run ------------------------------------------------------------------------
    def run(self, engine: Any, inputs: Sequence[EvalInput], jobs: Sequence[Any]) -> EvalRunReport:
        """Score the inputs in order on ``engine``, within the ``--max-episodes`` budget."""
        report = EvalRunReport()
        self.records_dir.mkdir(parents=True, exist_ok=True)
        for source, job in zip(inputs, jobs):
            self._known_episodes(source, job, report)
        try:
            for source, job in zip(inputs, jobs):
                budget = self._budget_left()
                if budget == 0:
                    report.stopped_early = True
                    break
                self._run_input(engine, source, job, budget, report)
                if report.interrupted or report.stopped_early:
                    break
        except KeyboardInterrupt:
            report.interrupted = True
        return report

    def _known_episodes(self, source: EvalInput, job: Any, report: EvalRunReport) -> None:
        """What an input holds, known without scoring it: a bag's cameras, a dataset's episodes.

        A dataset's episode list is in its metadata, so a label naming an
        episode it lacks is found even in a run stopped by ``--max-episodes``;
        a bag's episodes are known only once it has been read to its end.
        """
        if job.source is None:
            return
        if source.kind == "bag":
            report.camera_topics[source.name] = tuple(job.source.cameras)
        elif source.kind == "dataset":
            report.input_episodes[source.name] = {info.episode_index for info in job.source.selected()}
            report.complete_inputs.add(source.name)

    def _force(self, source: EvalInput, job: Any) -> bool:
        """Redo this input's outputs? ``--force``, or a video whose record is not of this label.

        A video's or frame folder's outputs are one episode scored with the
        label's instruction: a label whose instruction changed (or a record
        that is gone) means scoring it again, as a changed instruction
        topic does for a bag episode.
        """
        if self.force or source.multi_episode or job.source is None:
            return self.force
        done = self.load_record(episode_name(source))
        return not (
            done is not None
            and done.get("input") == str(source.path)
            and done.get("instruction") == job.source.instruction
        )

    def _run_input(self, engine: Any, source: EvalInput, job: Any, budget: int | None, report: EvalRunReport) -> None:
        from topreward_ros.bag.base import BagError
        from topreward_ros.offline.manifest import ManifestError
        from topreward_ros.offline.source import SourceError

        s = self.settings

        def on_episode(spec: Any, value: ControlledEpisode) -> None:
            # On the driver, after the episode's files are written and before its
            # source's manifest lists it: a listed episode always has its record.
            name = episode_name(source, spec.index)
            record = episode_record(
                name,
                source,
                value.instruction,
                value.num_frames,
                value.curve,
                value.control,
                s.success_window,
                value.live,
            )
            record["sample_stamps_ns"] = list(value.sample_stamps_ns)
            if source.multi_episode:
                record[f"{source.kind}_episode"] = spec.index
            record["episode_dir"] = (
                (self.output_dir(source) / f"episode_{spec.index:04d}").relative_to(self.out_dir).as_posix()
            )
            write_json_atomic(self.record_path(name), record)

        try:
            runs = engine.run(
                [job],
                s.offline(budget),
                force=self._force(source, job),
                extra=StaticControl(s.num_prefixes, s.max_frames),
                on_episode=on_episode,
            )
        except (SourceError, BagError, ManifestError, ValueError) as exc:
            self._input_failed(source, str(exc), report)
            return
        self._take(source, runs[0], report)

    def _input_failed(self, source: EvalInput, message: str, report: EvalRunReport) -> None:
        if source.multi_episode:
            report.failed[f"{source.name} ({source.kind})"] = message
            report.input_errors[source.name] = message
        else:
            name = episode_name(source)
            report.failed[name] = message
            report.unscored[name] = ("failed", message)

    def _take(self, source: EvalInput, run: Any, report: EvalRunReport) -> None:
        """Sort what the engine did to one input's episodes into the report."""
        result = run.report
        error = run.job.error or run.error
        if result is None:
            self._input_failed(source, error or "not scored", report)
            return
        seen: set[int] = set()
        where = f"{source.source_kind.output_dir}/{source.name}"
        for outcome in result.episodes:
            name = episode_name(source, outcome.index)
            seen.add(outcome.index)
            if outcome.status == "scored":
                self._scored_now += 1
                report.scored.append(name)
            elif outcome.status == "skipped":
                if self.load_record(name) is None:
                    problem = (
                        f"done in {where} but its record {RECORDS_DIR}/{record_file_name(name)} "
                        f"is missing; re-run with --force to rescore"
                    )
                    report.problems.append(f"{name}: {problem}")
                    report.unscored[name] = ("failed", problem)
                else:
                    report.skipped.append(name)
            elif outcome.status == "empty":
                report.notes.append(f"{name}: {outcome.message}; not scored")
                report.unscored[name] = ("empty", outcome.message)
            else:
                report.failed[name] = outcome.message
                report.unscored[name] = ("refused" if outcome.status == "refused" else "failed", outcome.message)
        if error:  # e.g. the replicas scoring it died: what was written stands
            self._input_failed(source, error, report)
        if result.read_error and source.multi_episode:
            self._input_failed(source, f"{source.kind} damaged: {result.read_error}", report)
        report.interrupted = result.interrupted
        report.stopped_early = result.stopped_early
        if source.kind == "bag" and not (result.interrupted or result.stopped_early or result.read_error or error):
            report.input_episodes[source.name] = seen
            report.complete_inputs.add(source.name)
