"""``load_scorer``: the scoring backend a configuration names, loaded.

Callers (the node, the offline commands, the Ray replicas, ``topreward
check``) load a model only through here, and hold the result as a
``ScoringBackend`` (``protocol.py``), never as a backend's own class.
"""

from __future__ import annotations

from topreward_ros.scoring.backends.protocol import ScoringBackend
from topreward_ros.scoring.backends.registry import backend_loader
from topreward_ros.scoring.config import ScorerConfig


def load_scorer(config: ScorerConfig | None = None) -> ScoringBackend:
    """Load the model of ``config`` with the backend ``config.backend`` names.

    Raises ``ModelLoadError`` when the backend is unknown or the model cannot
    be loaded (``BackendUnavailableError`` when the backend's libraries are
    missing) and ``ModelOutOfMemoryError`` when it does not fit in memory.
    """
    config = config or ScorerConfig()
    return backend_loader(config.backend)(config)
