"""``topreward relabel``: new success thresholds applied to scored outputs, without the model.

Every threshold-dependent value of a ``topreward bag`` / ``topreward
lerobot`` output directory follows from the stored raw scores: the causal
progress and the success streak of each live tick (``curve.json`` ``live``),
the score made at the episode's end (``result``), and the offline curve's
success score. Relabelling replays those scores through the same
``CausalProgress`` and ``SuccessDetector`` the runner uses, with the new
threshold of each episode's instruction (``SuccessThresholds``), and
rewrites what depends on it:

* per episode: ``curve.json`` (``live`` progress and success,
  ``episode_success``, ``success_threshold``, ``result``, ``settings``),
  ``frames.parquet`` / ``frames.csv`` (``success``, ``live_progress``,
  ``episode_success``) and ``progress.mcap`` (TaskProgress progress,
  threshold and success; EpisodeSuccess where success now fires;
  EpisodeResult);
* at the top: ``frames.parquet`` / ``frames.csv`` and ``manifest.json``
  (each episode's ``result``, the settings' thresholds, a ``relabel``
  record). ``topreward_progress.parquet`` holds the offline curve's
  progress, which no threshold changes.

Each file is replaced atomically, and the manifest records each episode
once its files are in place: an interrupted run, run again with the same
thresholds, goes on where it stopped (redoing an episode gives the same
files, as everything is computed from the stored scores). ``plot.png``
draws no threshold; ``progress.mp4`` (``--video``) keeps the threshold it
was drawn with (its pictures need the frames: re-score to redraw it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from topreward_ros.episode.records import EpisodeSummary, TickResult
from topreward_ros.files.atomic import write_json_atomic
from topreward_ros.offline.manifest import MANIFEST_NAME, MANIFEST_VERSION
from topreward_ros.offline.outputs import live_columns
from topreward_ros.offline.progress_mcap import PROGRESS_TOPIC, write_progress_mcap
from topreward_ros.offline.runner import TimedTick
from topreward_ros.offline.tables import concat_frame_tables, frame_table, read_parquet, write_csv, write_parquet
from topreward_ros.scoring.progress import CausalProgress, SuccessDetector
from topreward_ros.scoring.stamps import NS_PER_S
from topreward_ros.scoring.thresholds import SuccessThresholds


class RelabelError(ValueError):
    """The directory is not a scored output, or it cannot be relabelled."""


@dataclass
class RelabelReport:
    """What a relabel run did."""

    episodes: int = 0
    skipped: int = 0  # relabelled by an earlier, interrupted run with the same thresholds
    unscored: int = 0  # empty, failed or refused episodes: only their record's threshold changes
    changed_verdicts: list[int] = field(default_factory=list)  # episodes whose success flipped


def settings_with(settings: dict[str, Any], thresholds: SuccessThresholds) -> dict[str, Any]:
    """A settings record with ``thresholds`` in it (no per-task key when there is no map)."""
    new = dict(settings)
    new["success_threshold"] = thresholds.default
    if thresholds.per_task:  # as OfflineSettings.record writes them
        new["task_thresholds"] = thresholds.task_map
    else:
        new.pop("task_thresholds", None)
    return new


def _replay(curve: dict[str, Any], threshold: float) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The live ticks and the episode result of ``curve`` judged at ``threshold``."""
    settings = curve.get("settings", {})
    progress = CausalProgress(threshold)
    detector = SuccessDetector(
        threshold,
        window=int(settings.get("success_window", 3)),
        consecutive=int(settings.get("success_consecutive", 2)),
    )
    ticks, last_progress = [], None
    for tick in curve["live"]:
        value = progress.update(tick["log_prob_true"])
        verdict = detector.update(tick["log_prob_true"])
        ticks.append(
            {
                **tick,
                "progress": value,
                "success_score": verdict.score,
                "success": verdict.success,
                "success_fired": verdict.fired,
            }
        )
        last_progress = value
    result = curve.get("result")
    if result is not None:
        result = dict(result)
        if result.get("scored_at_end") and result.get("log_prob_true") is not None:
            last_progress = progress.update(result["log_prob_true"])
            detector.update(result["log_prob_true"])
        result.update(progress=last_progress, success=bool(detector.fired), threshold=threshold)
    return ticks, result


def relabel_episode(
    root: Path, entry: dict[str, Any], thresholds: SuccessThresholds, settings: dict[str, Any]
) -> dict[str, Any]:
    """Rewrite one scored episode's files at its new threshold; its new manifest entry."""
    files = {Path(f).name: root / f for f in entry.get("files", [])}
    if "curve.json" not in files:
        raise RelabelError(f"episode files {sorted(files)} hold no curve.json")
    curve = json.loads(files["curve.json"].read_text())
    threshold = thresholds.for_instruction(curve["instruction"])
    ticks, result = _replay(curve, threshold)
    offline_score = (curve.get("offline") or {}).get("success_score")
    episode_success = bool(curve["sample_stamps_ns"]) and offline_score is not None and bool(offline_score > threshold)
    if "frames.parquet" in files:
        table = read_parquet(files["frames.parquet"])
        columns = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
        live_progress, live_lp, live_success = live_columns(
            columns["stamp_ns"], [(t["stamp_ns"], t["progress"], t["log_prob_true"], t["success"]) for t in ticks]
        )
        columns.update(
            live_progress=live_progress,
            live_log_prob_true=live_lp,
            success=live_success,
            episode_success=np.full(table.num_rows, episode_success),
        )
        new_table = frame_table(columns)
        write_parquet(files["frames.parquet"], new_table)
        if "frames.csv" in files:
            write_csv(files["frames.csv"], new_table)
    if "progress.mcap" in files:
        _rewrite_mcap(
            files["progress.mcap"],
            ticks,
            threshold,
            result,
            entry,
            int(curve.get("settings", {}).get("success_consecutive", 2)),
        )
    curve.update(
        live=ticks, episode_success=episode_success, success_threshold=threshold, result=result, settings=settings
    )
    write_json_atomic(files["curve.json"], curve)
    return {**entry, "result": result}


