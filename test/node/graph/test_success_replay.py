"""Live success decisions: the node on a replayed bag agrees with ``topreward bag``.

``topreward bag`` relabels a recording with what the node would have
published; that promise must hold for the success decision at a threshold
that is actually crossed, with a dip that breaks a streak, not only for
scores. The bag is built so that both paths score the same frame sets: a
2 Hz camera (every frame is a 2 fps sample) whose frames fall midway between
the 2 Hz scoring ticks, in bag time for ``topreward bag`` and on /clock for
the node (whose timer keeps its phase on the ROS clock), so each tick finds
exactly one new frame however late it runs.

The random model's scores are meaningless; the threshold is picked from the
scores ``topreward bag`` observes on this bag, between two of them, so that
an episode has a streak broken by a dip before it succeeds. Then:

* ``topreward bag`` (curve.json ``live`` and progress.mcap) shows the
  semantics: no success on a streak shorter than ``success_consecutive``,
  one EpisodeSuccess per episode, ``success`` latched afterwards, the next
  episode undecided until it succeeds on its own;
* the installed ``scorer_node``, fed the bag by ``topreward replay`` with
  /clock, publishes for every tick (matched by the frames it scored) the
  same ``success``, ``progress``, ``success_score`` and raw score (1e-4),
  and the same EpisodeSuccess messages (episode, stamp, score, threshold).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.command_line import command_line
from support.offline_run import tiny_scorer
from support.replay_graph import replay_node_params, scorer_node, wait_or_fail

from topreward_ros.bag.reader import BagReader
from topreward_ros.bag.writer import BagWriter, image_msg, string_msg
from topreward_ros.commands.cli import main as topreward_main
from topreward_ros.demo.synthetic_bag import START_NS
from topreward_ros.node.bag_replay import ReplayOptions, replay_bag

CAMERA = "/camera/image_raw"
NS = 1_000_000_000
TICK_NS = NS // 2  # rate 2 Hz
VIEW = 64
WINDOW, CONSECUTIVE = 2, 2
FRAMES_PER_EPISODE = 14
INSTRUCTIONS = ("put the red block in the bowl", "open the top drawer")
#: Marks the end of the recording: the bag tool ticks only while messages come.
END_MARKER = "end of recording"


def frame_stamps(episode: int) -> list[int]:
    """Frames midway between ticks; the episode's instruction comes on the tick before."""
    base = START_NS + episode * (FRAMES_PER_EPISODE + 1) * TICK_NS  # a multiple of the tick period
    return [base + TICK_NS // 2 + k * TICK_NS for k in range(FRAMES_PER_EPISODE)]


def candidate(seed: int) -> np.ndarray:
    """Noise or a plain colour: the random model scores these quite differently."""
    rng = np.random.default_rng(seed)
    if seed % 2:
        return np.full((48, 64, 3), rng.integers(0, 255, size=3), dtype=np.uint8)
    return rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8)


def design_episode(scorer: Any, instruction: str, stamps: list[int], shape: str, seed: int) -> list[np.ndarray]:
    """Frames chosen one by one so that the score of the prefix goes up ('+') or down ('-').

    The random model's scores drift with video length; a few candidates per
    step, scored as prefixes by the real model, give a sequence with the ups
    and downs the test needs.
    """
    from topreward_ros.scoring import prepare_view

    images: list[np.ndarray] = []
    views: list[np.ndarray] = []
    for k, direction in enumerate(shape):
        scored = []
        for j in range(12 if direction in "+-" else 1):
            image = candidate(seed + 100 * k + j)
            view = prepare_view(image, VIEW)
            raw = scorer.score(views + [view], stamps[: k + 1], instruction).log_prob_true
            scored.append((raw, j, image, view))
        pick = (min if direction == "-" else max)(scored, key=lambda c: (c[0], -c[1]))
        images.append(pick[2])
        views.append(pick[3])
    return images


#: Up and down for the first episode (a short streak, a dip, a longer streak,
#: a dip after success); mostly up for the second.
SHAPES = ("x-+-+--++--++-", "x+++++++++++++")


