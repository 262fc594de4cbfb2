"""The node's one scorer: loaded in the background, retried after a failure, released on demand.

A VLM takes from seconds to minutes to load and can fail (a missing checkpoint,
no memory). The node must keep collecting frames and reporting health
meanwhile, so ``ModelSlot`` loads on a background thread and keeps the state
diagnostics report (state, last error, attempts, time to the next retry).

Every model-parameter change bumps a generation counter; a load that started
under an older generation is stale when it ends, its result is dropped and a
fresh load starts. The slot knows nothing of torch: it loads through
``topreward_ros.scoring.load_scorer``, reads ``ModelLoadError`` as a failed
load and any ``MemoryError`` (the backends' ``ModelOutOfMemoryError``) as
running out of memory, and on release drops its references and asks the
scorer to give its memory back (``release()``).
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from topreward_ros.node.diagnostics import ErrorRecord, ModelState, SlotView
from topreward_ros.scoring.config import ScorerConfig
from topreward_ros.scoring.errors import ModelLoadError

if TYPE_CHECKING:
    from topreward_ros.scoring.backends.protocol import ScoringBackend


@dataclass
class SlotHooks:
    """What the slot asks of its owner.

    config: the scorer configuration to load now (raises ValueError when invalid).
    retry_s: seconds to wait before retrying a failed load.
    before_load: runs on the loading thread before the load (a rig check, a log line).
    install: hands the scorer (or None on release) to whoever scores; runs under the slot's lock.
    loaded: a load finished; ``replaced`` tells whether a scorer was loaded before it.
    failed: a load failed, with the message (already recorded as the slot's error).
    info: log a line.
    """

    config: Callable[[], ScorerConfig]
    retry_s: Callable[[], float]
    before_load: Callable[[ScorerConfig], None]
    install: Callable[[ScoringBackend | None], None]
    loaded: Callable[[ScoringBackend, bool], None]
    failed: Callable[[str], None]
    info: Callable[[str], None]


class ModelSlot:
    """Holds at most one scorer; loads, retries and releases it, thread-safely."""

    def __init__(self, hooks: SlotHooks, retry_failed_loads: bool = True) -> None:
        self._hooks = hooks
        self._lock = threading.Lock()
        self._scorer: ScoringBackend | None = None
        self._state = ModelState.NOT_LOADED
        self._error = ErrorRecord()
        self._attempts = 0
        self._loaded_s = 0.0
        self._generation = 0
        self._next_retry = 0.0
        #: Retry a failed load on ``retry_due`` (a managed node is configured again instead).
        self.retry_failed_loads = retry_failed_loads

    # -- reading -------------------------------------------------------------------
    @property
    def scorer(self) -> ScoringBackend | None:
        """The loaded scorer, or None."""
        with self._lock:
            return self._scorer

    @property
    def ready(self) -> bool:
        with self._lock:
            return self._scorer is not None and self._state == ModelState.LOADED

    @property
    def state(self) -> str:
        with self._lock:
            return self._state

    @property
    def error(self) -> ErrorRecord:
        return self._error

    def view(self, now: float) -> SlotView:
        with self._lock:
            return SlotView(
                self._state,
                self._error,
                self._attempts,
                self._next_retry - now,
                self._scorer.model_id if self._scorer is not None else None,
                self._loaded_s,
            )

    def retry_due(self, now: float) -> bool:
        """Is a failed load due to be retried (and retrying allowed)?"""
        with self._lock:
            return self.retry_failed_loads and self._state == ModelState.FAILED and now >= self._next_retry

    # -- loading -------------------------------------------------------------------
    def invalidate(self) -> None:
        """The model's parameters changed: a load running now is stale when it ends."""
        with self._lock:
            self._generation += 1

    def start(self, reason: str) -> None:
        """Load on a background thread, unless a load is running (it re-checks the generation)."""
        with self._lock:
            if self._state == ModelState.LOADING:
                return
            generation = self._begin()
        config = self._config(generation)
        if config is None:
            return
        self._hooks.info(f"loading model {config.model!r} ({reason})")
        threading.Thread(target=self._load, args=(config, generation), name="model-load", daemon=True).start()

    def load_now(self, reason: str) -> str | None:
        """Load before returning, superseding any load running; the error text if it failed."""
        with self._lock:
            self._generation += 1
            generation = self._begin()
        config = self._config(generation)
        if config is None:
            return self._error.message
        self._hooks.info(f"loading model {config.model!r} ({reason})")
        self._load(config, generation)
        with self._lock:
            return None if self._state == ModelState.LOADED else self._error.message

    def _begin(self) -> int:
        """Mark a load as started (caller holds the lock); its generation."""
        self._state = ModelState.LOADING
        self._attempts += 1
        return self._generation

    def _config(self, generation: int) -> ScorerConfig | None:
        try:
            return self._hooks.config()
        except ValueError as exc:
            self._failed(f"invalid model configuration: {exc}", generation)
            return None

    def _load(self, config: ScorerConfig, generation: int) -> None:
        self._hooks.before_load(config)
        started = time.monotonic()
        try:
            from topreward_ros.scoring import load_scorer

            scorer = load_scorer(config)
        except ModelLoadError as exc:
            self._failed(f"model {config.model!r} failed to load: {exc}", generation)
            return
        except Exception as exc:  # out of memory, a broken checkpoint, ...
            kind = "ran out of memory while loading" if isinstance(exc, MemoryError) else "failed to load"
            self._failed(f"model {config.model!r} {kind}: {type(exc).__name__}: {exc}", generation)
            return
        with self._lock:
            stale = generation != self._generation
            if not stale:
                replaced = self._scorer is not None
                self._scorer = scorer
                self._hooks.install(scorer)
                self._state = ModelState.LOADED
                self._loaded_s = time.monotonic() - started
        if stale:
            self._reload_after_change()
            return
        self._hooks.info(f"model {scorer.model_id!r} loaded in {time.monotonic() - started:.1f} s")
        self._hooks.loaded(scorer, replaced)

    def _failed(self, message: str, generation: int) -> None:
        retry_s = self._hooks.retry_s()
        with self._lock:
            stale = generation != self._generation
            self._state = ModelState.FAILED
            self._error.record(message)
            self._next_retry = time.monotonic() + retry_s
        if stale:
            self._reload_after_change()
            return
        self._hooks.failed(message)

    def _reload_after_change(self) -> None:
        with self._lock:
            self._state = ModelState.NOT_LOADED
        self.start("parameter change")

    def put(self, scorer: ScoringBackend) -> None:
        """Hold a scorer loaded elsewhere (a benchmark that loads once and measures ticks)."""
        with self._lock:
            self._scorer = scorer
            self._hooks.install(scorer)
            self._state = ModelState.LOADED

    # -- releasing -----------------------------------------------------------------
    def release(self) -> bool:
        """Drop the scorer and give its memory back; was one loaded?

        A load still running is stale when it ends, and dropped.
        """
        with self._lock:
            self._generation += 1
            scorer: Any = self._scorer
            self._scorer = None
            self._hooks.install(None)
            self._state = ModelState.NOT_LOADED
        if scorer is None:
            return False
        scorer.release()
        del scorer
        gc.collect()
        return True
