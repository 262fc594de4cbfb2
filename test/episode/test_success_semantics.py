"""Success semantics of one episode, on the real tiny Qwen3-VL.

What the node and ``topreward bag`` share (``EpisodeRunner``) must hold:

* success is a verdict about the episode: once declared it stays declared
  for the rest of the episode, whatever run-time setting changes (threshold,
  consecutive count, success window, sampling and window settings), and it
  is never declared a second time for the same episode;
* a new episode starts undecided and can succeed on its own;
* a tick whose episode (or window) was replaced while the model ran returns
  nothing, so nothing is published for it, and its score feeds no episode.

The concurrent cases run the real model: a forward pre-hook on the model
pauses the tick inside the model's forward while the test thread starts a
new episode, as an instruction callback would.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from topreward_ros.episode.records import EpisodeSettings, TickResult
from topreward_ros.episode.runner import EpisodeRunner
from topreward_ros.scoring import ScorerConfig, SuccessDetector, load_scorer, prepare_view

MS = 1_000_000
INSTRUCTION = "put the red block in the bowl"
#: Every score of the random model is above this: success as soon as allowed.
ALWAYS = -1.0e9
#: log p <= 0 is never above this: success impossible.
NEVER = 0.0


@pytest.fixture(scope="module")
def scorer(tiny_model_dir):
    return load_scorer(ScorerConfig(model=str(tiny_model_dir), device="cpu", torch_threads=1))


def settings(**overrides) -> EpisodeSettings:
    values = dict(view_size=64, success_threshold=ALWAYS, success_window=3, success_consecutive=2)
    values.update(overrides)
    return EpisodeSettings(**values)


class Camera:
    """Frames at 2 fps of capture time, each with its own content."""

    def __init__(self) -> None:
        self.index = 0

    def offer(self, runner: EpisodeRunner, count: int = 1) -> None:
        for _ in range(count):
            rng = np.random.default_rng(self.index)
            image = rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8)
            stamp = self.index * 500 * MS
            self.index += 1
            if runner.wants(0, stamp):
                runner.add(0, stamp, prepare_view(image, runner.settings.view_size), "cam")


def tick(runner: EpisodeRunner, camera: Camera) -> TickResult:
    camera.offer(runner)
    result = runner.tick()
    assert result is not None
    return result


def run_until_success(runner: EpisodeRunner, camera: Camera) -> list[TickResult]:
    results = [tick(runner, camera)]
    while not results[-1].success:
        assert len(results) < 10, "success never fired with a threshold every score exceeds"
        results.append(tick(runner, camera))
    return results


# ----------------------------------------------------------------------------
# The detector alone.
# ----------------------------------------------------------------------------
def test_reconfigure_keeps_the_verdict_and_the_fitting_scores() -> None:
    d = SuccessDetector(threshold=-8.0, window=3, consecutive=2)
    for raw in (-10.0, -7.0, -6.0, -5.0):
        verdict = d.update(raw)
    assert verdict.fired and d.fired
    d.reconfigure(window=2)
    # The two latest scores fit in the new window: the score is their mean with the next one.
    later = d.update(-20.0)
    assert later.score == pytest.approx((-5.0 + -20.0) / 2)
    assert later.success and not later.fired
    d.reconfigure(threshold=-1.0, consecutive=1)
    assert d.update(-2.0).success
    d.restart_evidence()
    after = d.update(-3.0)
    assert after.score == pytest.approx(-3.0) and after.success and not after.fired
    d.reset()  # a new episode: undecided again
    assert not d.fired and d.success_score is None


def test_a_new_window_restarts_the_streak() -> None:
    d = SuccessDetector(threshold=-8.0, window=1, consecutive=2)
    assert not d.update(-5.0).fired  # streak 1 of 2
    d.reconfigure(window=2)
    # The streak counted means over one score: it starts again from here.
    assert not d.update(-5.0).fired  # mean(-5, -5): streak 1
    assert d.update(-5.0).fired


def test_threshold_and_consecutive_changes_keep_the_streak() -> None:
    d = SuccessDetector(threshold=-8.0, window=1, consecutive=3)
    d.update(-5.0)
    d.update(-5.0)
    d.reconfigure(consecutive=2, threshold=-6.0)
    assert d.update(-5.5).fired


def test_reconfigure_validates() -> None:
    d = SuccessDetector(threshold=-8.0)
    with pytest.raises(ValueError, match="window must be an integer >= 1"):
        d.reconfigure(window=0)
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        d.reconfigure(threshold=float("nan"))
    assert d.window == 3 and d.threshold == -8.0


# ----------------------------------------------------------------------------
# EpisodeRunner with the tiny model.
# ----------------------------------------------------------------------------
CHANGES = [
    pytest.param({"success_window": 1}, id="success_window-down"),
    pytest.param({"success_window": 5}, id="success_window-up"),
    pytest.param({"success_consecutive": 7}, id="success_consecutive"),
    pytest.param({}, id="threshold-only"),
    pytest.param({"sample_fps": 4.0}, id="sample_fps-restarts-window"),
    pytest.param({"max_frames": 8}, id="max_frames-restarts-window"),
    pytest.param({"sync_tolerance_s": 0.2}, id="sync_tolerance-restarts-window"),
    pytest.param({"view_size": 96}, id="view_size-restarts-window"),
]


@pytest.mark.parametrize("change", CHANGES)
@pytest.mark.parametrize("threshold_after", [ALWAYS, NEVER], ids=["could-fire-again", "cannot-pass"])
def test_success_stays_latched_across_setting_changes(scorer, change, threshold_after) -> None:
    runner = EpisodeRunner(scorer, settings())
    camera = Camera()
    episode = runner.start(INSTRUCTION)
    before = run_until_success(runner, camera)
    assert [r.success_fired for r in before].count(True) == 1
    # With the threshold unchanged (ALWAYS) a rebuilt detector would fire again;
    # with NEVER a rebuilt detector would report no success. Neither may happen.
    runner.update_settings(dataclasses.replace(runner.settings, success_threshold=threshold_after, **change))
    assert runner.settings.success_threshold == threshold_after
    after = [tick(runner, camera) for _ in range(6)]
    assert runner.episode_id == episode
    for result in after:
        assert result.episode_id == episode
        assert result.success, f"success dropped after {change}"
        assert not result.success_fired, f"success fired again after {change}"
        assert result.success_threshold == threshold_after


def test_a_window_restart_does_not_mix_scores_of_the_old_frames(scorer) -> None:
    runner = EpisodeRunner(scorer, settings(success_threshold=NEVER, success_window=3))
    camera = Camera()
    runner.start(INSTRUCTION)
    for _ in range(4):
        tick(runner, camera)
    runner.update_settings(dataclasses.replace(runner.settings, sample_fps=4.0))
    first = tick(runner, camera)
    # One frame in the new window; the success score is that one score alone.
    assert first.frames_used == 1
    assert first.success_score == pytest.approx(first.log_prob_true)


def test_after_a_success_a_new_episode_decides_on_its_own(scorer) -> None:
    runner = EpisodeRunner(scorer, settings())
    camera = Camera()
    first = runner.start(INSTRUCTION)
    run_until_success(runner, camera)
    second = runner.start("open the drawer")
    results = run_until_success(runner, camera)
    assert {r.episode_id for r in results} == {second} != {first}
    # Undecided at first (3-score window, 2 in a row), then it fires once, for itself.
    assert [r.success for r in results] == [False, False, False, True]
    assert [r.success_fired for r in results] == [False, False, False, True]
    assert results[0].success_score == pytest.approx(results[0].log_prob_true)


class PauseInForward:
    """Holds the model's forward until the test thread has acted (a real forward, not a fake)."""

    def __init__(self, model) -> None:
        self.inside = threading.Event()
        self.go_on = threading.Event()
        self.calls = 0
        # The output head runs in every forward path (full and cached): the tick is
        # inside the model's forward when it is reached.
        self.handle = model.get_output_embeddings().register_forward_pre_hook(self._hook)

    def _hook(self, module, args):  # noqa: ARG002 - torch hook signature
        self.calls += 1
        if self.calls == 1:
            self.inside.set()
            assert self.go_on.wait(60), "the test thread never released the forward"

    def remove(self) -> None:
        self.handle.remove()


