"""A bag replayed into the real scorer_node agrees with the offline path.

The installed ``scorer_node`` runs as its own process with
``use_sim_time:=true`` and the tiny model; ``topreward replay`` (the library
call behind it) publishes a two-episode bag with /clock. Then:

* nothing was dropped: the node's own diagnostics count as many camera
  frames received as the replay published;
* every TaskProgress names the frames it scored, and those are exactly a
  prefix of the 2 fps schedule applied to the episode's recorded stamps;
* the offline path, given those frames from the bag, gets the same log
  probabilities within 1e-4 (one reference forward per message);
* episode boundaries match the offline bag tool: same number of episodes,
  same instruction each, every scored stamp inside its episode.
"""

from __future__ import annotations

import pytest
from support.offline_run import score_bag
from support.replay_graph import replay_node_params, scorer_node, wait_or_fail

from topreward_ros.bag.reader import BagReader
from topreward_ros.demo.scene import DEMO_SCENES
from topreward_ros.demo.synthetic_bag import CameraSpec, write_episodes_bag
from topreward_ros.episode.cameras import to_rgb
from topreward_ros.episode.records import EpisodeSettings
from topreward_ros.node.bag_replay import ReplayOptions, replay_bag
from topreward_ros.scoring import ScorerConfig, load_scorer, prepare_view
from topreward_ros.scoring.schedule import sample_indices

CAMERA = "/camera/image_raw"
VIEW = 64
RATE_HZ = 2.0
NS = 1_000_000_000


def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * NS + int(stamp.nanosec)


def test_replayed_bag_scored_by_the_node_matches_the_offline_path(tmp_path, tiny_model_dir):
    layout = write_episodes_bag(
        tmp_path / "bag",
        "mcap",
        DEMO_SCENES,
        (CameraSpec(CAMERA, "raw", "rgb8", width=96, height=72, rate_hz=10.0),),
        duration_s=3.0,
        gap_s=0.6,
    )
    # A reliable, deep camera queue: the test proves nothing is lost.
    params = replay_node_params(tiny_model_dir, CAMERA, VIEW, rate_hz=str(RATE_HZ))
    log = tmp_path / "node.log"
    with scorer_node(params, log) as probe:
        result = replay_bag(
            layout.path,
            ReplayOptions(wait_for=(CAMERA, "/instruction", "/clock"), wait_timeout_s=60.0, linger_s=2.0),
            progress=False,
        )
        assert result.ok, result.summary()
        published = result.published[CAMERA]
        assert published == sum(len(e.primary_stamps_ns) for e in layout.episodes)
        # Nothing dropped: the node itself counted every frame the replay sent.
        wait_or_fail(
            lambda: probe.status(f"camera {CAMERA} (primary)").get("received") == str(published),
            30,
            f"the node to report {published} frames received",
            log,
        )
        wait_or_fail(probe.all_published, 30, "every published score to arrive", log)

    messages = list(probe.progress)
    episodes: dict[str, list] = {}
    for msg in messages:
        episodes.setdefault(msg.episode_id, []).append(msg)
    node_episodes = list(episodes.values())

    # Episode boundaries: the offline bag tool cuts the bag the same way.
    scorer = load_scorer(
        ScorerConfig(model=str(tiny_model_dir), device="cpu", dtype="float32", local_files_only=True, view_size=VIEW)
    )
    report = score_bag(
        scorer,
        EpisodeSettings(view_size=VIEW, success_threshold=-8.0),
        dict(camera_topics=(CAMERA,), tick_rate_hz=RATE_HZ, plot=False),
        layout.path,
        tmp_path / "offline",
        progress=False,
    )
    assert [e.instruction for e in report.episodes] == [e.instruction for e in layout.episodes]
    assert len(node_episodes) == len(report.episodes) == len(layout.episodes)

    with BagReader(layout.path) as reader:
        views = {}
        for m in reader.messages([CAMERA]):
            msg = reader.deserialize(m)
            views[_stamp_ns(msg.header.stamp)] = prepare_view(to_rgb(msg), VIEW)
    for msgs, episode in zip(node_episodes, layout.episodes):
        stamps = episode.primary_stamps_ns
        schedule = [stamps[i] for i in sample_indices(stamps, 2.0)]
        for msg in msgs:
            assert msg.instruction == episode.instruction
            frame_stamps = [_stamp_ns(s) for s in msg.frame_stamps]
            assert msg.frames_used == len(frame_stamps) > 0
            # The node's frames are exactly a prefix of the schedule on the recorded stamps.
            assert frame_stamps == schedule[: len(frame_stamps)]
            assert stamps[0] <= frame_stamps[0] and frame_stamps[-1] <= stamps[-1]
            reference = scorer.score([views[s] for s in frame_stamps], frame_stamps, episode.instruction)
            assert msg.log_prob_true == pytest.approx(reference.log_prob_true, abs=1e-4)
            assert msg.log_prob_false == pytest.approx(reference.log_prob_false, abs=1e-4)


def test_replay_cli_reports_missing_subscribers_and_unknown_topics(tmp_path, capsys):
    import argparse

    from topreward_ros.commands.bag import EXIT_OK, EXIT_UNUSABLE, register

    layout = write_episodes_bag(tmp_path / "bag", "sqlite3", DEMO_SCENES[:1], duration_s=0.5)
    parser = argparse.ArgumentParser(prog="topreward")
    register(parser.add_subparsers())

    def run(*argv: str) -> int:
        args = parser.parse_args(["replay", str(layout.path), "-q", *argv])
        return args.func(args)

    assert run("--topics", "/nope") == EXIT_UNUSABLE
    assert "topics not in the bag: /nope" in capsys.readouterr().err
    assert run("--wait-for", "/nope") == EXIT_UNUSABLE
    assert "not replayed: /nope" in capsys.readouterr().err
    assert run("--wait-for", "--wait-timeout", "0.5") == EXIT_UNUSABLE
    assert "no subscriber after 0.5 s on: /camera/image_raw, /instruction" in (capsys.readouterr().err)
    assert run("--rate", "5", "--linger", "0") == EXIT_OK
    out = capsys.readouterr().out
    assert "/camera/image_raw: 5" in out and "/instruction: 1" in out