def _rewrite_mcap(
    path: Path,
    ticks: list[dict[str, Any]],
    threshold: float,
    result: dict[str, Any] | None,
    entry: dict[str, Any],
    consecutive: int,
) -> None:
    from topreward_ros.bag.reader import BagReader

    with BagReader(path) as reader:
        messages = [(m.log_time_ns, reader.deserialize(m)) for m in reader.messages([PROGRESS_TOPIC])]
    if len(messages) != len(ticks):
        raise RelabelError(
            f"{path} holds {len(messages)} TaskProgress messages, curve.json "
            f"{len(ticks)} ticks: the episode's files do not belong together"
        )

    def ns(stamp: Any) -> int:
        return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)

    timed = []
    for (log_ns, msg), tick in zip(messages, ticks):
        timed.append(
            TimedTick(
                log_ns,
                TickResult(
                    episode_id=msg.episode_id,
                    instruction=msg.instruction,
                    log_prob_true=msg.log_prob_true,
                    log_prob_false=msg.log_prob_false,
                    stamp_ns=ns(msg.header.stamp),
                    frame_id=msg.header.frame_id,
                    frame_stamps_ns=tuple(ns(s) for s in msg.frame_stamps),
                    progress=tick["progress"],
                    success_score=tick["success_score"],
                    success_threshold=threshold,
                    success=tick["success"],
                    success_fired=tick["success_fired"],
                    latency_s=float(msg.inference_latency),
                    model_id=msg.model_id,
                ),
            )
        )
    summary = EpisodeSummary.from_dict(result) if result is not None else None
    write_progress_mcap(path, timed, consecutive, summary=summary, end_log_ns=int(entry["end_log_ns"]))


def relabel(
    out_dir: Path, thresholds: SuccessThresholds, on_episode: Callable[[int, dict[str, Any]], None] | None = None
) -> RelabelReport:
    """Apply ``thresholds`` to every episode of ``out_dir`` (see the module doc)."""
    out_dir = Path(out_dir)
    path = out_dir / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
        version = manifest["version"]
        episodes = {int(k): v for k, v in manifest["episodes"].items()}
        old_settings = manifest["settings"]
    except FileNotFoundError as exc:
        raise RelabelError(
            f"{out_dir} holds no {MANIFEST_NAME}: not an output of topreward bag or topreward lerobot"
        ) from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RelabelError(f"{path} is unreadable: {exc}") from exc
    if version != MANIFEST_VERSION:
        raise RelabelError(f"{path} has manifest version {version}, this tool reads {MANIFEST_VERSION}")
    target = {"success_threshold": thresholds.default, "task_thresholds": thresholds.task_map}
    state = manifest.get("relabel") or {}
    done = set(state.get("done", [])) if state.get("to") == target and state.get("in_progress") else set()
    source = (
        state.get("from")
        if done
        else {
            "success_threshold": old_settings.get("success_threshold"),
            "task_thresholds": old_settings.get("task_thresholds", {}),
        }
    )
    settings = settings_with(old_settings, thresholds)
    manifest["relabel"] = {"in_progress": True, "from": source, "to": target, "done": sorted(done)}
    write_json_atomic(path, manifest)
    report = RelabelReport()
    for index in sorted(episodes):
        if index in done:
            report.skipped += 1
            continue
        entry = episodes[index]
        before = (entry.get("result") or {}).get("success")
        entry = relabel_episode(out_dir, entry, thresholds, settings)
        if before is not None and entry["result"] is not None and entry["result"]["success"] != before:
            report.changed_verdicts.append(index)
        manifest["episodes"][str(index)] = entry
        done.add(index)
        manifest["relabel"]["done"] = sorted(done)
        write_json_atomic(path, manifest)  # the episode's files are in place
        report.episodes += 1
        if on_episode is not None:
            on_episode(index, entry)
    for record in [*manifest.get("failures", []), *manifest.get("empty", [])]:
        if record.get("result") is not None:  # never scored: no success at any threshold
            record["result"]["threshold"] = thresholds.for_instruction(record.get("instruction", ""))
            report.unscored += 1
    tables = [out_dir / Path(episodes[i]["files"][0]).parent / "frames.parquet" for i in sorted(episodes)]
    combined = concat_frame_tables([p for p in tables if p.is_file()])
    write_parquet(out_dir / "frames.parquet", combined)
    write_csv(out_dir / "frames.csv", combined)
    manifest["settings"] = settings
    manifest["relabel"] = {"in_progress": False, "from": source, "to": target, "episodes": len(episodes)}
    write_json_atomic(path, manifest)
    return report
