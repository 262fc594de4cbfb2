"""Edges of the offline path: the timer's tick time, and a fleet's episode numbering.

A frame logged exactly at a tick's time belongs to the next tick.

The node's timer fires at ``tick_phase + k * period``; a frame that arrives
at that very instant is, in the bag's order of events, not yet in the window
when the tick runs. ``OfflineRunner`` fires every tick due at or before a
frame's log time before adding the frame, so a tick at T sees the frames
logged strictly before T. The tiny model scores the ticks for real.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.offline_run import tiny_scorer

from topreward_ros.episode.records import EpisodeSettings
from topreward_ros.offline.runner import OfflineRunner, RunnerOptions
from topreward_ros.offline.source import EpisodeSpec, SourceFrame

NS = 1_000_000_000
VIEW = 48


@pytest.fixture(scope="module")
def scorer(tiny_model_dir: Path):
    return tiny_scorer(tiny_model_dir, VIEW, torch_threads=1)


def frame(at_ns: int) -> SourceFrame:
    view = np.full((VIEW, VIEW, 3), (at_ns // (NS // 10)) * 20 % 256, np.uint8)
    return SourceFrame(0, at_ns, at_ns, f"/camera frame stamped {at_ns} ns", lambda size: (view, "camera"))


def test_a_frame_logged_at_a_ticks_time_is_left_to_the_next_tick(scorer) -> None:
    # 10 samples per second: every frame (0.2 s apart) is one the schedule wants.
    settings = EpisodeSettings(sample_fps=10.0, view_size=VIEW)
    runner = OfflineRunner(scorer, settings, RunnerOptions(tick_rate_hz=2.0, num_prefixes=2), ("/camera",))
    logged = [int(t * NS) for t in (0.1, 0.3, 0.5, 0.7, 1.0)]
    spec = EpisodeSpec(index=0, instruction="stack the cups", start_ns=0, end_ns=int(1.2 * NS), tick_phase_ns=0)
    try:
        result = runner.score(spec, [frame(t) for t in logged])
    finally:
        runner.close()
    ticks = {t.log_time_ns: t.result for t in result.ticks}
    assert sorted(ticks) == [NS // 2, NS]
    # The tick at 0.5 s: frames 0.1 and 0.3 s; the one logged at 0.5 s comes after it.
    assert (ticks[NS // 2].frames_used, ticks[NS // 2].stamp_ns) == (2, logged[1])
    # The tick at 1.0 s: 0.5 and 0.7 s added, 1.0 s not yet.
    assert (ticks[NS].frames_used, ticks[NS].stamp_ns) == (4, logged[3])


def test_a_bag_ending_in_a_failed_or_refused_episode_keeps_the_next_bags_offset() -> None:
    """The combined tables number each bag's episodes on from the previous bag's episode COUNT:
    every episode the recording holds, whatever became of it, so a dataset assembled from the
    bags in order lines up even when a bag's last episodes failed or were refused."""
    from topreward_ros.offline.fleet import InputJob, InputRun, bag_offsets
    from topreward_ros.offline.report import EpisodeOutcome, RunReport

    def run(name: str, statuses: list[str]) -> InputRun:
        report = RunReport(name, f"out/{name}", [EpisodeOutcome(i, "task", s) for i, s in enumerate(statuses)])
        return InputRun(InputJob(name, Path(name), Path("out") / name, object()), report)

    runs = [run("a", ["scored", "scored", "failed"]), run("b", ["scored", "refused"]), run("c", ["scored"])]
    assert [r.status for r in runs] == ["partial", "partial", "done"]
    assert bag_offsets(runs, 10) == [10, 13, 15]
