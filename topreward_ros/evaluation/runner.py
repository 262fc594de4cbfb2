"""Scoring labelled episodes and their static-video controls, resumably.

For every episode: the paper's offline K-prefix curve, its VOC, the raw and
two-way success scores, and the **static-video control**: the episode's first
sampled frame repeated at the very same sample stamps, scored by the same
curve code. The control holds no task progress at all, so whatever VOC it
reaches measures how much the score rises with video length alone (the
authors report VOC ~0.99 for Qwen3-VL-8B on such videos).

Bags are read by ``topreward bag``'s own ``BagScorer`` (the same episode cuts,
windowing, thinning and curve); its outputs go to ``bags/<bag name>/`` and
its ``on_episode`` callback adds the control. Videos and frame folders are
read with ``topreward score``'s readers.

Resumable: each finished episode is written atomically to
``episodes/<name>.json`` (for a bag episode before ``topreward bag``'s
manifest lists it), and ``eval_manifest.json`` holds the settings; a re-run
with the same settings skips finished episodes, other settings are refused
unless ``force``.
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

from topreward_ros.files import write_json_atomic
from topreward_ros.progress_bar import progress_bar
from topreward_ros.evaluation.inputs import EvalInput, episode_name
from topreward_ros.evaluation.labels import Label
from topreward_ros.scoring.calibration import two_way_log_probs, window_mean
from topreward_ros.scoring.metrics import voc

EVAL_MANIFEST = "eval_manifest.json"
EVAL_MANIFEST_VERSION = 1
RECORDS_DIR = "episodes"
BAGS_DIR = "bags"


class EvalSetupError(RuntimeError):
    """The output directory holds an evaluation with other settings (message for the user)."""


@dataclass(frozen=True)
class EvalSettings:
    """Everything besides the model that changes the scores (a resumed run must match)."""

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

    def record(self, model_id: str) -> dict[str, Any]:
        data = asdict(self)
        data["camera_topics"] = list(self.camera_topics) if self.camera_topics else None
        return {"model": model_id, **data}


def record_file_name(name: str) -> str:
    """A file name for an episode name: readable, and unique even when slugs collide."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "episode"
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    return f"{slug}-{digest}.json"


def episode_order(inputs: Sequence[EvalInput]) -> Callable[[str], tuple[int, int]]:
    """A sort key for episode names: input order, then bag episode index."""
    order = {i.name: n for n, i in enumerate(inputs)}
    bags = {i.name for i in inputs if i.kind == "bag"}

    def key(name: str) -> tuple[int, int]:
        head, _, tail = name.rpartition("/")
        if head in bags and tail.isdigit():
            return order[head], int(tail)
        return order.get(name, len(order)), 0
    return key


