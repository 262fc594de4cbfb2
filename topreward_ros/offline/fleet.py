"""Scoring many inputs in one run: the local engine over inputs and the fleet summary.

``topreward bag`` with several inputs scores each bag exactly as a one-bag
run would, into ``OUT_DIR/<bag name>/`` (its own manifest, episode folders
and tables; see ``offline.engine``), so each input resumes on its own. On
top, ``OUT_DIR/runs.json`` says what happened to every input and
``OUT_DIR/frames.parquet`` / ``frames.csv`` hold every input's rows with
distinct episode numbers.

Episode numbers of the combined table: inputs are taken in order and each
input's episodes are numbered on from the previous input's last one, i.e.
input k gets the ``--episode-offset`` that its first episode would need in
a dataset assembled from the bags in that order (``runs.json`` lists it per
input). An input's episode count is known once its walk has reached its end
(all episodes the recording holds, scored or not); the combined table
covers the inputs up to the first one whose count is not known yet (a run
stopped early) and says so. Two extra columns name the origin of each row:
``bag`` (its output name) and ``bag_episode_index`` (the episode number
within its input, as in the per-input tables).

``LocalEngine`` loads nothing itself: it runs each input through
``offline.engine.run_local`` with the one loaded model; ``topreward_ros.scale``
runs the same jobs on Ray, per episode, and hands back the same
``InputRun`` records, so the summary is one code path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from topreward_ros.files.atomic import write_json_atomic
from topreward_ros.offline.engine import EpisodeExtra, EpisodeHook, OfflineSettings, run_local
from topreward_ros.offline.manifest import ManifestError
from topreward_ros.offline.report import RunReport
from topreward_ros.offline.source import EpisodeSource, SourceError
from topreward_ros.offline.tables import FRAME_SCHEMA, read_parquet, write_csv, write_parquet
from topreward_ros.scoring.backends.protocol import ScoringBackend

RUNS_NAME = "runs.json"
RUNS_VERSION = 1


@dataclass
class InputJob:
    """One input of the plan: its name, where it goes and its source (None: unusable)."""

    name: str
    path: Path
    out_dir: Path
    source: EpisodeSource | None
    error: str | None = None  # the input cannot be used with these options


@dataclass
class InputRun:
    """What a run did to one input (from either engine)."""

    job: InputJob
    report: RunReport | None = None
    error: str | None = None  # unusable, or the replicas scoring it died
    started: bool = True

    @property
    def status(self) -> str:
        """unusable, pending, incomplete (re-run to continue), partial (failures), done."""
        if self.job.error is not None or (self.started and self.report is None):
            return "unusable"
        if not self.started:
            return "pending"
        assert self.report is not None
        if self.error or self.report.stopped_early or self.report.interrupted:
            return "incomplete"
        return "done" if self.report.ok else "partial"

    @property
    def episode_count(self) -> int | None:
        """Episodes the recording holds (every status) once its end was reached; unusable: 0."""
        if self.job.error is not None:
            return 0
        if self.status not in ("done", "partial") or self.report is None:
            return None
        return max((e.index for e in self.report.episodes), default=-1) + 1

    @property
    def ok(self) -> bool:
        """Done, or stopped by --max-episodes as asked (a re-run continues)."""
        if self.status == "done":
            return True
        return (
            self.status == "incomplete"
            and self.error is None
            and self.report is not None
            and self.report.stopped_early
            and not self.report.interrupted
        )


class LocalEngine:
    """The in-process engine: one loaded model, the inputs one after another.

    ``RayEngine`` (``topreward_ros.scale``) has the same ``run``.
    """

    def __init__(self, scorer: ScoringBackend, progress: bool = True) -> None:
        self.scorer = scorer
        self.progress = progress

    def run(
        self,
        jobs: Sequence[InputJob],
        settings: OfflineSettings,
        force: bool = False,
        extra: EpisodeExtra | None = None,
        on_episode: EpisodeHook | None = None,
        on_input_done: Callable[[InputRun], None] | None = None,
    ) -> list[InputRun]:
        """Score each input with ``run_local``; one ``InputRun`` per job, in job order."""
        runs: list[InputRun] = []
        interrupted = False
        for job in jobs:
            if interrupted:
                runs.append(InputRun(job, started=False))
                continue
            if job.error is not None:
                run = InputRun(job, error=job.error)
            else:
                assert job.source is not None
                try:
                    report = run_local(
                        self.scorer,
                        settings,
                        job.source,
                        job.out_dir,
                        force=force,
                        progress=self.progress,
                        extra=extra,
                        on_episode=on_episode,
                    )
                    run = InputRun(job, report)
                    interrupted = report.interrupted
                except (SourceError, ManifestError) as exc:
                    run = InputRun(job, error=str(exc))
            runs.append(run)
            if on_input_done is not None:
                on_input_done(run)
        return runs


# -- the fleet summary -------------------------------------------------------------------


def bag_offsets(runs: Sequence[InputRun], base: int) -> list[int | None]:
    """Each bag's first episode number in the combined table (None once a count is unknown)."""
    offsets: list[int | None] = []
    next_offset: int | None = base
    for run in runs:
        offsets.append(next_offset)
        count = run.episode_count
        next_offset = None if next_offset is None or count is None else next_offset + count
    return offsets