def _tick_concurrently(runner: EpisodeRunner, scorer, act) -> tuple[TickResult | None, int]:
    """Run a tick on another thread and call ``act`` while its model forward runs."""
    pause = PauseInForward(scorer.model)
    out: dict[str, TickResult | None] = {}
    thread = threading.Thread(target=lambda: out.setdefault("result", runner.tick()))
    try:
        thread.start()
        assert pause.inside.wait(60), "the tick never reached the model"
        act()
    finally:
        pause.go_on.set()
        thread.join(60)
        pause.remove()
    assert not thread.is_alive()
    return out["result"], pause.calls


@pytest.mark.parametrize("rebuild", [False, True], ids=["incremental", "rebuilding-session"])
def test_a_tick_voided_by_a_new_episode_returns_nothing(scorer, rebuild) -> None:
    runner = EpisodeRunner(scorer, settings())
    camera = Camera()
    old = runner.start(INSTRUCTION)
    run_until_success(runner, camera)  # the old episode has succeeded
    # From now on progress is 0 at an episode's first score (nothing reaches 0 nats).
    runner.update_settings(dataclasses.replace(runner.settings, success_threshold=NEVER))
    if rebuild:
        runner.set_scorer(scorer)  # the next tick rebuilds its session from the window
    camera.offer(runner)
    holder: dict[str, str] = {}
    result, calls = _tick_concurrently(
        runner, scorer, lambda: holder.setdefault("new", runner.start("open the drawer"))
    )
    assert calls >= 1, "the model really ran"
    assert result is None, "a score of the old episode must not come out after a new one started"
    assert runner.episode_id == holder["new"] != old
    # The voided score fed neither episode: the new one starts from its own first score.
    first = tick(runner, camera)
    assert first.episode_id == holder["new"]
    assert first.frames_used == 1
    assert not first.success and first.progress == 0.0
    assert first.success_score == pytest.approx(first.log_prob_true)


def test_a_tick_voided_by_a_window_restart_returns_nothing(scorer) -> None:
    runner = EpisodeRunner(scorer, settings(success_threshold=NEVER))
    camera = Camera()
    episode = runner.start(INSTRUCTION)
    for _ in range(3):
        tick(runner, camera)
    camera.offer(runner)
    result, _ = _tick_concurrently(
        runner, scorer, lambda: runner.update_settings(dataclasses.replace(runner.settings, sample_fps=4.0))
    )
    assert result is None
    # The next tick scores the new window alone (not the old session plus new frames).
    camera.offer(runner)
    after = runner.tick()
    assert after is not None and after.episode_id == episode
    samples = runner.samples
    assert after.frame_stamps_ns == tuple(s.stamp_ns for s in samples) and len(samples) == 1
    reference = scorer.score([s.image for s in samples], [s.stamp_ns for s in samples], INSTRUCTION)
    assert after.log_prob_true == pytest.approx(reference.log_prob_true, abs=1e-4)
    assert after.success_score == pytest.approx(after.log_prob_true)
