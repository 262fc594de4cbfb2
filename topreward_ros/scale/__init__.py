"""Scoring episodes on a Ray cluster (optional: the ``scale`` extra).

Nothing here is imported by the default, in-process engine of ``topreward
bag``, ``lerobot`` or ``eval``; Ray itself is imported only when ``--ray``
is asked for, through :func:`import_ray`, which names the extra to install
when it is missing.

* ``replica.py``: the actor body, one per model replica; it loads the model
  once and scores one episode of any source per call, handing back its files.
* ``engine.py``: the driver; it plans every input, hands episodes to idle
  replicas, writes each episode's files into the output layout and manifest
  atomically, and leaves an episode whose replica died for good to a re-run.
"""

from __future__ import annotations

from types import ModuleType

SCALE_EXTRA = "scale"
INSTALL_HINT = "pip install 'topreward_ros[scale]' from the package directory, or pip install -r requirements/scale.txt"


class RayUnavailableError(RuntimeError):
    """Ray is not installed (or does not import) but --ray was asked for."""


def import_ray() -> ModuleType:
    """Import Ray, or raise ``RayUnavailableError`` naming the extra that provides it."""
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(
            f"--ray needs Ray, which comes with the optional '{SCALE_EXTRA}' extra: {INSTALL_HINT} ({exc})"
        ) from exc
    return ray
