"""The node's model slot on the real tiny Qwen3-VL: loads, failures, stale loads, release.

The hooks are plain recorders of what the slot hands its owner; no ROS.
Background loads are waited for on events the hooks set, never on time.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from topreward_ros.node.diagnostics import ModelState
from topreward_ros.node.model_slot import ModelSlot, SlotHooks
from topreward_ros.scoring import ScorerConfig

WAIT_S = 120.0  # an upper bound for a slow machine, not a timing assertion


class Owner:
    """What a node would do with the slot's calls: record them."""

    def __init__(self, model: str, retry_s: float = 30.0) -> None:
        self.model = model
        self.retry_s = retry_s
        self.installed: list[Any] = []
        self.loads: list[tuple[Any, bool]] = []
        self.failures: list[str] = []
        self.lines: list[str] = []
        self.before: list[str] = []
        self.hold = threading.Event()
        self.hold.set()
        self.loaded_event = threading.Event()

    def config(self) -> ScorerConfig:
        return ScorerConfig(model=self.model, device="cpu", torch_threads=1, local_files_only=True)

    def before_load(self, config: ScorerConfig) -> None:
        self.before.append(config.model)
        assert self.hold.wait(WAIT_S)

    def loaded(self, scorer: Any, replaced: bool) -> None:
        self.loads.append((scorer, replaced))
        self.loaded_event.set()

    def hooks(self) -> SlotHooks:
        return SlotHooks(
            config=self.config,
            retry_s=lambda: self.retry_s,
            before_load=self.before_load,
            install=self.installed.append,
            loaded=self.loaded,
            failed=self.failures.append,
            info=self.lines.append,
        )


def test_an_invalid_configuration_fails_and_is_retried_when_due(tmp_path: Path) -> None:
    owner = Owner("")  # ScorerConfig refuses an empty model name
    slot = ModelSlot(owner.hooks())
    error = slot.load_now("configure")
    assert error is not None and error.startswith("invalid model configuration: ")
    assert owner.failures == [error] and owner.before == [] and owner.installed == []
    view = slot.view(now=0.0)
    assert (view.state, view.attempts, view.model_id) == (ModelState.FAILED, 1, None)
    assert view.error.message == error
    owner.retry_s = 0.0
    owner.model = str(tmp_path / "missing")
    assert slot.load_now("configure again") is not None
    assert slot.retry_due(float("inf"))
    slot.retry_failed_loads = False  # a managed node is configured again instead
    assert not slot.retry_due(float("inf"))


def test_a_missing_model_fails_with_its_name(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    owner = Owner(str(missing))
    slot = ModelSlot(owner.hooks())
    error = slot.load_now("configure")
    assert error is not None and error.startswith(f"model {str(missing)!r} failed to load: ")
    assert owner.before == [str(missing)]
    assert owner.lines == [f"loading model {str(missing)!r} (configure)"]
    assert slot.state == ModelState.FAILED and not slot.ready and slot.scorer is None


def test_load_replace_and_release(tiny_model_dir: Path) -> None:
    owner = Owner(str(tiny_model_dir))
    slot = ModelSlot(owner.hooks())
    assert slot.load_now("configure") is None
    first = slot.scorer
    assert first is not None and slot.ready and first.model_id == str(tiny_model_dir)
    assert owner.installed == [first] and owner.loads == [(first, False)]
    view = slot.view(now=0.0)
    assert (view.state, view.attempts, view.model_id) == (ModelState.LOADED, 1, str(tiny_model_dir))
    assert view.load_time_s > 0.0
    assert slot.load_now("activate") is None
    second = slot.scorer
    assert second is not first and owner.loads[-1] == (second, True)
    assert slot.release()
    assert owner.installed[-1] is None and slot.scorer is None and not slot.ready
    assert slot.state == ModelState.NOT_LOADED
    assert second.model is None  # the scorer gave its weights up
    assert not slot.release()  # nothing left to release


def test_a_load_made_stale_by_a_change_is_dropped_and_loaded_again(tiny_model_dir: Path) -> None:
    owner = Owner(str(tiny_model_dir))
    slot = ModelSlot(owner.hooks())
    owner.hold.clear()  # the first background load waits before loading
    slot.start("start-up")
    assert slot.state == ModelState.LOADING
    slot.start("another reason")  # a load is running: no second one
    slot.invalidate()  # a model parameter changed while it ran
    owner.hold.set()
    assert owner.loaded_event.wait(WAIT_S), owner.failures
    # The stale scorer was never installed; the fresh load was.
    assert len(owner.loads) == 1 and owner.installed == [owner.loads[0][0]]
    assert owner.loads[0] == (slot.scorer, False)
    assert owner.before == [str(tiny_model_dir)] * 2
    assert [line for line in owner.lines if line.startswith("loading model")] == [
        f"loading model {str(tiny_model_dir)!r} (start-up)",
        f"loading model {str(tiny_model_dir)!r} (parameter change)",
    ]
    assert slot.view(now=0.0).attempts == 2
    slot.release()
