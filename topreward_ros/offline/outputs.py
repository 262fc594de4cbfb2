"""The files one scored episode leaves, the same for every source.

Per episode (``episode_NNNN/``): ``curve.json`` (offline curve, live ticks,
settings), ``frames.parquet`` / ``frames.csv`` (one row per primary camera
frame, ``offline.tables``), ``progress.mcap`` (the node's TaskProgress and
EpisodeSuccess messages at their tick times), ``plot.png`` and, on request,
``progress.mp4`` (the node's progress picture per tick). Every file is
written atomically; the manifest entry that says the episode is done is
built here but recorded by the engine, after the files are in place.

At the top of the output directory, ``frames.parquet`` / ``frames.csv``
hold every completed episode's rows and ``topreward_progress.parquet`` the
same frames in the schema LeRobot's RA-BC sample weighting reads
(``lerobot.progress``), keyed by the source's own frame ``index`` where it
has one (a dataset).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from topreward_ros.episode.records import EpisodeSettings
from topreward_ros.files.atomic import write_json_atomic
from topreward_ros.offline.manifest import Manifest
from topreward_ros.offline.progress_mcap import write_progress_mcap
from topreward_ros.offline.runner import EpisodeResult
from topreward_ros.offline.tables import concat_frame_tables, frame_table, write_csv, write_parquet
from topreward_ros.scoring.stamps import NS_PER_S

EPISODE_DIR = "episode_{index:04d}"
# Thumbnails on a plot: enough to see the task unfold, few enough to stay legible.
PLOT_THUMBNAILS = 8


@dataclass(frozen=True)
class OutputOptions:
    """Which optional files to write (they do not change any value)."""

    plot: bool = True
    video: bool = False


def episode_dir(index: int) -> str:
    return EPISODE_DIR.format(index=index)


class EpisodeWriter:
    """Writes one scored episode's files under a root and builds its manifest entry."""

    def __init__(
        self,
        root: Path,
        settings: EpisodeSettings,
        options: OutputOptions,
        settings_record: dict[str, Any],
        cameras: tuple[str, ...],
        tick_rate_hz: float,
    ) -> None:
        self.root = Path(root)
        self.settings = settings
        self.options = options
        self.settings_record = settings_record
        self.cameras = cameras
        self.tick_rate_hz = tick_rate_hz

    def write(self, result: EpisodeResult) -> dict[str, Any]:
        """Write the files of a scored episode; its manifest entry (files relative to the root)."""
        spec, samples = result.spec, result.samples
        directory = episode_dir(spec.index)
        ep_dir = self.root / directory
        ep_dir.mkdir(parents=True, exist_ok=True)
        columns = frame_columns(result, self.settings.threshold_for(spec.instruction))
        table = frame_table(columns)
        write_parquet(ep_dir / "frames.parquet", table)
        write_csv(ep_dir / "frames.csv", table)
        write_progress_mcap(
            ep_dir / "progress.mcap",
            result.ticks,
            self.settings.success_consecutive,
            summary=result.summary,
            end_log_ns=spec.end_ns,
        )
        files = ["frames.parquet", "frames.csv", "progress.mcap"]
        if self.options.plot:
            self._plot(ep_dir / "plot.png", result)
            files.append("plot.png")
        if self.options.video:
            from topreward_ros.rendering.video import VIDEO_FILE, tick_pictures, write_video

            pictures = tick_pictures(samples, [t.result for t in result.ticks], self.settings.view_size)
            if write_video(ep_dir / VIDEO_FILE, pictures, self.tick_rate_hz):
                files.append(VIDEO_FILE)
        write_json_atomic(ep_dir / "curve.json", self.curve_record(result, columns))
        files.append("curve.json")
        return {
            "instruction": spec.instruction,
            "start_log_ns": spec.start_ns,
            "end_log_ns": spec.end_ns,
            "end_reason": spec.end_reason,
            "num_frames": result.num_frames,
            "num_samples": len(samples),
            "num_ticks": len(result.ticks),
            "stamps_not_increasing": self._per_camera(result.stamps_not_increasing, nonzero=True),
            "sync_misses": self._sync_misses(result),
            "result": result.summary.to_dict() if result.summary is not None else None,
            "files": [f"{directory}/{f}" for f in files],
        }

    def _per_camera(self, counts: dict[int, int], nonzero: bool) -> dict[str, int]:
        if nonzero:
            return {self.cameras[c]: n for c, n in sorted(counts.items())}
        return {topic: counts.get(c, 0) for c, topic in enumerate(self.cameras)}

    def _sync_misses(self, result: EpisodeResult) -> dict[str, int]:
        return {self.cameras[c]: n for c, n in enumerate(result.sync_misses) if c > 0}

    def curve_record(self, result: EpisodeResult, columns: dict[str, Any]) -> dict[str, Any]:
        spec, curve = result.spec, result.curve
        return {
            "episode_index": spec.episode_index,
            **spec.record,
            "instruction": spec.instruction,
            "start_log_ns": spec.start_ns,
            "end_log_ns": spec.end_ns,
            "end_reason": spec.end_reason,
            "num_frames": result.num_frames,
            "sample_stamps_ns": [int(s.stamp_ns) for s in result.samples],
            "offline": curve.to_dict(),
            "episode_success": bool(columns["episode_success"][0]) if len(result.samples) else False,
            "success_threshold": self.settings.threshold_for(spec.instruction),
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
                for t in result.ticks
            ],
            "result": result.summary.to_dict() if result.summary is not None else None,
            "bad_frames": result.bad_frames,
            "stamps_not_increasing": self._per_camera(result.stamps_not_increasing, nonzero=False),
            "sync_misses": self._sync_misses(result),
            "settings": self.settings_record,
        }

    def _plot(self, path: Path, result: EpisodeResult) -> None:
        from topreward_ros.rendering.plot import plot_curve

        samples, curve = result.samples, result.curve
        picks = np.unique(np.linspace(0, len(samples) - 1, min(PLOT_THUMBNAILS, len(samples))).round().astype(int))
        plot_curve(
            path,
            curve,
            thumbnails=[samples[i].image for i in picks],
            thumbnail_stamps_ns=[samples[i].stamp_ns for i in picks],
            title=f"episode {result.spec.index}: {result.spec.instruction}  [{curve.model_id}]",
        )