def episode_record(name: str, source: EvalInput, instruction: str, num_frames: int,
                   curve: Any, control: Any, window: int, live: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
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


def static_control(scorer: Any, first_view: Any, stamps_ns: Sequence[int], instruction: str,
                   num_prefixes: int) -> Any:
    """The curve of ``first_view`` repeated at ``stamps_ns`` (the length-bias control)."""
    return scorer.curve([first_view] * len(stamps_ns), list(stamps_ns), instruction,
                        num_prefixes=num_prefixes)


@dataclass
class EvalRunReport:
    """What a run did: episodes scored now, found done, failed; why it stopped.

    ``unscored`` holds, for each episode this run met but could not score,
    its status (``failed``, ``refused``, ``empty``) and why: the row
    ``episodes.csv`` gives it. A refused episode is also in ``failed`` (it
    needs attention as a failure does).
    """

    scored: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    unscored: dict[str, tuple[str, str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    bag_episodes: dict[str, set[int]] = field(default_factory=dict)
    complete_bags: set[str] = field(default_factory=set)
    interrupted: bool = False
    stopped_early: bool = False


class EvalRunner:
    """Scores the episodes of the inputs into ``out_dir`` (see the module doc)."""

    def __init__(self, scorer: Any, settings: EvalSettings, out_dir: Path, force: bool = False,
                 progress: bool = True, max_episodes: int | None = None) -> None:
        self.scorer = scorer
        self.settings = settings
        self.out_dir = Path(out_dir)
        self.force = force
        self.progress = progress
        self.max_episodes = max_episodes
        self.records_dir = self.out_dir / RECORDS_DIR
        self._scored_now = 0

    # -- settings / records ---------------------------------------------------------
    def open(self) -> None:
        """Check (or write) the directory's settings; ``force`` starts afresh."""
        path = self.out_dir / EVAL_MANIFEST
        current = self.settings.record(self.scorer.model_id)
        if path.exists() and not self.force:
            try:
                old = json.loads(path.read_text())["settings"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise EvalSetupError(f"{path} is unreadable ({exc}); pass --force to redo everything") from exc
            changed = {k: (old.get(k), current.get(k)) for k in set(old) | set(current)
                       if old.get(k) != current.get(k)}
            if changed:
                detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items()))
                raise EvalSetupError(f"{self.out_dir} holds an evaluation with other settings ({detail}); "
                                     f"use another --output directory or pass --force to redo everything")
        if self.force and self.records_dir.exists():
            shutil.rmtree(self.records_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"version": EVAL_MANIFEST_VERSION, "settings": current})

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

    # -- the run ------------------------------------------------------------------------
    def run(self, inputs: Sequence[EvalInput], labels: dict[str, Label]) -> EvalRunReport:
        report = EvalRunReport()
        self.records_dir.mkdir(parents=True, exist_ok=True)
        singles = [i for i in inputs if i.kind != "bag"]
        bar = progress_bar(len(singles), self.progress and bool(singles), "eval videos", unit="episode")
        try:
            for source in inputs:
                if source.kind == "bag":
                    self._run_bag(source, report)
                else:
                    self._run_single(source, labels[source.name], report)
                    bar.update(1)
                if report.interrupted or report.stopped_early:
                    break
        except KeyboardInterrupt:
            report.interrupted = True
        finally:
            bar.close()
        return report

    def _run_single(self, source: EvalInput, label: Label, report: EvalRunReport) -> None:
        from topreward_ros.cli_score import InputError, read_episode
        from topreward_ros.scoring.errors import ScoringError

        name = episode_name(source)
        instruction = label.instruction or self.settings.fixed_instruction
        assert instruction is not None  # checked by inputs.check_labels
        done = self.load_record(name)
        if done is not None and done.get("input") == str(source.path) and done.get("instruction") == instruction:
            report.skipped.append(name)
            return
        if self._budget_left() == 0:
            report.stopped_early = True
            return
        s = self.settings
        try:
            episode = read_episode(source.path, s.source_fps, s.sample_fps, s.view_size)
            curve = self.scorer.curve(episode.views, episode.stamps_ns, instruction, num_prefixes=s.num_prefixes)
            control = static_control(self.scorer, episode.views[0], episode.stamps_ns, instruction, s.num_prefixes)
        except (InputError, ScoringError, ValueError) as exc:
            report.failed[name] = str(exc)
            report.unscored[name] = ("failed", str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - one episode's failure (e.g. out of memory) stops no other
            report.failed[name] = f"scoring failed: {type(exc).__name__}: {exc}"
            report.unscored[name] = ("failed", report.failed[name])
            return
        record = episode_record(name, source, instruction, episode.source_frames, curve, control,
                                s.success_window)
        record["sample_stamps_ns"] = list(episode.stamps_ns)
        write_json_atomic(self.record_path(name), record)
        self._scored_now += 1
        report.scored.append(name)

    def _run_bag(self, source: EvalInput, report: EvalRunReport) -> None:
        from topreward_ros.bag.cli import _pick_cameras
        from topreward_ros.offline.manifest import ManifestError
        from topreward_ros.bag.offline import BagScorer, BagScoringOptions, FinishedEpisode
        from topreward_ros.bag.reader import BagError
        from topreward_ros.episode import EpisodeSettings

        budget = self._budget_left()
        if budget == 0:
            report.stopped_early = True
            return
        s = self.settings

        def on_episode(finished: FinishedEpisode) -> None:
            name = episode_name(source, finished.index)
            stamps = [sample.stamp_ns for sample in finished.samples]
            control = static_control(self.scorer, finished.samples[0].image, stamps, finished.instruction,
                                     s.num_prefixes)
            live = [{"stamp_ns": t.result.stamp_ns, "frames_used": t.result.frames_used,
                     "log_prob_true": t.result.log_prob_true, "log_prob_false": t.result.log_prob_false,
                     "success_score": t.result.success_score} for t in finished.ticks]
            record = episode_record(name, source, finished.instruction, finished.num_frames, finished.curve,
                                    control, s.success_window, live)
            record["sample_stamps_ns"] = stamps
            record["bag_episode"] = finished.index
            write_json_atomic(self.record_path(name), record)

        try:
            options = BagScoringOptions(
                camera_topics=_pick_cameras(source.path, list(s.camera_topics) if s.camera_topics else None),
                instruction_topic=s.instruction_topic, reset_topic=s.reset_topic,
                tick_rate_hz=s.tick_rate_hz, stamp_jump_restart_s=s.stamp_jump_restart_s,
                stamp_gap_restart_s=s.stamp_gap_restart_s,
                num_prefixes=s.num_prefixes, max_episodes=budget, plot=True)
            settings = EpisodeSettings(sample_fps=s.sample_fps, max_frames=s.max_frames,
                                       sync_tolerance_s=s.sync_tolerance_s, view_size=s.view_size,
                                       success_window=s.success_window,
                                       success_consecutive=s.success_consecutive)
            bag_report = BagScorer(self.scorer, settings, options, on_episode=on_episode).run(
                source.path, self.out_dir / BAGS_DIR / source.name, force=self.force, progress=self.progress)
        except (BagError, ManifestError, ValueError) as exc:
            report.failed[f"{source.name} (bag)"] = str(exc)
            return
        seen = report.bag_episodes.setdefault(source.name, set())
        for outcome in bag_report.episodes:
            name = episode_name(source, outcome.index)
            seen.add(outcome.index)
            if outcome.status == "scored":
                self._scored_now += 1
                report.scored.append(name)
            elif outcome.status == "skipped":
                if self.load_record(name) is None:
                    problem = (f"done in {BAGS_DIR}/{source.name} but its record {RECORDS_DIR}/"
                               f"{record_file_name(name)} is missing; re-run with --force to rescore")
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
        if bag_report.read_error:
            report.failed[f"{source.name} (bag)"] = f"bag damaged: {bag_report.read_error}"
        report.interrupted = bag_report.interrupted
        report.stopped_early = bag_report.stopped_early
        if not (bag_report.interrupted or bag_report.stopped_early or bag_report.read_error):
            report.complete_bags.add(source.name)
