"""`topreward bag` end to end on real bags with the real tiny Qwen3-VL.

The checks compare the outputs with independent references: frame choice
with the schedule applied to the stamps the bag was written with, the
offline curve's last point with one reference forward (``scorer.score``) on
those frames, the live ticks with the TaskProgress messages read back from
the exported MCAP. Bad inputs (unknown encoding, missing instruction,
truncated or empty bag) must fail with a clear message and lose no
completed output; an interrupted run must resume without redoing episodes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from support.command_line import command_line
from support.offline_run import bag_options, score_bag, tiny_scorer

from topreward_ros.bag.reader import BagReader
from topreward_ros.commands.bag import EXIT_OK, EXIT_UNUSABLE, register
from topreward_ros.demo.scene import DEMO_SCENES, SceneSpec
from topreward_ros.demo.synthetic_bag import CameraSpec, write_episodes_bag
from topreward_ros.episode.cameras import to_rgb
from topreward_ros.episode.records import EpisodeSettings
from topreward_ros.offline.manifest import ManifestError
from topreward_ros.offline.progress_mcap import PROGRESS_TOPIC
from topreward_ros.offline.tables import FRAME_SCHEMA
from topreward_ros.scoring import prepare_view
from topreward_ros.scoring.schedule import sample_indices
from topreward_ros.sources.bag import BagSetupError

VIEW = 64
SCENES = (*DEMO_SCENES, SceneSpec("push the green block to the left", (40, 160, 60), 0.6, 0.3))
SETTINGS = EpisodeSettings(view_size=VIEW, success_threshold=-8.0)
CAMERA = "/camera/image_raw"


@pytest.fixture(scope="module")
def scorer(tiny_model_dir):
    return tiny_scorer(tiny_model_dir, VIEW)


def options(**kw) -> dict:
    return bag_options(CAMERA, **kw)


def mtimes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.glob("episode_*/*") if p.is_file()}


# -- the normal case -------------------------------------------------------------------------


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_every_episode_scored_with_outputs_matching_independent_references(tmp_path, scorer, storage):
    cams = (
        CameraSpec(CAMERA, "raw", "bgr8", rate_hz=10.0),
        CameraSpec("/camera/wrist/compressed", "compressed", rate_hz=15.0, offset_ns=9_000_000),
    )
    layout = write_episodes_bag(tmp_path / "bag", storage, SCENES, cams, duration_s=3.0)
    out = tmp_path / "out"
    opts = options(camera_topics=(CAMERA, "/camera/wrist/compressed"), episode_offset=10)
    report = score_bag(scorer, SETTINGS, opts, layout.path, out, progress=False)
    assert report.ok, report.summary()
    assert [e.status for e in report.episodes] == ["scored"] * 3

    combined = pq.read_table(out / "frames.parquet")
    assert combined.schema == FRAME_SCHEMA
    assert sorted(set(combined.column("episode_index").to_pylist())) == [10, 11, 12]
    for index, episode in enumerate(layout.episodes):
        ep_dir = out / f"episode_{index:04d}"
        record = json.loads((ep_dir / "curve.json").read_text())
        assert record["instruction"] == episode.instruction == SCENES[index].instruction
        # The frames the model saw are the schedule's choice from the written stamps.
        stamps = episode.primary_stamps_ns
        expected = [stamps[i] for i in sample_indices(stamps, SETTINGS.sample_fps)]
        assert record["sample_stamps_ns"] == expected
        # Per-frame table: one row per primary frame, keyed for a LeRobot join.
        table = pq.read_table(ep_dir / "frames.parquet").to_pydict()
        assert table["frame_index"] == list(range(len(stamps)))
        assert table["stamp_ns"] == stamps
        assert set(table["episode_index"]) == {10 + index}
        assert table["timestamp"][0] == 0.0
        assert np.allclose(table["timestamp"], (np.array(stamps) - stamps[0]) / 1e9, atol=1e-6)
        assert [s for s, k in zip(table["stamp_ns"], table["sampled"]) if k] == expected
        offline = record["offline"]
        assert max(offline["normalized"]) == 1.0 and min(offline["normalized"]) == 0.0
        assert all(0.0 <= p <= 1.0 for p in table["progress"])
        assert all(0.0 <= r <= 2.0 for r in table["reward"])
        # Live ticks: each saw a prefix of the episode's samples, newest last.
        live = record["live"]
        assert len(live) >= 3
        for tick in live:
            assert tick["frames_used"] <= len(expected)
            assert tick["stamp_ns"] == expected[tick["frames_used"] - 1]
        # The exported MCAP carries exactly those ticks as TaskProgress messages.
        with BagReader(ep_dir / "progress.mcap") as reader:
            assert reader.topics[PROGRESS_TOPIC].msgtype == "topreward_ros/msg/TaskProgress"
            msgs = [reader.deserialize(m) for m in reader.messages([PROGRESS_TOPIC])]
        assert [m.log_prob_true for m in msgs] == [t["log_prob_true"] for t in live]
        assert [m.frames_used for m in msgs] == [t["frames_used"] for t in live]
        assert [m.instruction for m in msgs] == [episode.instruction] * len(live)
    # The offline curve's full-episode point equals one reference forward on the
    # same frames, rebuilt here from the bag with the public converters.
    with BagReader(layout.path) as reader:
        frames = {}
        for m in reader.messages([CAMERA, "/camera/wrist/compressed"]):
            msg = reader.deserialize(m)
            stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            frames[(m.topic, stamp)] = prepare_view(to_rgb(msg), VIEW)
    record = json.loads((out / "episode_0002" / "curve.json").read_text())
    wrist_stamps = np.array(sorted(s for t, s in frames if t != CAMERA))
    views = []
    for stamp in record["sample_stamps_ns"]:
        nearest = int(wrist_stamps[np.argmin(np.abs(wrist_stamps - stamp))])
        views.append(np.concatenate([frames[(CAMERA, stamp)], frames[("/camera/wrist/compressed", nearest)]], axis=1))
    reference = scorer.score(views, record["sample_stamps_ns"], SCENES[2].instruction)
    assert record["offline"]["log_prob_true"][-1] == pytest.approx(reference.log_prob_true, abs=1e-4)


def test_reset_topic_and_fixed_instruction(tmp_path, scorer):
    layout = write_episodes_bag(
        tmp_path / "bag", "mcap", SCENES[:2], duration_s=2.0, reset_topic="/reset", reset_instead_of_instruction=True
    )
    report = score_bag(scorer, SETTINGS, options(reset_topic="/reset"), layout.path, tmp_path / "a", progress=False)
    assert [(e.status, e.instruction) for e in report.episodes] == [
        ("scored", SCENES[0].instruction),
        ("scored", SCENES[0].instruction),
    ]
    fixed = score_bag(
        scorer, SETTINGS, options(instruction="tidy the table"), layout.path, tmp_path / "b", progress=False
    )
    assert [(e.status, e.instruction) for e in fixed.episodes] == [("scored", "tidy the table")]
    assert fixed.episodes[0].num_frames == 2 * 20


# -- bad input ------------------------------------------------------------------------------


def test_episode_verdict_is_strict_at_a_threshold_equal_to_the_success_score(tmp_path, scorer):
    """``episode_success`` is ``success score > success_threshold``: equal is not success."""
    from dataclasses import replace

    layout = write_episodes_bag(tmp_path / "bag", "mcap", SCENES[:1], duration_s=1.5)
    opts = options(tick_rate_hz=0.5, num_prefixes=2)

    def verdict(threshold: float, name: str) -> tuple[float, bool, set[bool]]:
        out = tmp_path / name
        report = score_bag(
            scorer, replace(SETTINGS, success_threshold=threshold), opts, layout.path, out, progress=False
        )
        assert report.ok, report.summary()
        record = json.loads((out / "episode_0000" / "curve.json").read_text())
        column = pq.read_table(out / "episode_0000" / "frames.parquet").column("episode_success").to_pylist()
        return record["offline"]["success_score"], record["episode_success"], set(column)

    score, _, _ = verdict(-1e6, "first")
    # The same frames, the same scores: the threshold only moves the verdict.
    assert verdict(score, "at") == (score, False, {False})
    assert verdict(math.nextafter(score, -math.inf), "below") == (score, True, {True})


def test_unknown_encoding_fails_only_that_episode_with_the_reason(tmp_path, scorer):
    layout = write_episodes_bag(tmp_path / "bag", "sqlite3", SCENES, duration_s=2.0, bad_encoding_episodes=(1,))
    out = tmp_path / "out"
    report = score_bag(scorer, SETTINGS, options(), layout.path, out, progress=False)
    assert [e.status for e in report.episodes] == ["scored", "failed", "scored"]
    assert "x-unknown-16" in report.episodes[1].message
    assert not report.ok
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["episodes"]) == ["0", "2"]
    assert manifest["failures"][0]["episode_index"] == 1
    assert "x-unknown-16" in manifest["failures"][0]["error"]
    assert not (out / "episode_0001").exists()


def test_missing_instruction_and_empty_bag_are_refused_before_any_work(tmp_path, scorer):
    layout = write_episodes_bag(tmp_path / "bag", "mcap", SCENES[:1], duration_s=1.0, instruction_topic=None)
    with pytest.raises(BagSetupError, match="missing instruction.*--instruction"):
        score_bag(scorer, SETTINGS, options(), layout.path, tmp_path / "out")
    with pytest.raises(BagSetupError, match="camera topic /nope is not in the bag.*/camera/image_raw"):
        score_bag(scorer, SETTINGS, options(camera_topics=("/nope",), instruction="x"), layout.path, tmp_path / "out")
    empty = tmp_path / "empty"
    from topreward_ros.bag.writer import BagWriter

    with BagWriter(empty, "mcap"):
        pass
    with pytest.raises(Exception, match="empty"):
        score_bag(scorer, SETTINGS, options(), empty, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_exit_codes_and_messages(tmp_path, tiny_model_dir, capsys):
    import argparse

    layout = write_episodes_bag(tmp_path / "bag", "mcap", SCENES[:1], duration_s=1.0)
    parser = argparse.ArgumentParser(prog="topreward")
    register(parser.add_subparsers())

    def run(*argv: str) -> int:
        args = parser.parse_args(["bag", *argv])
        return args.func(args)

    common = command_line("--model {} --local-files-only --view-size 64 -q", tiny_model_dir)
    assert run(str(tmp_path / "nothing"), "-o", str(tmp_path / "o"), *common) == EXIT_UNUSABLE
    assert "no such file" in capsys.readouterr().err
    assert run(str(layout.path), "-o", str(tmp_path / "o"), "--instruction-topic", "/task", *common) == EXIT_UNUSABLE
    assert "missing instruction: the bag has no topic /task" in capsys.readouterr().err
    assert (
        run(*command_line("{} -o {} --model {} --view-size 64 -q", layout.path, tmp_path / "o", tmp_path))
        == EXIT_UNUSABLE
    )
    assert "cannot load the configuration of model" in capsys.readouterr().err
    assert run(str(layout.path), "-o", str(tmp_path / "o"), "--no-plot", *common) == EXIT_OK
    assert "1 scored" in capsys.readouterr().out


# -- nothing lost: damage, interruption, resume ------------------------------------------------


def test_truncated_bag_keeps_completed_episodes_and_rerun_redoes_none(tmp_path, scorer):
    cams = (CameraSpec(CAMERA, width=160, height=120),)
    layout = write_episodes_bag(tmp_path / "bag", "mcap", SCENES, cams, duration_s=2.0)
    (mcap_file,) = layout.path.glob("*.mcap")
    data = mcap_file.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: int(len(data) * 0.75)])
    out = tmp_path / "out"
    report = score_bag(scorer, SETTINGS, options(), cut, out, progress=False)
    assert "truncated" in (report.read_error or "")
    statuses = [e.status for e in report.episodes]
    assert statuses[0] == "scored" and statuses[-1] == "failed"
    assert "unreadable before the episode ended" in report.episodes[-1].message
    done = [e.index for e in report.episodes if e.status == "scored"]
    before = mtimes(out)
    assert before
    again = score_bag(scorer, SETTINGS, options(), cut, out, progress=False)
    assert [e.index for e in again.episodes if e.status == "skipped"] == done
    assert not again.by_status("scored")
    assert mtimes(out) == before


def test_stopped_run_resumes_without_redoing_and_refuses_other_settings(tmp_path, scorer):
    layout = write_episodes_bag(tmp_path / "bag", "mcap", SCENES, duration_s=2.0)
    out = tmp_path / "out"
    first = score_bag(scorer, SETTINGS, options(max_episodes=1), layout.path, out, progress=False)
    assert first.stopped_early and [e.status for e in first.episodes] == ["scored"]
    before = mtimes(out)
    rest = score_bag(scorer, SETTINGS, options(), layout.path, out, progress=False)
    assert [e.status for e in rest.episodes] == ["skipped", "scored", "scored"]
    after = mtimes(out)
    assert {k: after[k] for k in before} == before
    assert pq.read_table(out / "frames.parquet").num_rows == 3 * 20
    other = EpisodeSettings(view_size=VIEW, success_threshold=-8.0, sample_fps=1.0)
    with pytest.raises(ManifestError, match="sample_fps: 2.0 -> 1.0"):
        score_bag(scorer, other, options(), layout.path, out, progress=False)
    forced = score_bag(scorer, other, options(), layout.path, out, force=True, progress=False)
    assert [e.status for e in forced.episodes] == ["scored"] * 3
