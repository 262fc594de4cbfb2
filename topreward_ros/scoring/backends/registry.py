"""The known scoring backends: name -> where its loader lives.

A backend is imported only when a configuration names it, so a backend
whose libraries are not installed costs nothing to the others. Adding one
is one line here (``"name": "package.module:function"``, the function taking
a ``ScorerConfig`` and returning a ``ScoringBackend``) and its own folder
beside ``transformers_qwen``; ``ScorerConfig.backend``, the node parameter
and the ``--backend`` option accept every name listed.

This module imports nothing of the package but the errors, so the
configuration can validate against ``BACKEND_NAMES`` without a cycle.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from topreward_ros.scoring.errors import BackendUnavailableError, ModelLoadError

#: Backend name -> "module:function" of its loader.
BACKENDS: dict[str, str] = {"transformers": "topreward_ros.scoring.backends.transformers_qwen.loader:load"}
#: The names ``ScorerConfig.backend`` accepts, in registry order.
BACKEND_NAMES: tuple[str, ...] = tuple(BACKENDS)
#: The backend used when none is named.
DEFAULT_BACKEND = "transformers"


def backend_loader(name: str) -> Callable[[Any], Any]:
    """The loader function of backend ``name``, imported now.

    ``ModelLoadError`` names the known backends when ``name`` is not one of
    them; ``BackendUnavailableError`` (a ``ModelLoadError``) when its module
    cannot be imported (a library it needs at import time is missing).
    """
    target = BACKENDS.get(name)
    if target is None:
        raise ModelLoadError(f"unknown scoring backend {name!r}; known backends: {', '.join(BACKEND_NAMES)}")
    module_name, _, function = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"scoring backend {name!r} cannot be imported ({type(exc).__name__}: {exc}); install the libraries it needs"
        ) from exc
    return getattr(module, function)
