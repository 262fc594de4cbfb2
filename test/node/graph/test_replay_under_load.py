"""Episode boundaries and live ticks hold on a busy machine, with two cameras and three episodes.

The installed ``scorer_node`` watches a replayed bag while processes that
spin the CPU run beside it (as many as there are cores), so callbacks run
late and out of order with each other. Each episode's instruction comes a
few milliseconds after the previous episode's last frames on both cameras,
and its first frame soon after: the frames that a late callback could put
into the wrong episode. The bag is replayed several times, into a fresh node
each time, and every time:

* the node has one episode per bag episode, with its instruction;
* no TaskProgress of an episode names a frame that the bag's log order puts
  in another episode;
* the live ticks equal ``topreward bag``'s: each covers a prefix of the
  episode's samples, with the same raw score as ``topreward bag``'s tick of
  those frames, and the same progress and success score (1e-4) where the
  node's ticks so far are the same as the offline ones. Frames fall midway
  between the 2 Hz ticks, so a tick that runs finds one new frame; on a
  machine loaded beyond these spinners (other jobs) the node can still fall
  behind (a skipped tick, a late callback) and then scores two new frames
  at once, a frame set no offline tick has: the case of episodes left
  unscored at their end, which the EpisodeResult check covers;
* every bag episode gets exactly one EpisodeResult when the next
  instruction ends it, with the verdict ``topreward bag`` records for it
  (success false: the tiny model's scores stay far below the threshold),
  its first frame, its tick count and its last frames scored. The last
  frame of the first two episodes comes after their last tick, so it is
  scored only by the score made at the episode's end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.command_line import command_line
from support.replay_graph import scorer_node, wait_or_fail

from topreward_ros.bag.writer import BagWriter, image_msg, string_msg
from topreward_ros.commands.cli import main as topreward_main
from topreward_ros.demo.synthetic_bag import START_NS
from topreward_ros.node.bag_replay import ReplayOptions, replay_bag

CAMERAS = ("/cam_high/image_raw", "/cam_wrist/image_raw")
NS = 1_000_000_000
TICK_NS = NS // 2  # rate 2 Hz
VIEW = 48
FRAMES = 6  # per episode
INSTRUCTIONS = ("put the red block in the bowl", "open the top drawer", "wipe the table")
END_MARKER = "end of recording"
SECONDARY_OFFSET_NS = 5_000_000  # within the 50 ms sync tolerance
INSTRUCTION_AFTER_LAST_NS = 10_000_000  # the next instruction, 10 ms after the last frame
#: Replays per test run; TOPREWARD_REPLAY_RUNS=10 repeats it for a soak.
RUNS = int(os.environ.get("TOPREWARD_REPLAY_RUNS", "1"))


def primary_stamps(episode: int) -> list[int]:
    base = START_NS + episode * FRAMES * TICK_NS
    return [base + TICK_NS // 2 + k * TICK_NS for k in range(FRAMES)]


def write_bag(path: Path) -> None:
    rng = np.random.default_rng(7)
    with BagWriter(path, "mcap") as writer:
        for e, instruction in enumerate(INSTRUCTIONS):
            stamps = primary_stamps(e)
            at = START_NS if e == 0 else primary_stamps(e - 1)[-1] + SECONDARY_OFFSET_NS + INSTRUCTION_AFTER_LAST_NS
            writer.write("/instruction", string_msg(instruction), at)
            for stamp in stamps:
                for c, topic in enumerate(CAMERAS):
                    rgb = rng.integers(0, 255, size=(36, 48, 3), dtype=np.uint8)
                    t = stamp + c * SECONDARY_OFFSET_NS
                    writer.write(topic, image_msg(rgb, t, f"camera{c}"), t)
        writer.write("/instruction", string_msg(END_MARKER), primary_stamps(len(INSTRUCTIONS))[0])


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("replay_under_load")
    bag = root / "bag"
    write_bag(bag)
    argv = command_line(
        "bag {} -o {} --model {} --device cpu --dtype float32 "
        "--local-files-only --torch-threads 1 --view-size {} --rate 2.0 "
        "--sample-fps 2.0 --no-plot -q",
        bag,
        root / "scored",
        tiny_model_dir,
        VIEW,
    )
    for topic in CAMERAS:
        argv += ["--camera", topic]
    assert topreward_main(argv) == 0
    curves = [
        json.loads((root / "scored" / f"episode_{i:04d}" / "curve.json").read_text()) for i in range(len(INSTRUCTIONS))
    ]
    return {"bag": bag, "curves": curves}


@pytest.fixture
def busy_cpu() -> Iterator[None]:
    """Processes that spin every core at the node's priority, for the whole test."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        yield
    finally:
        for proc in spinners:
            proc.kill()
        for proc in spinners:
            proc.wait(10)


def _stamp_ns(stamp: Any) -> int:
    return int(stamp.sec) * NS + int(stamp.nanosec)


