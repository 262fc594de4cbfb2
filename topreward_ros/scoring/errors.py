"""Errors raised by the scoring core.

Each error says what was wrong with which value and what to do about it, so a
user reading a node log or a CLI message can act without reading the code.
All derive from ``ScoringError`` so callers can catch the family at once; the
input errors also derive from ``ValueError`` because they are bad arguments.
"""

from __future__ import annotations


class ScoringError(Exception):
    """Base class of every error the scoring core raises on purpose."""


class ModelLoadError(ScoringError):
    """The VLM (weights, config or processor) could not be found or loaded."""


class BackendUnavailableError(ModelLoadError, ImportError):
    """The heavy model dependencies (torch, transformers, ...) are not installed."""


class FrameError(ScoringError, ValueError):
    """Frames or their stamps are unusable (wrong shape, dtype, order, count)."""


class InstructionError(ScoringError, ValueError):
    """The task instruction is unusable (empty, or holds model control tokens)."""


class ModelOutOfMemoryError(ScoringError, MemoryError):
    """The backend ran out of (accelerator or host) memory loading the model or scoring.

    Backends raise this in place of their library's own error (torch's
    ``OutOfMemoryError``, a server's 507, ...) so a caller reacts to running
    out of memory without knowing which backend it holds.
    """