def frame_columns(result: EpisodeResult, success_threshold: float) -> dict[str, Any]:
    """The per-frame table of an episode: offline progress and reward, live values, verdict."""
    from topreward_ros.scoring.curve import dense_rewards

    samples, curve = result.samples, result.curve
    stamps = np.asarray(result.frame_stamps_ns, dtype=np.int64)
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
    live_progress, live_lp, live_success = live_columns(
        stamps, [(t.result.stamp_ns, t.result.progress, t.result.log_prob_true, t.result.success) for t in result.ticks]
    )
    episode_success = bool(curve.success_score > success_threshold)
    # Exactly the rows of the frames that became samples (one row per
    # sample), not every frame that shares a sample's stamp.
    sampled = np.zeros(n, dtype=bool)
    sampled[[result.kept_primary[int(s)] for s in sample_stamps]] = True
    return {
        "episode_index": np.full(n, result.spec.episode_index),
        "frame_index": np.arange(n),
        "timestamp": rel / NS_PER_S,
        "stamp_ns": stamps,
        "log_time_ns": np.asarray(result.frame_log_ns, dtype=np.int64),
        "sampled": sampled,
        "progress": progress,
        "reward": reward,
        "success": live_success,
        "live_progress": live_progress,
        "live_log_prob_true": live_lp,
        "episode_success": np.full(n, episode_success),
    }


def live_columns(
    stamps: np.ndarray, ticks: Sequence[tuple[int, float, float, bool]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The frame table's live columns from ticks ``(stamp_ns, progress, log_prob_true, success)``.

    Each frame carries the latest tick whose newest frame it is or follows
    (``live_progress``, ``live_log_prob_true``: NaN before the first;
    ``success``: false before it).
    """
    n = len(stamps)
    live_progress = np.full(n, np.nan)
    live_lp = np.full(n, np.nan)
    live_success = np.zeros(n, dtype=bool)
    for stamp_ns, progress, log_prob_true, success in ticks:  # in time order; later ones overwrite
        covered = stamps >= stamp_ns
        live_progress[covered] = progress
        live_lp[covered] = log_prob_true
        live_success[covered] = success
    return live_progress, live_lp, live_success


def unscored_record(result: EpisodeResult) -> tuple[str, dict[str, Any]]:
    """The manifest record of an episode that was not scored: ("empty" | "failure", record)."""
    spec = result.spec
    verdict = {"result": result.summary.to_dict()} if result.summary is not None else {}
    if result.status == "empty":
        return "empty", {
            "episode_index": spec.index,
            "instruction": spec.instruction,
            "reason": result.message,
            **verdict,
        }
    record: dict[str, Any] = {
        "episode_index": spec.index,
        "instruction": spec.instruction,
        "error": result.message,
        **verdict,
    }
    if result.status == "refused":
        # A refused episode's record names the interval left unscored.
        record.update(
            {
                "start_log_ns": spec.start_ns,
                "end_log_ns": spec.end_ns,
                "end_reason": spec.end_reason,
                "frames_not_scored": result.num_frames,
            }
        )
    return "failure", record


def write_combined_tables(manifest: Manifest, out_dir: Path, model_id: str, rabc_index: Any = None) -> None:
    """The combined outputs of ``out_dir``: every completed episode's rows.

    ``frames.parquet`` / ``frames.csv``, and the LeRobot RA-BC progress
    parquet, stamped with the model. ``rabc_index(table)`` gives the
    source's own frame ``index`` per row and extra metadata (None: the rows
    are counted across episodes).
    """
    from topreward_ros.lerobot.progress import PROGRESS_FILE, write_progress_parquet

    paths = [out_dir / episode_dir(i) / "frames.parquet" for i in sorted(manifest.episodes)]
    table = concat_frame_tables([p for p in paths if p.is_file()])
    write_parquet(out_dir / "frames.parquet", table)
    write_csv(out_dir / "frames.csv", table)
    index, metadata = rabc_index(table) if rabc_index is not None else (None, {})
    write_progress_parquet(out_dir / PROGRESS_FILE, table, model_id, index=index, extra_metadata=metadata or None)
