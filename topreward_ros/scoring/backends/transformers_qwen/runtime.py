"""Where and how the transformers backend runs: torch, device, dtype, hub location, memory errors.

Everything the loader decides before it reads a weight: whether torch and
transformers are installed, which device and dtype ``ScorerConfig`` asks
for, whether the hub may be contacted and where its cache is. Also the one
place torch's out-of-memory errors become ``ModelOutOfMemoryError``, the
error every backend raises (``backends.protocol``), so loading, scoring and
extending report running out of memory the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from topreward_ros.scoring.config import ScorerConfig
from topreward_ros.scoring.errors import BackendUnavailableError, ModelLoadError, ModelOutOfMemoryError

_OFFLINE_VALUES = ("1", "true", "yes", "on")


def import_torch() -> Any:
    """The torch module, or ``BackendUnavailableError`` saying what to install."""
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the scoring backend needs torch, torchvision and transformers ({exc}); install the "
            "'model' extra (pip install 'topreward_ros[model]') or requirements/ml.txt"
        ) from exc
    return torch


def hub_offline(config: ScorerConfig) -> bool:
    """True when the hub must not be contacted (config or ``HF_HUB_OFFLINE``)."""
    return config.local_files_only or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _OFFLINE_VALUES


def looks_like_path(model: str) -> bool:
    """A reference that can only be a filesystem path (hub ids are "org/name")."""
    return model.startswith(("/", "./", "../", "~")) or model in (".", "..")


def local_model_dir(model: str, doing: str) -> Path | None:
    """The local directory ``model`` names, or ``None`` when it is a hub id.

    A reference is local when it is an existing directory or can only be a
    path. A path with no directory behind it raises ``ModelLoadError`` here
    ("cannot ``doing`` ..."): transformers would read it as a malformed hub id
    and say so, which names the wrong problem.
    """
    local = Path(model).expanduser()
    if not (local.is_dir() or looks_like_path(model)):
        return None
    if not local.is_dir():
        raise ModelLoadError(
            f"cannot {doing} {model!r}: local directory {local} does not exist. "
            "Pass an existing directory written by save_pretrained, or a hub id such as "
            "'Qwen/Qwen3-VL-8B-Instruct'."
        )
    return local


def default_cache_dir() -> str:
    """The Hugging Face hub cache a ``cache_dir`` of None means."""
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # pragma: no cover - hub library always ships with transformers
        return os.path.join(os.environ.get("HF_HOME", "~/.cache/huggingface"), "hub")


def resolve_device(config: ScorerConfig) -> str:
    """The torch device ``config.device`` names; ``ModelLoadError`` when CUDA is asked for but unusable."""
    torch = import_torch()
    if config.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        from topreward_ros.scoring.cuda import cuda_unavailable_message

        # Names the driver, the CUDA version of the torch build and the fix.
        raise ModelLoadError(cuda_unavailable_message(config.device))
    return config.device


def resolve_dtype(config: ScorerConfig, device: str) -> Any:
    """The torch dtype of the weights: ``auto`` is bfloat16 on CUDA, float32 on the CPU."""
    torch = import_torch()
    if config.dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, config.dtype)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is torch (or the host) running out of memory.

    torch raises ``torch.OutOfMemoryError`` for CUDA allocations, but some
    kernels and older builds raise a plain ``RuntimeError`` whose message
    says "out of memory"; the host raises ``MemoryError``.
    """
    if isinstance(exc, MemoryError):
        return True
    oom_type = None
    try:
        import torch

        oom_type = getattr(torch, "OutOfMemoryError", None)
    except ImportError:  # pragma: no cover - the backend is not loaded without torch
        pass
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


@contextmanager
def out_of_memory_as_model_error(what: str, model_id: str, device: str) -> Iterator[None]:
    """Raise ``ModelOutOfMemoryError`` (chained) for an out-of-memory error in the block.

    ``what`` says what was being done ("loading", "scoring 40 frames"), so
    the message tells the user which step did not fit. Other errors pass
    through unchanged.
    """
    try:
        yield
    except ModelOutOfMemoryError:
        raise
    except (MemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        raise ModelOutOfMemoryError(
            f"out of memory {what} with model {model_id!r} on {device}: {type(exc).__name__}: {exc}. "
            "Free the device, use a smaller model or dtype, or lower max_frames / view_size."
        ) from exc
