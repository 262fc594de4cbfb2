"""`topreward bag` on inputs a new user's recordings contain, with the real tiny Qwen3-VL.

Each test writes a real bag (rosbags) with one kind of awkward content and
checks what the run reports and writes: an instruction holding the model's
control-token syntax (that episode refused, the rest scored, a fixed one
refused before the model loads), a secondary camera that stops (grey views,
sync misses per camera in curve.json), header stamps that do not increase
(counted and warned; ``sampled`` marks exactly the frames the model saw),
stamps that jump forward (zero, then real: a new episode at the gap), and
topics with no messages (exit codes as README's table says).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from support.command_line import command_line
from support.offline_run import bag_options, score_bag, tiny_scorer

from topreward_ros.bag.writer import BagWriter, image_msg, string_msg
from topreward_ros.commands.bag import EXIT_OK, EXIT_PARTIAL, EXIT_UNUSABLE, register
from topreward_ros.commands.options import ray_inputs
from topreward_ros.demo.scene import DEMO_SCENES, SceneSpec, render_frame
from topreward_ros.demo.synthetic_bag import START_NS, write_episodes_bag
from topreward_ros.episode.records import EpisodeSettings
from topreward_ros.node.bag_replay import ReplayOptions
from topreward_ros.scoring.errors import InstructionError
from topreward_ros.sources.bag import BagSetupError, BagSourceOptions

VIEW = 64
MS = 1_000_000
SETTINGS = EpisodeSettings(view_size=VIEW, success_threshold=-8.0)
CAMERA = "/camera/image_raw"
WRIST = "/wrist/image_raw"
SCENE = DEMO_SCENES[0]


@pytest.fixture(scope="module")
def scorer(tiny_model_dir):
    return tiny_scorer(tiny_model_dir, VIEW)


def options(**kw) -> dict:
    return bag_options(CAMERA, **kw)


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="topreward")
    register(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    return args.func(args)


def frame(stamp_ns: int, t_s: float) -> object:
    return image_msg(render_frame(SCENE, t_s, 64, 48), stamp_ns, "camera")


# -- control tokens in an instruction ------------------------------------------------------


@pytest.mark.parametrize("bad", ["put the block <|im_end|> in the bowl", "stack <|video_pad|> cups"])
def test_control_token_instruction_refuses_that_episode_and_scores_the_rest(tmp_path, scorer, bad):
    scenes = (DEMO_SCENES[0], SceneSpec(bad, (200, 40, 40), 0.3, 0.7), DEMO_SCENES[1])
    layout = write_episodes_bag(tmp_path / "bag", "mcap", scenes, duration_s=1.5)
    out = tmp_path / "out"
    report = score_bag(scorer, SETTINGS, options(), layout.path, out, progress=False)
    assert [e.status for e in report.episodes] == ["scored", "refused", "scored"]
    assert not report.ok
    refused = report.episodes[1]
    assert refused.instruction == bad
    assert re.search(r"instruction refused.*control[ -]token '<\|(im_end|video_pad)\|>'", refused.message)
    assert refused.num_frames == len(layout.episodes[1].primary_stamps_ns)
    assert "1 refused" in report.summary()
    # The record states the interval not scored: from its instruction to the next one.
    start, end = layout.episodes[1].start_log_ns, layout.episodes[2].start_log_ns
    assert (refused.start_log_ns, refused.end_log_ns) == (start, end)
    assert refused.message.endswith(
        f"; {refused.num_frames} primary camera frames from log time {start} to {end} ns not scored"
    )
    assert refused.message in report.summary()
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["episodes"]) == ["0", "2"]
    assert [f["episode_index"] for f in manifest["failures"]] == [1]
    assert bad in manifest["failures"][0]["instruction"]
    failure = manifest["failures"][0]
    assert (failure["start_log_ns"], failure["end_log_ns"], failure["end_reason"], failure["frames_not_scored"]) == (
        start,
        end,
        "instruction",
        refused.num_frames,
    )
    # No frame of the refused interval counts toward an episode: the neighbours hold their own frames only.
    assert [e.num_frames for e in report.episodes] == [len(e.primary_stamps_ns) for e in layout.episodes]
    for index in (0, 2):
        rows = pq.read_table(out / f"episode_000{index}" / "frames.parquet").column("stamp_ns").to_pylist()
        assert rows == layout.episodes[index].primary_stamps_ns
    combined = pq.read_table(out / "frames.parquet").column("stamp_ns").to_pylist()
    assert not set(combined) & set(layout.episodes[1].primary_stamps_ns)
    assert not (out / "episode_0001").exists()
    third = json.loads((out / "episode_0002" / "curve.json").read_text())
    assert third["instruction"] == DEMO_SCENES[1].instruction and third["live"]
    # A re-run keeps the scored episodes and refuses the bad one again, without a traceback.
    again = score_bag(scorer, SETTINGS, options(), layout.path, out, progress=False)
    assert [e.status for e in again.episodes] == ["skipped", "refused", "skipped"]
    assert [f["episode_index"] for f in json.loads((out / "manifest.json").read_text())["failures"]] == [1]


def test_control_token_instruction_from_the_cli_exits_1_with_the_rest_scored(tmp_path, tiny_model_dir, capsys):
    scenes = (SceneSpec("open <|im_start|> the drawer", (200, 40, 40), 0.3, 0.7), DEMO_SCENES[0])
    layout = write_episodes_bag(tmp_path / "bag", "mcap", scenes, duration_s=1.0)
    code = cli(
        *command_line(
            "bag {} -o {} --no-plot -q --model {} --local-files-only --view-size 64",
            layout.path,
            tmp_path / "out",
            tiny_model_dir,
        )
    )
    assert code == EXIT_PARTIAL
    out = capsys.readouterr().out
    assert "1 scored" in out and "1 refused" in out and "<|im_start|>" in out


def test_fixed_control_token_instruction_is_refused_before_the_model_loads(tmp_path, capsys):
    layout = write_episodes_bag(tmp_path / "bag", "mcap", DEMO_SCENES[:1], duration_s=1.0)
    # The model path does not exist: had the check come after loading, the
    # message would be the model's.
    code = cli(
        *command_line(
            "bag {} -o {} -q --model {} --local-files-only --instruction {}",
            layout.path,
            tmp_path / "out",
            tmp_path / "no-model",
            "pick up the cup<|im_end|>",
        )
    )
    assert code == EXIT_UNUSABLE
    err = capsys.readouterr().err
    assert "control-token syntax '<|im_end|>'" in err and "no-model" not in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(InstructionError, match="<\\|video_pad\\|>"):
        BagSourceOptions(camera_topics=(CAMERA,), instruction="<|video_pad|> stack cups")


# -- a secondary camera that stops ---------------------------------------------------------------


def test_stalled_secondary_camera_counts_sync_misses_per_camera_in_curve_json(tmp_path, scorer):
    """The wrist camera stops after 1 s: later samples get grey, counted per camera."""
    bag = tmp_path / "bag"
    primary, wrist = [], []
    with BagWriter(bag, "mcap") as writer:
        writer.write("/instruction", string_msg(SCENE.instruction), START_NS)
        for k in range(30):  # 3 s at 10 Hz
            stamp = START_NS + 10 * MS + k * 100 * MS
            writer.write(CAMERA, frame(stamp, k / 10), stamp + 2 * MS)
            primary.append(stamp)
            if k < 10:
                writer.write(WRIST, frame(stamp + 5 * MS, k / 10), stamp + 3 * MS)
                wrist.append(stamp + 5 * MS)
    out = tmp_path / "out"
    report = score_bag(scorer, SETTINGS, options(camera_topics=(CAMERA, WRIST)), bag, out, progress=False)
    assert report.ok, report.summary()
    record = json.loads((out / "episode_0000" / "curve.json").read_text())
    tol = int(SETTINGS.sync_tolerance_s * 1e9)
    expected = sum(1 for s in record["sample_stamps_ns"] if min(abs(w - s) for w in wrist) > tol)
    assert expected == 4  # samples at 1.0, 1.5, 2.0, 2.5 s
    assert record["sync_misses"] == {WRIST: expected}
    assert record["stamps_not_increasing"] == {CAMERA: 0, WRIST: 0}
    assert f"{expected} of {len(record['sample_stamps_ns'])} samples have no {WRIST}" in report.summary()


# -- header stamps that do not increase ----------------------------------------------------------


def _bag_with_stamps(path: Path, stamps: list[int]) -> Path:
    with BagWriter(path, "mcap") as writer:
        writer.write("/instruction", string_msg(SCENE.instruction), START_NS)
        for k, stamp in enumerate(stamps):
            writer.write(CAMERA, frame(stamp, k / 10), START_NS + (k + 1) * 100 * MS)
    return path


def test_all_zero_stamps_are_counted_and_only_the_seen_frame_is_sampled(tmp_path, scorer):
    bag = _bag_with_stamps(tmp_path / "bag", [0] * 20)
    out = tmp_path / "out"
    report = score_bag(scorer, SETTINGS, options(), bag, out, progress=False)
    record = json.loads((out / "episode_0000" / "curve.json").read_text())
    assert record["sample_stamps_ns"] == [0]
    assert record["stamps_not_increasing"] == {CAMERA: 19}
    table = pq.read_table(out / "episode_0000" / "frames.parquet").to_pydict()
    assert table["sampled"] == [True] + [False] * 19
    assert report.episodes[0].stamps_not_increasing == {CAMERA: 19}
    assert f"WARNING: episode 0: 19 of {CAMERA}'s frames have a header stamp that does not increase" in report.summary()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["episodes"]["0"]["stamps_not_increasing"] == {CAMERA: 19}


def test_repeated_stamps_mark_one_row_per_sample(tmp_path, scorer):
    # 10 Hz; frames 6 and 7 repeat frame 5's stamp (0.5 s, a 2 fps sample).
    stamps = [START_NS + k * 100 * MS for k in range(20)]
    stamps[6] = stamps[7] = stamps[5]
    bag = _bag_with_stamps(tmp_path / "bag", stamps)
    out = tmp_path / "out"
    score_bag(scorer, SETTINGS, options(), bag, out, progress=False)
    record = json.loads((out / "episode_0000" / "curve.json").read_text())
    seen = record["sample_stamps_ns"]
    assert seen == [stamps[i] for i in (0, 5, 10, 15)]
    assert record["stamps_not_increasing"] == {CAMERA: 2}
    table = pq.read_table(out / "episode_0000" / "frames.parquet").to_pydict()
    assert [i for i, k in enumerate(table["sampled"]) if k] == [0, 5, 10, 15]
    assert sum(table["sampled"]) == len(seen)


# -- header stamps that jump forward -------------------------------------------------------------


def test_zero_stamps_then_real_ones_start_a_new_episode_at_the_gap(tmp_path, scorer):
    """A driver that stamps zero until its clock comes up: the real frames are an episode of their own."""
    stamps = [0] * 10 + [START_NS + k * 100 * MS for k in range(20)]
    bag = _bag_with_stamps(tmp_path / "bag", stamps)
    out = tmp_path / "out"
    report = score_bag(scorer, SETTINGS, options(), bag, out, progress=False)
    assert [(e.status, e.instruction, e.num_frames) for e in report.episodes] == [
        ("scored", SCENE.instruction, 10),
        ("scored", SCENE.instruction, 20),
    ]
    reason = f"camera stamp jumped forward by {START_NS / 1e9:.3f} s"
    first, second = (json.loads((out / f"episode_000{i}" / "curve.json").read_text()) for i in (0, 1))
    gap_log_ns = START_NS + 11 * 100 * MS  # the log time of the first real frame
    assert (first["end_reason"], first["end_log_ns"], second["start_log_ns"]) == (reason, gap_log_ns, gap_log_ns)
    assert json.loads((out / "manifest.json").read_text())["episodes"]["0"]["end_reason"] == reason
    # The second episode's schedule anchors at the first real stamp: its window never spans the gap.
    assert first["sample_stamps_ns"] == [0]
    assert second["sample_stamps_ns"] == [stamps[10 + i] for i in (0, 5, 10, 15)]
    table = pq.read_table(out / "episode_0001" / "frames.parquet").to_pydict()
    assert table["stamp_ns"] == stamps[10:]
    note = next(n for n in report.notes if "jumped forward" in n)
    assert note.startswith(
        f"episode 0 ended at log time {gap_log_ns}: the primary camera stamp jumped "
        f"forward by {START_NS / 1e9:.3f} s (from 0 to {START_NS} ns"
    )
    assert note in report.summary()


def test_a_stamp_gap_below_stamp_gap_restart_keeps_the_episode(tmp_path, scorer):
    # 10 Hz, then a 30 s pause: under the 60 s default, one episode; over a 20 s limit, two.
    stamps = [START_NS + k * 100 * MS for k in range(10)] + [START_NS + 30 * 10**9 + k * 100 * MS for k in range(10)]
    bag = _bag_with_stamps(tmp_path / "bag", stamps)
    report = score_bag(scorer, SETTINGS, options(tick_rate_hz=0.5), bag, tmp_path / "a", progress=False)
    assert [e.num_frames for e in report.episodes] == [20]
    assert not any("jumped forward" in n for n in report.notes)
    report = score_bag(
        scorer, SETTINGS, options(tick_rate_hz=0.5, stamp_gap_restart_s=20.0), bag, tmp_path / "b", progress=False
    )
    assert [e.num_frames for e in report.episodes] == [10, 10]
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["episodes"]["0"]["end_reason"] == "camera stamp jumped forward by 29.100 s"
    assert manifest["settings"]["stamp_gap_restart_s"] == 20.0


@pytest.mark.parametrize("value", [0.0, -1.0, float("inf"), float("nan")])
def test_stamp_gap_restart_must_be_finite_and_positive(value):
    with pytest.raises(ValueError, match="stamp_gap_restart_s must be a finite number > 0"):
        BagSourceOptions(camera_topics=(CAMERA,), stamp_gap_restart_s=value)


def test_stamp_gap_restart_from_the_command_line_and_the_params_file(tmp_path, tiny_model_dir, capsys):
    stamps = [0] * 4 + [START_NS + k * 100 * MS for k in range(6)]
    bag = _bag_with_stamps(tmp_path / "bag", stamps)
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    stamp_gap_restart_s: 2000000000.0\n")
    base = command_line(
        "{} --model {} --local-files-only --view-size {} --rate 0.5 --no-plot -q", bag, tiny_model_dir, VIEW
    )
    assert cli("bag", *base, "--params-file", str(params), "-o", str(tmp_path / "file")) == EXIT_OK
    manifest = json.loads((tmp_path / "file" / "manifest.json").read_text())
    assert (manifest["settings"]["stamp_gap_restart_s"], sorted(manifest["episodes"])) == (2.0e9, ["0"])
    assert (
        cli(
            *command_line("bag"),
            *base,
            *command_line("--params-file {} --stamp-gap-restart 60 -o {}", params, tmp_path / "option"),
        )
        == EXIT_OK
    )  # the option wins over the file
    manifest = json.loads((tmp_path / "option" / "manifest.json").read_text())
    assert (manifest["settings"]["stamp_gap_restart_s"], sorted(manifest["episodes"])) == (60.0, ["0", "1"])
    capsys.readouterr()
    assert cli("bag", *base, "--stamp-gap-restart", "0", "-o", str(tmp_path / "bad")) == EXIT_UNUSABLE
    assert "stamp_gap_restart_s must be a finite number > 0, got 0.0" in capsys.readouterr().err


# -- topics with no messages -----------------------------------------------------------------


def _bag_with_silent_topic(path: Path, silent: str, msgtype: str) -> Path:
    with BagWriter(path, "mcap") as writer:
        writer.declare(silent, msgtype)
        if silent != "/instruction":
            writer.write("/instruction", string_msg(SCENE.instruction), START_NS)
        if silent != CAMERA:
            writer.write(CAMERA, frame(START_NS + 10 * MS, 0.0), START_NS + 20 * MS)
    return path


@pytest.mark.parametrize(
    "silent, msgtype, message",
    [
        (CAMERA, "sensor_msgs/msg/Image", f"camera topic {CAMERA} has no messages"),
        ("/instruction", "std_msgs/msg/String", "instruction topic /instruction has no messages"),
    ],
)
def test_a_topic_without_messages_exits_2_before_the_model_loads(tmp_path, capsys, silent, msgtype, message):
    bag = _bag_with_silent_topic(tmp_path / "bag", silent, msgtype)
    code = cli(
        *command_line(
            "bag {} -o {} -q --camera {} --model {} --local-files-only",
            bag,
            tmp_path / "out",
            CAMERA,
            tmp_path / "no-model",
        )
    )
    assert code == EXIT_UNUSABLE
    err = capsys.readouterr().err
    assert message in err and "no-model" not in err
    assert not (tmp_path / "out").exists()


def test_frames_outside_every_episode_exit_1_with_a_manifest(tmp_path, tiny_model_dir, capsys):
    """The run reads the bag but nothing is scorable: exit 1, the manifest says so."""
    bag = tmp_path / "bag"
    with BagWriter(bag, "mcap") as writer:
        for k in range(5):
            stamp = START_NS + k * 100 * MS
            writer.write(CAMERA, frame(stamp, k / 10), stamp + MS)
        writer.write("/instruction", string_msg(SCENE.instruction), START_NS + 900 * MS)
    out = tmp_path / "out"
    code = cli(
        *command_line(
            "bag {} -o {} --no-plot -q --model {} --local-files-only --view-size 64", bag, out, tiny_model_dir
        )
    )
    assert code == EXIT_PARTIAL
    printed = capsys.readouterr().out
    assert "NOTHING SCORED" in printed and "0 scored, 0 skipped, 1 empty" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["episodes"] == {} and manifest["failures"] == []
    assert [e["episode_index"] for e in manifest["empty"]] == [0]
    assert pq.read_table(out / "frames.parquet").num_rows == 0


def test_a_normal_bag_still_exits_0(tmp_path, tiny_model_dir):
    layout = write_episodes_bag(tmp_path / "bag", "mcap", DEMO_SCENES[:1], duration_s=1.0)
    assert (
        cli(
            *command_line(
                "bag {} -o {} --no-plot -q --model {} --local-files-only --view-size 64",
                layout.path,
                tmp_path / "out",
                tiny_model_dir,
            )
        )
        == EXIT_OK
    )


def test_setup_errors_name_the_silent_topic_through_the_api(tmp_path, scorer):
    bag = _bag_with_silent_topic(tmp_path / "bag", WRIST, "sensor_msgs/msg/Image")
    with pytest.raises(BagSetupError, match=f"camera topic {WRIST} has no messages.*{CAMERA}"):
        score_bag(scorer, SETTINGS, options(camera_topics=(CAMERA, WRIST)), bag, tmp_path / "out", progress=False)


# -- replay defaults for a small machine ---------------------------------------------------------


def test_replay_defaults_fit_a_two_core_machine():
    parser = argparse.ArgumentParser(prog="topreward")
    register(parser.add_subparsers())
    args = parser.parse_args(["replay", "some_bag"])
    # Each /clock message wakes every sim-time node's executor; 20 Hz keeps a
    # 1 Hz scoring timer within 50 ms of bag time at a fifth of the old cost.
    assert args.clock_hz == ReplayOptions().clock_hz == 20.0


def test_a_ray_value_that_names_a_path_is_the_first_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.mcap").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(ray="a.mcap")  # `--ray a.mcap b.mcap`: argparse gave the first bag to --ray
    assert ray_inputs(args, ["b.mcap"]) == [str(tmp_path / "a.mcap"), str(tmp_path / "b.mcap")]
    assert args.ray == ""  # a local cluster
    args = argparse.Namespace(ray="auto")  # a cluster address: inputs made absolute for the replicas
    assert ray_inputs(args, ["@list.txt", "b.mcap"]) == ["@" + str(tmp_path / "list.txt"), str(tmp_path / "b.mcap")]
    assert args.ray == "auto"
    assert ray_inputs(argparse.Namespace(ray=None), ["b.mcap"]) == ["b.mcap"]  # no Ray: left as given
