"""Scoring a local LeRobot dataset episode by episode, with the bag tool's code path.

Each episode's frames go, in timestamp order, to the same ``EpisodeRunner``
the node and ``topreward bag`` use (``wants`` -> decode/convert -> ``add``),
with the node's timer fired on the episode's own time axis (the dataset's
``timestamp`` column, as integer nanoseconds). Task text comes from the
dataset's tasks (the task of the episode's first frame) unless a fixed
instruction is given. The per-episode outputs, their file formats and the
manifest that makes runs resumable are those of ``topreward bag``: this class
is a ``BagScorer`` that walks a dataset instead of a bag.

On top of the combined ``frames.parquet`` / ``frames.csv``, the output
directory gets ``topreward_progress.parquet`` keyed by the dataset's own
``index``, ready for LeRobot's RA-BC sample weighting
(``lerobot.progress``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from topreward_ros.bag.manifest import Manifest, files_fingerprint
from topreward_ros.bag.offline import (
    EPISODE_DIR,
    BagRunReport,
    BagScorer,
    EpisodeOutcome,
    _Episode,
)
from topreward_ros.bag.progress_bag import TimedTick
from topreward_ros.bag.progress_bar import progress_bar
from topreward_ros.bag.tables import concat_frame_tables, write_csv, write_parquet
from topreward_ros.episode import EpisodeRunner, EpisodeSettings
from topreward_ros.lerobot.dataset import DatasetError, EpisodeInfo, LeRobotDatasetDir
from topreward_ros.lerobot.join import dataset_index
from topreward_ros.lerobot.progress import PROGRESS_FILE, write_progress_parquet
from topreward_ros.lerobot.video import open_episode_videos
from topreward_ros.window import AddResult

NS_PER_S = 1_000_000_000
END_REASON = "end of the dataset episode"


@dataclass(frozen=True)
class DatasetScoringOptions:
    """What to read from the dataset and how to run the node's timer.

    camera_keys: video features (e.g. ``observation.images.front``); the
        first is the primary camera that drives the 2 fps schedule.
    episodes: dataset episode indices to score (None: all).
    instruction: fixed instruction for every episode (instead of its task).
    tick_rate_hz: the node's scoring timer rate in episode time.
    num_prefixes: K, prefixes of the offline curve (paper: 15).
    video_tolerance_frames: a frame is left out when the nearest decoded
        picture is further than this many frame periods from its timestamp.
    max_episodes: score at most this many episodes in this run.
    plot: write a PNG plot per episode.
    video: write progress.mp4 per episode (the node's progress picture per tick).
    """

    camera_keys: tuple[str, ...]
    episodes: tuple[int, ...] | None = None
    instruction: str | None = None
    tick_rate_hz: float = 1.0
    num_prefixes: int = 15
    video_tolerance_frames: float = 0.5
    max_episodes: int | None = None
    plot: bool = True
    video: bool = False
    # BagScorer's per-episode writers add this to episode numbers; a dataset
    # already has its own episode indices.
    episode_offset: int = 0

    def __post_init__(self) -> None:
        if not self.camera_keys:
            raise ValueError("camera_keys must name at least one video feature")
        if len(set(self.camera_keys)) != len(self.camera_keys):
            raise ValueError(f"camera_keys repeat a camera: {list(self.camera_keys)}")
        if self.instruction is not None and not self.instruction.strip():
            raise ValueError("instruction must not be empty (omit it to use the dataset's tasks)")
        if not (math.isfinite(self.tick_rate_hz) and self.tick_rate_hz > 0):
            raise ValueError(f"tick_rate_hz must be a finite number > 0, got {self.tick_rate_hz!r}")
        if self.num_prefixes < 2:
            raise ValueError(f"num_prefixes must be >= 2, got {self.num_prefixes!r}")
        if not (0 < self.video_tolerance_frames <= 1):
            raise ValueError(
                f"video_tolerance_frames must lie in (0, 1], got {self.video_tolerance_frames!r}")
        if self.max_episodes is not None and self.max_episodes < 1:
            raise ValueError(f"max_episodes must be >= 1, got {self.max_episodes!r}")
        if self.episode_offset != 0:
            raise ValueError("a dataset keeps its own episode indices: episode_offset must be 0")

    @property
    def camera_topics(self) -> tuple[str, ...]:
        """The cameras under the name the bag scorer's per-camera reports use."""
        return self.camera_keys


class DatasetRunReport(BagRunReport):
    """A bag run report whose summary names the dataset."""

    def summary(self) -> str:
        lines = super().summary().split("\n")
        lines[0] = f"dataset {self.bag} -> {self.output}"
        return "\n".join(lines)


def dataset_fingerprint(files: list[Path]) -> str:
    """Sizes and sampled blocks of the dataset files that decide the scores."""
    return files_fingerprint(files, [f"{file.parent.name}/{file.name}" for file in files])


def check_dataset(dataset: LeRobotDatasetDir, options: DatasetScoringOptions) -> list[EpisodeInfo]:
    """Raise ``DatasetError`` (saying what to change) unless the options fit; the episodes."""
    dataset.check_cameras(options.camera_keys)
    episodes = dataset.select(options.episodes)
    dataset.check_videos(episodes, options.camera_keys)
    return episodes


class _Stop(Exception):
    """max_episodes reached."""


class DatasetScorer(BagScorer):
    """Scores a LeRobot v3 dataset into one output directory (resumable)."""

    options: DatasetScoringOptions  # type: ignore[assignment]

    def __init__(self, scorer: Any, settings: EpisodeSettings, options: DatasetScoringOptions) -> None:
        super().__init__(scorer, settings, options)  # type: ignore[arg-type]

    def settings_record(self) -> dict[str, Any]:
        """Everything that changes the outputs; a resumed run must match it."""
        from dataclasses import asdict

        options = asdict(self.options)
        for key in ("max_episodes", "plot", "video", "episodes", "episode_offset"):
            options.pop(key)
        options["camera_keys"] = list(self.options.camera_keys)
        return {"model": self.scorer.model_id, **asdict(self.settings), **options}

    def run(self, dataset_dir: Path, out_dir: Path, force: bool = False,  # type: ignore[override]
            progress: bool = True) -> DatasetRunReport:
        """Score the selected episodes not already done in ``out_dir``.

        Raises ``DatasetError`` when the dataset or the options cannot be
        used at all; a failing episode is recorded and the others go on.
        """
        dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
        dataset = LeRobotDatasetDir(dataset_dir)
        episodes = check_dataset(dataset, self.options)
        report = DatasetRunReport(str(dataset_dir), str(out_dir))
        out_dir.mkdir(parents=True, exist_ok=True)
        fingerprint = dataset_fingerprint(dataset.fingerprint_files(self.options.camera_keys))
        manifest = Manifest.open(out_dir, dataset_dir, fingerprint, self.settings_record(), force=force)
        runner = EpisodeRunner(self.scorer, self.settings, len(self.options.camera_keys))
        bar = progress_bar(sum(e.length for e in episodes), progress, "frames")
        scored = 0
        try:
            for info in episodes:
                outcome = self._episode(dataset, info, runner, manifest, out_dir, report, bar,
                                        may_score=(self.options.max_episodes is None
                                                   or scored < self.options.max_episodes))
                report.episodes.append(outcome)
                scored += outcome.status == "scored"
        except _Stop:
            report.stopped_early = True
        except KeyboardInterrupt:
            report.interrupted = True
        finally:
            bar.close()
            runner.stop()
            self._write_dataset_combined(dataset, manifest, out_dir)
        return report

    # -- one episode ----------------------------------------------------------------------
    def _episode(self, dataset: LeRobotDatasetDir, info: EpisodeInfo, runner: EpisodeRunner,
                 manifest: Manifest, out_dir: Path, report: DatasetRunReport, bar: Any,
                 may_score: bool) -> EpisodeOutcome:
        index = info.episode_index
        instruction = self.options.instruction or ""
        try:
            frames = dataset.frames(info)
            if self.options.instruction is None:
                tasks = sorted(set(frames.task_index.tolist()))
                instruction = dataset.task_text(int(frames.task_index[0]))
                if len(tasks) > 1:
                    report.notes.append(f"episode {index} has {len(tasks)} tasks; scored with the "
                                        f"task of its first frame: {instruction!r}")
        except DatasetError as exc:
            return self._failed(manifest, index, instruction, f"unreadable episode: {exc}", info.length)
        stamps = frames.stamps_ns
        episode = _Episode(index, instruction, int(stamps[0]),
                           skip=manifest.completed(index, instruction, int(stamps[0])))
        episode.end_log_ns, episode.end_reason = int(stamps[-1]), END_REASON
        if episode.skip:
            episode.frame_stamps_ns = stamps.tolist()
            bar.update(len(stamps))
            return self._finish(episode, runner, manifest, out_dir, report)
        if not may_score:
            raise _Stop()
        try:
            runner.start(instruction, episode_id=f"lerobot-episode-{index:06d}")
            self._feed(info, frames.timestamp, stamps, episode, runner, report, bar, dataset.fps)
            return self._finish(episode, runner, manifest, out_dir, report)
        except KeyboardInterrupt:
            report.episodes.append(EpisodeOutcome(index, instruction, "failed",
                                                  "interrupted before the episode ended",
                                                  num_frames=len(episode.frame_stamps_ns)))
            raise
        except Exception as exc:  # noqa: BLE001 - one episode's failure stops no other
            return self._failed(manifest, index, instruction,
                                f"scoring or writing failed: {type(exc).__name__}: {exc}",
                                len(episode.frame_stamps_ns))
        finally:
            runner.stop()

    def _failed(self, manifest: Manifest, index: int, instruction: str, message: str,
                num_frames: int) -> EpisodeOutcome:
        manifest.record_failure({"episode_index": index, "instruction": instruction, "error": message})
        return EpisodeOutcome(index, instruction, "failed", message, num_frames=num_frames)

    def _feed(self, info: EpisodeInfo, timestamps: np.ndarray, stamps: np.ndarray,
              episode: _Episode, runner: EpisodeRunner, report: DatasetRunReport, bar: Any,
              fps: float) -> None:
        """Every frame, in time order, through the runner; ticks on the node's schedule."""
        keys = self.options.camera_keys
        tick_period_ns = int(round(NS_PER_S / self.options.tick_rate_hz))
        next_tick_ns = int(stamps[0]) + tick_period_ns
        tolerance_s = self.options.video_tolerance_frames / fps
        videos = open_episode_videos([info.videos[k] for k in keys], tolerance_s)
        try:
            for offset_s, stamp in zip(timestamps.tolist(), stamps.tolist()):
                bar.update(1)
                while next_tick_ns <= stamp:
                    result = runner.tick()
                    if result is not None:
                        episode.ticks.append(TimedTick(next_tick_ns, result))
                        report.model_s += result.timings.get("model_s", 0.0)
                    next_tick_ns += tick_period_ns
                episode.frame_stamps_ns.append(stamp)
                episode.frame_log_ns.append(stamp)
                for camera, (key, video) in enumerate(zip(keys, videos)):
                    decoded, why = video.frame_at(offset_s)
                    if not runner.wants(camera, stamp):
                        continue
                    if decoded is None:
                        episode.bad_frames.append(f"{key} frame at {offset_s:.4f} s: {why}")
                        continue
                    view = self._prepare(decoded.rgb())
                    added = runner.add(camera, stamp, view, key)
                    if added is AddResult.KEPT and camera == 0:
                        # The per-frame table marks exactly the frames the model saw.
                        episode.kept_primary[stamp] = len(episode.frame_stamps_ns) - 1
                    if added is AddResult.STALE:
                        episode.bad_frames.append(f"{key} frame at {offset_s:.4f} s is stale")
        finally:
            for video in videos:
                video.close()

    def _prepare(self, rgb: np.ndarray) -> np.ndarray:
        from topreward_ros.scoring.frames import prepare_view

        return prepare_view(rgb, self.settings.view_size)

    def _curve_record(self, episode: _Episode, samples: list[Any], curve: Any,
                      columns: dict[str, Any], sync_misses: dict[str, int]) -> dict[str, Any]:
        record = super()._curve_record(episode, samples, curve, columns, sync_misses)
        record.pop("bag_episode", None)
        record["dataset_episode"] = episode.index
        record["camera_keys"] = list(self.options.camera_keys)
        return record

    # -- combined outputs -----------------------------------------------------------------
    def _write_dataset_combined(self, dataset: LeRobotDatasetDir, manifest: Manifest,
                                out_dir: Path) -> None:
        done = sorted(manifest.episodes)
        paths = [out_dir / EPISODE_DIR.format(index=i) / "frames.parquet" for i in done]
        table = concat_frame_tables([p for p in paths if p.is_file()])
        write_parquet(out_dir / "frames.parquet", table)
        write_csv(out_dir / "frames.csv", table)
        index = dataset_index(dataset, table, check_timestamps=False)
        write_progress_parquet(out_dir / PROGRESS_FILE, table, self.scorer.model_id, index=index,
                               extra_metadata={"topreward_ros.dataset": str(dataset.root.resolve())})
