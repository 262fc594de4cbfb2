"""Scoring backends: one interface, a registry of implementations, and the loader that picks one.

* ``protocol``: ``ScoringBackend`` and ``EpisodeScoring``, what every backend
  provides and guarantees, and the errors it raises;
* ``registry``: backend name -> loader, ``BACKEND_NAMES``;
* ``factory``: ``load_scorer(config)``, dispatching on ``config.backend``;
* ``transformers_qwen``: the in-process transformers backend (``"transformers"``).

docs/scoring.md ("Adding a backend") walks through adding one.
"""

from topreward_ros.scoring.backends.protocol import EpisodeScoring, ScoringBackend
from topreward_ros.scoring.backends.registry import BACKEND_NAMES, DEFAULT_BACKEND

__all__ = ["BACKEND_NAMES", "DEFAULT_BACKEND", "EpisodeScoring", "ScoringBackend"]
