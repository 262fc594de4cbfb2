"""EpisodeRunner on the real tiny Qwen3-VL: the tick shared by node and bag tools."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from topreward_ros.episode.records import EpisodeSettings
from topreward_ros.episode.runner import EpisodeRunner
from topreward_ros.episode.window import AddResult
from topreward_ros.scoring import ScorerConfig, load_scorer, prepare_view

MS = 1_000_000
INSTRUCTION = "put the red block in the bowl"


@pytest.fixture(scope="module")
def scorer(tiny_model_dir):
    return load_scorer(ScorerConfig(model=str(tiny_model_dir), device="cpu", torch_threads=1))


def camera_frame(i: int) -> np.ndarray:
    """A 96x128 camera image whose content changes with the frame index."""
    rng = np.random.default_rng(i)
    image = rng.integers(0, 255, size=(96, 128, 3), dtype=np.uint8)
    image[:, : (i * 3) % 128] = (200, 30, 30)
    return image


def feed(runner: EpisodeRunner, stamps_ns, camera: int = 0, offset: int = 0) -> int:
    """Offer frames like a camera callback: convert only what the window wants."""
    converted = 0
    for i, stamp in enumerate(stamps_ns):
        if runner.wants(camera, stamp):
            converted += 1
            view = prepare_view(camera_frame(i + offset), 64)
            assert runner.add(camera, stamp, view, "cam") is AddResult.KEPT
    return converted


def settings(**overrides) -> EpisodeSettings:
    values = dict(view_size=64, success_threshold=-1e9, success_consecutive=2)
    values.update(overrides)
    return EpisodeSettings(**values)


def test_ticks_score_exactly_the_frames_they_name(scorer):
    runner = EpisodeRunner(scorer, settings())
    episode = runner.start(INSTRUCTION)
    stamps = [i * 33_333_333 for i in range(100)]  # 3.3 s at 30 Hz
    results = []
    for chunk in range(0, 100, 20):
        converted = feed(runner, stamps[chunk : chunk + 20], offset=chunk)
        assert converted <= 3  # at 2 fps, 20 frames at 30 Hz hold at most 2-3 slots
        result = runner.tick()
        assert result is not None
        results.append(result)
    assert runner.tick() is None  # nothing new
    samples = runner.samples
    assert results[-1].frame_stamps_ns == tuple(s.stamp_ns for s in samples)
    for result in results:
        assert result.episode_id == episode
        assert result.stamp_ns == result.frame_stamps_ns[-1]
        assert result.frames_used == len(result.frame_stamps_ns)
        # The incremental score equals one independent forward over the same frames.
        chosen = [s for s in samples if s.stamp_ns in set(result.frame_stamps_ns)]
        reference = scorer.score([s.image for s in chosen], [s.stamp_ns for s in chosen], INSTRUCTION)
        assert result.log_prob_true == pytest.approx(reference.log_prob_true, abs=1e-4)
        assert result.log_prob_false == pytest.approx(reference.log_prob_false, abs=1e-4)
        assert 0.0 <= result.progress <= 1.0
        assert result.log_prob_true <= 0.0


def test_success_fires_once_after_consecutive_scores(scorer):
    runner = EpisodeRunner(scorer, settings(success_window=1, success_consecutive=2))
    runner.start(INSTRUCTION)
    fired = []
    for k in range(5):
        feed(runner, [k * 500 * MS], offset=k)
        fired.append(runner.tick().success_fired)
    assert fired == [False, True, False, False, False]


def test_success_never_fires_below_threshold(scorer):
    runner = EpisodeRunner(scorer, settings(success_threshold=-1e-9, success_window=1))
    runner.start(INSTRUCTION)
    for k in range(4):
        feed(runner, [k * 500 * MS], offset=k)
        result = runner.tick()
        assert not result.success and not result.success_fired


def test_new_episode_resets_window_and_ids(scorer):
    runner = EpisodeRunner(scorer, settings())
    first = runner.start(INSTRUCTION)
    feed(runner, [0, 500 * MS])
    assert runner.tick().frames_used == 2
    second = runner.start("open the drawer")
    assert second != first
    assert runner.tick() is None  # no frames yet in the new episode
    # Stamps may restart (a new recording): the new episode accepts them.
    feed(runner, [100 * MS])
    result = runner.tick()
    assert (result.episode_id, result.instruction, result.frames_used) == (second, "open the drawer", 1)


def test_thinned_window_is_rescored_from_the_kept_frames(scorer):
    runner = EpisodeRunner(scorer, settings(max_frames=4))
    runner.start(INSTRUCTION)
    for k in range(5):
        feed(runner, [k * 500 * MS], offset=k)
        result = runner.tick()
    assert result.frame_stamps_ns == (0, 1_000 * MS, 2_000 * MS)
    samples = runner.samples
    reference = scorer.score([s.image for s in samples], [s.stamp_ns for s in samples], INSTRUCTION)
    assert result.log_prob_true == pytest.approx(reference.log_prob_true, abs=1e-4)


def test_frames_without_an_episode_are_ignored(scorer):
    runner = EpisodeRunner(scorer, settings())
    assert not runner.wants(0, 0)
    assert runner.add(0, 0, np.zeros((64, 64, 3), np.uint8)) is AddResult.SKIPPED
    assert runner.tick() is None


@pytest.mark.parametrize("instruction", ["", "   \n"])
def test_empty_instruction_is_refused(scorer, instruction):
    runner = EpisodeRunner(scorer, settings())
    with pytest.raises(ValueError, match="instruction is empty"):
        runner.start(instruction)


def test_episode_started_during_a_tick_voids_its_result(scorer):
    runner = EpisodeRunner(scorer, settings())
    runner.start(INSTRUCTION)
    feed(runner, [0, 500 * MS, 1_000 * MS])
    started = threading.Event()
    original = scorer.start_episode

    def start_episode_then_switch(instruction, max_frames=None):
        session = original(instruction, max_frames)
        runner.start("a different task")  # as if the instruction topic fired now
        started.set()
        return session

    scorer.start_episode = start_episode_then_switch
    try:
        assert runner.tick() is None
    finally:
        del scorer.start_episode
    assert started.is_set()
    assert runner.instruction == "a different task"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sample_fps": 0}, "sample_fps must be > 0"),
        ({"max_frames": 1}, "max_frames must be >= 2"),
        ({"sync_tolerance_s": -0.1}, "sync_tolerance_s must be >= 0"),
        ({"view_size": 8}, "view_size must be >= 32"),
        ({"success_threshold": 0.5}, "success_threshold is a log-probability"),
        ({"success_window": 0}, "success_window must be >= 1"),
        ({"success_consecutive": 0}, "success_consecutive must be >= 1"),
    ],
)
def test_settings_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EpisodeSettings(**kwargs)


def test_frames_collected_while_the_model_loads_are_scored_once_it_is_set(scorer):
    runner = EpisodeRunner(None, settings())
    runner.start(INSTRUCTION)
    feed(runner, [0, 500 * MS, 1_000 * MS])
    assert runner.tick() is None  # no model yet: nothing scored, nothing lost
    runner.set_scorer(scorer)
    result = runner.tick()
    assert result.frame_stamps_ns == (0, 500 * MS, 1_000 * MS)
    assert result.model_id == scorer.model_id


def test_a_frame_meant_for_an_episode_never_lands_in_the_next_one(scorer):
    """The node decides on a thread which episode a frame belongs to; add() must honour it."""
    runner = EpisodeRunner(scorer, settings())
    first = runner.start("pick the cup")
    view = camera_frame(0)
    assert runner.add(0, 1_000_000_000, view, episode_id=first) is AddResult.KEPT
    second = runner.start("place the cup")
    assert runner.add(0, 1_500_000_000, view, episode_id=first) is AddResult.OTHER_EPISODE
    assert runner.add(0, 1_500_000_000, view, episode_id="") is AddResult.OTHER_EPISODE
    runner.flush()
    assert runner.samples == []  # nothing of the first episode's frames in the second
    assert runner.add(0, 2_000_000_000, view, episode_id=second) is AddResult.KEPT
    runner.flush()
    assert [s.stamp_ns for s in runner.samples] == [2_000_000_000]


# -- the verdict of an ended episode (EpisodeSummary) ----------------------------------------
def test_an_ended_episode_gets_its_final_samples_scored_once_and_a_verdict(scorer):
    """Ticks fell behind: the samples after the last tick are scored once at the end."""
    from topreward_ros.episode.records import END_NEW_INSTRUCTION

    runner = EpisodeRunner(scorer, settings(success_threshold=-8.0))
    first = runner.start(INSTRUCTION)
    stamps = [i * 500 * MS for i in range(8)]
    feed(runner, stamps[:3])
    tick = runner.tick()
    assert tick is not None and tick.frames_used == 3
    feed(runner, stamps[3:], offset=3)  # no tick for these: the scoring thread fell behind
    second = runner.start("open the drawer", end_reason=END_NEW_INSTRUCTION, end_detail="instruction message")
    assert runner.ended_pending == 1
    (summary,) = runner.finish_ended()
    assert runner.finish_ended() == []  # once
    reference = scorer.score([prepare_view(camera_frame(i), 64) for i in range(8)], stamps, INSTRUCTION)
    assert summary.episode_id == first != second
    assert summary.instruction == INSTRUCTION
    assert (summary.end_reason, summary.end_detail) == (END_NEW_INSTRUCTION, "instruction message")
    assert (summary.first_stamp_ns, summary.last_stamp_ns) == (stamps[0], stamps[-1])
    assert (summary.frames, summary.samples, summary.ticks) == (8, 8, 1)
    assert summary.final_frames_scored and summary.scored_at_end and summary.not_scored_reason == ""
    assert summary.log_prob_true == pytest.approx(reference.log_prob_true, abs=1e-4)
    # The success score averages the tick's score and the final one (success_window 3).
    assert summary.success_score == pytest.approx((tick.log_prob_true + reference.log_prob_true) / 2, abs=1e-4)
    assert summary.success is False and summary.threshold == -8.0
    assert summary.model_id == scorer.model_id


def test_an_episode_whose_ticks_scored_everything_is_not_scored_again(scorer):
    from topreward_ros.episode.records import END_RESET

    runner = EpisodeRunner(scorer, settings(success_window=1, success_consecutive=1))
    runner.start(INSTRUCTION)
    feed(runner, [0, 500 * MS, 1000 * MS])
    runner.flush()
    tick = runner.tick()
    assert tick is not None and tick.success
    runner.start(INSTRUCTION, end_reason=END_RESET)
    (summary,) = runner.finish_ended()
    assert summary.final_frames_scored and not summary.scored_at_end
    assert (summary.samples, summary.ticks) == (3, 1)
    assert summary.log_prob_true == tick.log_prob_true and summary.success is True
    assert summary.progress == pytest.approx(tick.progress)


def test_an_episode_that_cannot_be_scored_at_its_end_says_why(scorer):
    from topreward_ros.episode.records import END_SHUTDOWN

    runner = EpisodeRunner(None, settings())  # the model never loaded
    runner.start(INSTRUCTION)
    feed(runner, [0, 500 * MS])
    runner.stop(END_SHUTDOWN, "node shut down")
    (summary,) = runner.finish_ended()
    assert not summary.final_frames_scored and summary.not_scored_reason == "no model loaded"
    assert summary.success is False and summary.ticks == 0 and summary.samples == 2
    assert summary.log_prob_true != summary.log_prob_true  # NaN: never scored
    runner.start(INSTRUCTION)  # no frame at all
    runner.stop()
    (empty,) = runner.finish_ended()
    assert empty.not_scored_reason == "no usable camera frame" and empty.frames == 0
    assert empty.first_stamp_ns is None and empty.end_reason == END_SHUTDOWN


def test_a_late_frame_joins_its_ended_episode_until_the_verdict(scorer):
    runner = EpisodeRunner(scorer, settings())
    first = runner.start(INSTRUCTION)
    feed(runner, [0, 500 * MS])
    runner.start("open the drawer")
    view = prepare_view(camera_frame(2), 64)
    assert runner.add_to_ended(first, 0, 1000 * MS, view) is AddResult.KEPT
    (summary,) = runner.finish_ended()
    assert (summary.frames, summary.samples, summary.last_stamp_ns) == (3, 3, 1000 * MS)
    assert runner.add_to_ended(first, 0, 1500 * MS, view) is AddResult.OTHER_EPISODE


def test_a_window_restarted_by_a_settings_change_leaves_nothing_unscored(scorer):
    runner = EpisodeRunner(scorer, settings())
    runner.start(INSTRUCTION)
    feed(runner, [0, 500 * MS, 1000 * MS])
    runner.flush()
    assert runner.tick() is not None
    runner.update_settings(settings(sample_fps=1.0))  # an empty window, no frame since
    runner.stop()
    (summary,) = runner.finish_ended()
    assert summary.final_frames_scored and not summary.scored_at_end and summary.not_scored_reason == ""
    assert (summary.samples, summary.ticks) == (3, 1)


def two_camera_views(i: int) -> tuple[np.ndarray, np.ndarray]:
    """Two different 448x448 views for the i-th moment."""
    rng = np.random.default_rng(i)
    return tuple(rng.integers(0, 256, (448, 448, 3), dtype=np.uint8) for _ in range(2))


def test_two_camera_episode_keeps_its_cache_to_max_frames_and_rebuilds_once_per_thinning(scorer):
    # Two 448 views side by side (448x896, no rounding needed): 63 of them
    # exceed the processor's pixel budget, so sized by length the frames of a
    # longer episode would shrink again at every new sample and void the cache.
    # (The default rig, two 244 views and 256 samples, reaches it at 205.)
    config = settings(view_size=448, max_frames=64)
    assert scorer.processor_size(448, 896, 62) == (448, 896) != scorer.processor_size(448, 896, 63)
    runner = EpisodeRunner(scorer, config, num_cameras=2)
    runner.start(INSTRUCTION)
    window = runner.window
    pool = [two_camera_views(i) for i in range(6)]
    moment = 0

    def advance(samples: int) -> None:
        """Feed both cameras at 2 fps until ``samples`` more samples were kept (or a thinning)."""
        nonlocal moment
        target, thinned = len(window.samples) + samples, window.thinned
        while len(window.samples) < target and window.thinned == thinned:
            stamp = moment * 500 * MS
            for camera, view in enumerate(pool[moment % len(pool)]):
                if runner.wants(camera, stamp):
                    runner.add(camera, stamp, view, "cam")
            moment += 1
            runner.compose()

    first = True
    while len(window.samples) < config.max_frames:
        advance(2)
        result = runner.tick()
        assert runner.cache_rebuilds == 0, f"cache rebuilt at {result.frames_used} samples"
        # Past the first tick, every score starts from the cache (a rebuild reuses nothing).
        assert first or result.reused_tokens > 0, f"nothing reused at {result.frames_used} samples"
        first = False
    assert result.frames_used == config.max_frames and window.thinned == 0
    samples = runner.samples
    reference = scorer.score(
        [s.image for s in samples], [s.stamp_ns for s in samples], INSTRUCTION, max_frames=config.max_frames
    )
    assert result.log_prob_true == pytest.approx(reference.log_prob_true, abs=1e-4)
    while window.thinned < 2:
        advance(2)
        result = runner.tick()
        assert runner.cache_rebuilds == window.thinned
    assert result.frames_used == len(window.samples) == config.max_frames // 2 + 1


def test_the_static_control_is_sized_like_the_episode_it_controls(scorer):
    """eval's length-bias control sees the first view at the episode's own frame size (``max_frames``)."""
    from topreward_ros.evaluation.runner import static_control

    view = np.concatenate(two_camera_views(0), axis=1)  # 448x896: two cameras side by side
    stamps = [i * 500 * MS for i in range(4)]
    # 4 frames fit the pixel budget at full size; 64 do not: the episode's frames are smaller.
    assert scorer.processor_size(448, 896, 4) != scorer.processor_size(448, 896, 64)
    control = static_control(scorer, view, stamps, INSTRUCTION, 2, max_frames=64)
    expected = scorer.curve([view] * 4, stamps, INSTRUCTION, num_prefixes=2, max_frames=64)
    full_size = scorer.curve([view] * 4, stamps, INSTRUCTION, num_prefixes=2)
    assert control.log_prob_true == pytest.approx(expected.log_prob_true, abs=1e-5)
    assert max(abs(a - b) for a, b in zip(control.log_prob_true, full_size.log_prob_true)) > 1e-3