def write_bag(path: Path, scorer: Any) -> list[list[int]]:
    """The designed episodes, each after its instruction, and an end marker."""
    stamps = [frame_stamps(e) for e in range(len(INSTRUCTIONS))]
    with BagWriter(path, "mcap") as writer:
        for e, instruction in enumerate(INSTRUCTIONS):
            writer.write("/instruction", string_msg(instruction), stamps[e][0] - TICK_NS // 2)
            images = design_episode(scorer, instruction, stamps[e], SHAPES[e], 10_000 * e)
            for stamp, rgb in zip(stamps[e], images):
                writer.write(CAMERA, image_msg(rgb, stamp, "camera"), stamp)
        writer.write("/instruction", string_msg(END_MARKER), stamps[-1][-1] + TICK_NS // 2 + TICK_NS)
    return stamps


def run_topreward_bag(bag: Path, out: Path, model: Path, threshold: float) -> list[dict[str, Any]]:
    """The real command; returns each episode's curve.json."""
    rc = topreward_main(
        command_line(
            "bag {} -o {} --camera {} --model {} --device cpu --dtype float32 "
            "--local-files-only --torch-threads 1 --view-size {} --rate 2.0 "
            "--sample-fps 2.0 --success-threshold {} --success-window {} "
            "--success-consecutive {} --no-plot -q",
            bag,
            out,
            CAMERA,
            model,
            VIEW,
            repr(threshold),
            WINDOW,
            CONSECUTIVE,
        )
    )
    assert rc == 0
    return [json.loads((out / f"episode_{i:04d}" / "curve.json").read_text()) for i in range(len(INSTRUCTIONS))]


def decisions(scores: list[float], threshold: float) -> dict[str, Any]:
    """How the success rule plays out on one episode's success scores at ``threshold``."""
    streak, fired_at, broken_streak, dip_after = 0, None, False, False
    for i, score in enumerate(scores):
        above = i >= WINDOW - 1 and score > threshold
        if fired_at is None:
            if not above and 0 < streak < CONSECUTIVE:
                broken_streak = True
            streak = streak + 1 if above else 0
            if streak >= CONSECUTIVE:
                fired_at = i
        elif not above:
            dip_after = True
    return {"fired_at": fired_at, "broken_streak": broken_streak, "dip_after": dip_after}


def pick_threshold(per_episode: list[list[float]]) -> float:
    """A threshold between observed scores giving a streak broken by a dip, then success."""
    values = sorted({round(s, 6) for scores in per_episode for s in scores})
    best, best_rank = None, None
    for low, high in zip(values, values[1:]):
        if high - low < 2e-3:  # keep far from every score: 1e-4 differences must not flip it
            continue
        threshold = (low + high) / 2
        if threshold > 0:
            continue
        plays = [decisions(scores, threshold) for scores in per_episode]
        rank = (
            plays[0]["broken_streak"] and plays[0]["fired_at"] is not None,
            sum(p["fired_at"] is not None for p in plays),
            sum(p["dip_after"] for p in plays),
        )
        if rank[0] and (best_rank is None or rank > best_rank):
            best, best_rank = threshold, rank
    if best is None:
        pytest.fail(f"no threshold gives a broken streak then success; success scores: {per_episode}")
    return best


def frame_set(live: dict[str, Any], samples: list[int]) -> tuple[int, ...]:
    used = live["frames_used"]
    assert samples[used - 1] == live["stamp_ns"]
    return tuple(samples[:used])


def _stamp_ns(stamp: Any) -> int:
    return int(stamp.sec) * NS + int(stamp.nanosec)


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("success_replay")
    bag = root / "bag"

    scorer = tiny_scorer(tiny_model_dir, VIEW, torch_threads=1)
    stamps = write_bag(bag, scorer)
    # First pass: learn the scores (the success score does not depend on the threshold).
    learn = run_topreward_bag(bag, root / "learn", tiny_model_dir, -8.0)
    threshold = pick_threshold([[t["success_score"] for t in c["live"]] for c in learn])
    curves = run_topreward_bag(bag, root / "scored", tiny_model_dir, threshold)
    return {"bag": bag, "stamps": stamps, "threshold": threshold, "curves": curves, "out": root / "scored"}


def test_topreward_bag_success_semantics(offline: dict[str, Any]) -> None:
    threshold = offline["threshold"]
    curves = offline["curves"]
    for e, curve in enumerate(curves):
        live = curve["live"]
        # Each tick scored exactly one more frame of the episode.
        assert [t["frames_used"] for t in live] == list(range(1, FRAMES_PER_EPISODE + 1))
        assert curve["sample_stamps_ns"] == offline["stamps"][e]
        play = decisions([t["success_score"] for t in live], threshold)
        fired = [i for i, t in enumerate(live) if t["success_fired"]]
        assert fired == ([] if play["fired_at"] is None else [play["fired_at"]])
        for i, t in enumerate(live):
            assert t["success"] == (play["fired_at"] is not None and i >= play["fired_at"])
            assert t["success_score"] == pytest.approx(
                np.mean([x["log_prob_true"] for x in live[max(0, i - WINDOW + 1) : i + 1]]), abs=1e-9
            )
    first = decisions([t["success_score"] for t in curves[0]["live"]], threshold)
    assert first["broken_streak"] and first["fired_at"] is not None
    # A streak shorter than success_consecutive did not declare success ...
    live0 = curves[0]["live"]
    assert any(t["success_score"] > threshold and not t["success"] for t in live0[WINDOW - 1 :])
    # ... a dip after success did not take it back ...
    assert first["dip_after"]
    assert any(t["success_score"] <= threshold and t["success"] for t in live0)
    # ... and the next episode started undecided and succeeded on its own.
    second = decisions([t["success_score"] for t in curves[1]["live"]], threshold)
    assert second["fired_at"] is not None and not curves[1]["live"][0]["success"]
    # progress.mcap carries one EpisodeSuccess per succeeded episode, for that episode.
    for e, curve in enumerate(curves):
        path = offline["out"] / f"episode_{e:04d}" / "progress.mcap"
        with BagReader(path) as reader:
            msgs = [(m.topic, reader.deserialize(m)) for m in reader.messages()]
        successes = [m for topic, m in msgs if topic == "/episode_success"]
        progress = [m for topic, m in msgs if topic == "/task_progress"]
        fired = [t for t in curve["live"] if t["success_fired"]]
        assert len(successes) == len(fired) <= 1
        assert {m.episode_id for m in progress} == {f"bag-episode-{e:04d}"}
        for msg, tick in zip(successes, fired):
            assert msg.episode_id == f"bag-episode-{e:04d}"
            assert _stamp_ns(msg.header.stamp) == tick["stamp_ns"]
            assert msg.threshold == threshold and msg.consecutive_scores == CONSECUTIVE


@pytest.mark.timeout(400)
def test_node_on_the_replayed_bag_decides_success_like_topreward_bag(
    offline: dict[str, Any], tiny_model_dir: Path, tmp_path: Path
) -> None:
    threshold = offline["threshold"]
    params = replay_node_params(
        tiny_model_dir,
        CAMERA,
        VIEW,
        rate_hz="2.0",
        sample_fps="2.0",
        success_threshold=repr(threshold),
        success_window=str(WINDOW),
        success_consecutive=str(CONSECUTIVE),
    )
    log = tmp_path / "node.log"
    with scorer_node(params, log) as probe:
        # Slower than real time: every tick runs long before the next frame is due.
        result = replay_bag(
            offline["bag"],
            ReplayOptions(rate=0.25, wait_for=(CAMERA, "/instruction", "/clock"), wait_timeout_s=60.0, linger_s=4.0),
            progress=False,
        )
        assert result.ok, result.summary()
        wait_or_fail(probe.all_published, 60, "every published score to arrive", log)

    with probe.lock:
        messages, successes = list(probe.progress), list(probe.successes)
    node_ids: list[str] = []
    for msg in messages:
        if msg.episode_id not in node_ids:
            node_ids.append(msg.episode_id)
    assert len(node_ids) == len(INSTRUCTIONS), "one node episode per bag episode (the marker scores nothing)"
    for e, (node_id, curve) in enumerate(zip(node_ids, offline["curves"])):
        samples = curve["sample_stamps_ns"]
        offline_ticks = {frame_set(t, samples): t for t in curve["live"]}
        node_ticks = {tuple(_stamp_ns(s) for s in m.frame_stamps): m for m in messages if m.episode_id == node_id}
        # The same ticks: each scored the same frames on both paths.
        assert sorted(node_ticks) == sorted(offline_ticks)
        for key, tick in offline_ticks.items():
            msg = node_ticks[key]
            assert msg.instruction == curve["instruction"] == INSTRUCTIONS[e]
            assert _stamp_ns(msg.header.stamp) == tick["stamp_ns"]
            assert msg.log_prob_true == pytest.approx(tick["log_prob_true"], abs=1e-4)
            assert msg.success_score == pytest.approx(tick["success_score"], abs=1e-4)
            assert msg.progress == pytest.approx(tick["progress"], abs=1e-4)
            assert msg.success == tick["success"], f"episode {e}, tick of {len(key)} frames"
            assert msg.success_threshold == threshold
        # The same EpisodeSuccess: the node's episode id stands for bag-episode-NNNN.
        fired = [t for t in curve["live"] if t["success_fired"]]
        mine = [s for s in successes if s.episode_id == node_id]
        assert len(mine) == len(fired) <= 1
        for msg, tick in zip(mine, fired):
            assert _stamp_ns(msg.header.stamp) == tick["stamp_ns"]
            assert msg.success_score == pytest.approx(tick["success_score"], abs=1e-4)
            assert (msg.threshold, msg.consecutive_scores) == (threshold, CONSECUTIVE)
            assert msg.instruction == INSTRUCTIONS[e]
    assert {s.episode_id for s in successes} <= set(node_ids)