def _run_record(run: InputRun, offset: int | None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "name": run.job.name,
        "path": str(run.job.path),
        "output": run.job.name,
        "status": run.status,
        "episodes": run.episode_count,
        "episode_offset": offset if run.episode_count is not None else None,
    }
    if run.report is not None:
        counts = {s: len(run.report.by_status(s)) for s in ("scored", "skipped", "empty", "failed")}
        record["this_run"] = counts
        record["failures"] = [{"episode_index": e.index, "error": e.message} for e in run.report.by_status("failed")]
        if run.report.read_error:
            record["read_error"] = run.report.read_error
        record["notes"] = list(run.report.notes)
    if run.error or run.job.error:
        record["error"] = run.error or run.job.error
    return record


def combined_table(runs: Sequence[InputRun], offsets: Sequence[int | None], base: int) -> tuple[pa.Table, int]:
    """Every bag's rows renumbered into one table; returns it and the bags it covers."""
    tables = []
    covered = 0
    for run, offset in zip(runs, offsets):
        if offset is None or run.episode_count is None:
            break
        covered += 1
        path = run.job.out_dir / "frames.parquet"
        if run.job.error is not None or not path.is_file():
            continue
        table = read_parquet(path)
        if table.num_rows == 0:
            continue
        within = table.column("episode_index").to_numpy() - base
        table = table.set_column(
            table.schema.get_field_index("episode_index"), "episode_index", pa.array(within + offset, type=pa.int64())
        )
        table = table.append_column("bag", pa.array([run.job.name] * table.num_rows, type=pa.string()))
        table = table.append_column("bag_episode_index", pa.array(np.asarray(within), type=pa.int64()))
        tables.append(table)
    if not tables:
        empty = FRAME_SCHEMA.empty_table()
        empty = empty.append_column("bag", pa.array([], type=pa.string()))
        return empty.append_column("bag_episode_index", pa.array([], type=pa.int64())), covered
    return pa.concat_tables(tables), covered


def write_summary(
    out_dir: Path, runs: Sequence[InputRun], base_offset: int, inputs: Sequence[str], tables: bool = True
) -> dict[str, Any]:
    """Write ``runs.json`` (and, with ``tables``, the combined frame tables) atomically."""
    out_dir = Path(out_dir)
    offsets = bag_offsets(runs, base_offset)
    summary: dict[str, Any] = {
        "version": RUNS_VERSION,
        "inputs": list(inputs),
        "episode_offset": base_offset,
        "bags": [_run_record(r, o) for r, o in zip(runs, offsets)],
    }
    if tables:
        table, covered = combined_table(runs, offsets, base_offset)
        rows = table.num_rows
        write_parquet(out_dir / "frames.parquet", table)
        write_csv(out_dir / "frames.csv", table)
        summary["combined"] = {
            "bags": covered,
            "complete": covered == len(runs),
            "rows": rows,
            "episodes": len(set(table.column("episode_index").to_pylist())) if rows else 0,
        }
        if covered < len(runs):
            summary["combined"]["waiting_for"] = runs[covered].job.name
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / RUNS_NAME, summary)
    return summary


@dataclass
class FleetResult:
    """Runs and the summary, with the exit status of the whole command."""

    runs: list[InputRun]
    summary: dict[str, Any] = field(default_factory=dict)
    kind: str = "bag"  # what the inputs are, for the text

    @property
    def interrupted(self) -> bool:
        return any(r.report is not None and r.report.interrupted for r in self.runs)

    @property
    def nothing_usable(self) -> bool:
        return all(r.job.error is not None for r in self.runs)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.runs)

    def text(self) -> str:
        kind = self.kind
        lines = []
        for run in self.runs:
            if run.report is not None:
                lines.append(run.report.summary())
            if run.error or run.job.error:
                lines.append(
                    f"{kind} {run.job.path} -> {run.job.out_dir}: {run.status.upper()}: {run.error or run.job.error}"
                )
            elif not run.started:
                lines.append(f"{kind} {run.job.path}: not scored in this run")
        counts: dict[str, int] = {}
        for run in self.runs:
            counts[run.status] = counts.get(run.status, 0) + 1
        lines.append(f"{kind}s: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        return "\n".join(lines)