def replay_into_node(bag: Path, model: Path, tmp_path: Path) -> tuple[list[Any], list[Any]]:
    params = {
        "use_sim_time": "true",
        "model": str(model),
        "local_files_only": "true",
        "device": "cpu",
        "dtype": "float32",
        "torch_threads": "1",
        "camera_topics": "[" + ", ".join(CAMERAS) + "]",
        "view_size": str(VIEW),
        "rate_hz": "2.0",
        "sample_fps": "2.0",
    }
    for topic in CAMERAS:
        params[f"qos_overrides.{topic}.subscription.reliability"] = "reliable"
        params[f"qos_overrides.{topic}.subscription.depth"] = "200"
    log = tmp_path / "node.log"
    with scorer_node(params, log, load_timeout=180) as probe:
        # Slower than real time: a tick has a wall second before the next frame is due.
        result = replay_bag(
            bag,
            ReplayOptions(rate=0.5, wait_for=(*CAMERAS, "/instruction", "/clock"), wait_timeout_s=60.0, linger_s=4.0),
            progress=False,
        )
        assert result.ok, result.summary()
        wait_or_fail(probe.all_published, 90, "every published score to arrive", log)
        wait_or_fail(
            lambda: (
                probe.status(": episode").get("episode_results") == str(len(probe.results))
                and len(probe.results) >= len(INSTRUCTIONS)
            ),
            90,
            "the ended episodes' results to arrive",
            log,
        )
    with probe.lock:
        return list(probe.progress), list(probe.results)


@pytest.mark.timeout(600)
def test_busy_machine_keeps_episodes_apart_and_ticks_equal_topreward_bag(
    offline: dict[str, Any], tiny_model_dir: Path, tmp_path: Path, busy_cpu: None
) -> None:
    episode_of = {s: e for e in range(len(INSTRUCTIONS)) for s in primary_stamps(e)}
    for run in range(RUNS):
        run_dir = tmp_path / f"run{run}"
        run_dir.mkdir()
        messages, results = replay_into_node(offline["bag"], tiny_model_dir, run_dir)
        node_ids: list[str] = []
        for msg in messages:
            if msg.episode_id not in node_ids:
                node_ids.append(msg.episode_id)
        assert len(node_ids) == len(INSTRUCTIONS), f"run {run}: one node episode per bag episode"
        for e, (node_id, curve) in enumerate(zip(node_ids, offline["curves"])):
            check_result(results, node_id, e, [m for m in messages if m.episode_id == node_id], curve["result"], run)
        for e, (node_id, curve) in enumerate(zip(node_ids, offline["curves"])):
            mine = [m for m in messages if m.episode_id == node_id]
            for msg in mine:
                assert msg.instruction == INSTRUCTIONS[e]
                stamps = [_stamp_ns(s) for s in msg.frame_stamps]
                crossed = [s for s in stamps if episode_of.get(s) != e]
                assert not crossed, f"run {run}: episode {e} holds frames of another episode: {crossed}"
            samples = curve["sample_stamps_ns"]
            offline_ticks = {tuple(samples[: t["frames_used"]]): t for t in curve["live"]}
            node_keys = [tuple(_stamp_ns(s) for s in m.frame_stamps) for m in mine]
            offline_keys = list(offline_ticks)
            for k, (key, msg) in enumerate(zip(node_keys, mine)):
                # Every node score covers a prefix of the episode's samples, in order.
                assert key == tuple(samples[: len(key)]), f"run {run}, episode {e}: not a prefix: {key}"
                tick = offline_ticks.get(key)
                if tick is None:
                    continue  # a frame set no offline tick saw (the node fell behind)
                assert _stamp_ns(msg.header.stamp) == tick["stamp_ns"]
                assert msg.log_prob_true == pytest.approx(tick["log_prob_true"], abs=1e-4)
                if node_keys[0] == offline_keys[0]:  # the same anchor
                    assert msg.progress == pytest.approx(tick["progress"], abs=1e-4)
                if node_keys[: k + 1] == offline_keys[: k + 1]:  # the same scores averaged
                    assert msg.success_score == pytest.approx(tick["success_score"], abs=1e-4)


def check_result(results: list[Any], node_id: str, e: int, ticks: list[Any], offline: dict[str, Any], run: int) -> None:
    """The node's one EpisodeResult of bag episode ``e`` against ``topreward bag``'s record.

    Holds also when a tick was skipped (the one running came due again): the
    result counts the node's own ticks, and its final score covers every
    sample whatever the ticks did.
    """
    mine = [r for r in results if r.episode_id == node_id]
    assert len(mine) == 1, f"run {run}: episode {e} has {len(mine)} EpisodeResult messages"
    (result,) = mine
    assert result.instruction == INSTRUCTIONS[e]
    assert result.end_reason == result.END_NEW_INSTRUCTION == offline["end_reason"]
    assert result.success is offline["success"] is False  # a failed episode says so
    assert result.threshold == offline["threshold"]
    assert _stamp_ns(result.first_frame_stamp) == offline["first_stamp_ns"] == primary_stamps(e)[0]
    assert result.ticks == len(ticks) and 0 < len(ticks) <= offline["ticks"]
    assert result.final_frames_scored and result.not_scored_reason == ""
    # The next instruction follows an episode's last frame within a tick: offline, only
    # the score at the end covers that frame (the last episode lasts a tick longer).
    last_episode = e == len(INSTRUCTIONS) - 1
    assert offline["samples"] == FRAMES and offline["scored_at_end"] is not last_episode
    assert result.samples >= max(m.frames_used for m in ticks)
    if result.samples == offline["samples"]:
        # The last frame (published before the next instruction) reached the episode before
        # its verdict, as it nearly always does: the verdict is the offline one.
        assert result.scored_at_end or (last_episode and max(m.frames_used for m in ticks) == FRAMES)
        assert _stamp_ns(result.last_frame_stamp) == offline["last_stamp_ns"] == primary_stamps(e)[-1]
        assert result.log_prob_true == pytest.approx(offline["log_prob_true"], abs=1e-4)
        if result.ticks == offline["ticks"]:
            assert result.success_score == pytest.approx(offline["success_score"], abs=1e-4)
