"""What every scoring backend provides: the interface the node, the offline tools and the checks use.

A backend turns frames, their capture stamps and a task instruction into
``Score``s: log p(" True") (and log p(" False")) of the answer token under
the full-vocabulary softmax at the last prompt position, the prompt being
``scoring.prompt``'s with the frames as one video. It is loaded by
``load_scorer`` (``factory.py``) from a ``ScorerConfig`` through the registry
(``registry.py``); callers type what they hold as ``ScoringBackend`` and
``EpisodeScoring`` and use nothing beyond them. ``test_backend_conformance.py``
checks a backend against every guarantee below.

Errors, the same whatever the backend:

* ``InstructionError`` for an unusable instruction (empty, or holding the
  model's control tokens), from ``validate_instruction``, ``score``,
  ``curve`` and ``start_episode``;
* ``FrameError`` for unusable frames or stamps (``frames.check_frames``:
  HxWx3 uint8 of one shape, integer nanosecond stamps strictly increasing,
  one per frame, at least one frame);
* ``ModelLoadError`` when the model cannot be found or loaded (naming the
  model, where it was looked for and what to do), ``BackendUnavailableError``
  (a ``ModelLoadError``) when the backend's own libraries are missing, and
  ``ModelLoadError`` too for scoring with a released backend;
* ``ModelOutOfMemoryError`` (a ``MemoryError``) when the accelerator or the
  host runs out of memory, whether loading, scoring or extending: a backend
  translates its library's error (torch's ``OutOfMemoryError``, a
  ``RuntimeError`` saying "out of memory", a ``MemoryError``, a server's
  out-of-memory reply) and chains it (``raise ... from exc``). A caller that
  catches it may ``release()`` the backend and load it again smaller.

The protocols are ``runtime_checkable``: ``isinstance(x, ScoringBackend)``
checks that every member is present (not their signatures).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from topreward_ros.scoring.curve import ProgressCurve
from topreward_ros.scoring.score import Score


@runtime_checkable
class EpisodeScoring(Protocol):
    """One episode scored incrementally: frames are appended, the prefix so far is scored.

    Guarantees: after any sequence of ``extend`` calls, ``score()`` equals
    (to ~1e-5 nats in float32) the backend's uncached
    ``score(all frames, all stamps, instruction, max_frames)`` of the same
    frames, with the ``max_frames`` the session was started with. A bad
    ``extend`` raises ``FrameError`` and leaves the session as it was.
    """

    #: Times the backend had to recompute its reusable state from scratch
    #: (0 for a backend that keeps none).
    cache_rebuilds: int
    #: Of the last ``score()``'s prompt: the tokens taken from reused state,
    #: and the prompt's length (both 0 when the backend does not know).
    last_reused_tokens: int
    last_prompt_tokens: int

    @property
    def num_frames(self) -> int:
        """Frames appended so far."""
        ...

    @property
    def stamps_ns(self) -> tuple[int, ...]:
        """Their capture stamps, in order."""
        ...

    @property
    def cached_tokens(self) -> int:
        """Prompt tokens held in reusable state between scores (0 when none)."""
        ...

    @property
    def cache_bytes(self) -> int:
        """Bytes that state holds on the device between scores (0 when none)."""
        ...

    def extend(self, frames: Sequence[np.ndarray], stamps_ns: Sequence[int]) -> None:
        """Append frames with their stamps (strictly after the last one); checked before stored."""
        ...

    def score(self) -> Score:
        """Score every frame appended so far; ``FrameError`` when there is none.

        ``Score.num_frames`` is ``num_frames``; calling it again without new
        frames returns the same score.
        """
        ...


@runtime_checkable
class ScoringBackend(Protocol):
    """A loaded model that scores video prefixes (see the module doc for the errors).

    Thread-safe: a node may share one backend between callbacks.
    """

    #: The model reference it was loaded from (hub id, directory, or a
    #: server's model name): written into every result.
    model_id: str

    def validate_instruction(self, instruction: str) -> str:
        """The instruction unchanged, or ``InstructionError`` (empty, or holding control tokens)."""
        ...

    def score(
        self, frames: Sequence[np.ndarray], stamps_ns: Sequence[int], instruction: str, max_frames: int | None = None
    ) -> Score:
        """The reference score of one prefix, computed from nothing cached.

        ``max_frames``: the frames are sized as in an episode of at most that
        many (what a session started with it does); None sizes for these
        frames. Different frames or instructions give different scores.
        """
        ...

    def start_episode(self, instruction: str, max_frames: int | None = None) -> EpisodeScoring:
        """A new incremental episode; ``ValueError`` when ``max_frames`` is not a positive integer."""
        ...

    def curve(
        self,
        frames: Sequence[np.ndarray],
        stamps_ns: Sequence[int],
        instruction: str,
        num_prefixes: int | None = None,
        use_cache: bool = True,
        max_frames: int | None = None,
    ) -> ProgressCurve:
        """Scores of ``num_prefixes`` growing prefixes (``schedule.prefix_lengths``; default the config's).

        Each point equals (~1e-5 nats) the uncached ``score`` of that prefix
        with ``max_frames`` (default: all the frames); ``use_cache`` only
        changes the cost. ``model_id`` is recorded in the curve.
        """
        ...

    def release(self) -> None:
        """Free the model's memory (accelerator and host): drop references, collect, empty caches.

        Idempotent: a second call does nothing and raises nothing. Scoring
        afterwards raises ``ModelLoadError``; load again to score.
        """
        ...
