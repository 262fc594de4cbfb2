"""Success thresholds: one global value and, optionally, one per task instruction.

``topreward eval`` may find that tasks differ in how high their raw scores
climb; ``calibrated.yaml`` can then hold a threshold per instruction next to
the global one, which every instruction without its own falls back to. The
node, ``topreward bag``, ``topreward lerobot`` and ``topreward relabel`` all
look thresholds up here, by the instruction's text with surrounding and
repeated whitespace ignored (case kept: the model sees the case).

A ROS 2 parameter cannot be a map, so a parameters file holds the map as
two lists of equal length (``task_instructions``, ``task_success_thresholds``);
``thresholds_from_params`` is the one reader of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Parameters holding the per-task map: instructions and their thresholds, in the same order.
TASK_INSTRUCTIONS_PARAM = "task_instructions"
TASK_THRESHOLDS_PARAM = "task_success_thresholds"


def instruction_key(instruction: str) -> str:
    """The text an instruction is matched by (whitespace runs as one space, ends stripped)."""
    return " ".join(instruction.split())


def _check_threshold(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value) or value > 0:
        raise ValueError(f"{what} is a log-probability and must be <= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SuccessThresholds:
    """The global threshold and per-task ones (instruction text -> nats)."""

    default: float
    per_task: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        _check_threshold(self.default, "success_threshold")
        seen: set[str] = set()
        for instruction, value in self.per_task:
            key = instruction_key(instruction) if isinstance(instruction, str) else ""
            if not key:
                raise ValueError(f"a per-task threshold needs a non-empty instruction, got {instruction!r}")
            if key in seen:
                raise ValueError(f"instruction {instruction!r} has two per-task thresholds")
            seen.add(key)
            _check_threshold(value, f"the threshold of {instruction!r}")

    @classmethod
    def of(cls, default: float, per_task: Mapping[str, float] | None = None) -> SuccessThresholds:
        return cls(float(default), tuple((instruction_key(k), float(v)) for k, v in sorted((per_task or {}).items())))

    @property
    def task_map(self) -> dict[str, float]:
        return dict(self.per_task)

    def for_instruction(self, instruction: str | None) -> float:
        """The instruction's own threshold, else the global one."""
        if instruction is not None:
            key = instruction_key(instruction)
            for task, value in self.per_task:
                if task == key:
                    return value
        return self.default

    def is_per_task(self, instruction: str | None) -> bool:
        return instruction is not None and instruction_key(instruction) in self.task_map


def thresholds_from_params(params: Mapping[str, Any], default: float) -> SuccessThresholds:
    """The thresholds a parameters file (or the node's parameters) sets.

    ``success_threshold`` (else ``default``) is the global one;
    ``task_instructions`` and ``task_success_thresholds``, two lists of equal
    length, the per-task map. A bad value raises ValueError naming it.
    """
    instructions = params.get(TASK_INSTRUCTIONS_PARAM) or []
    values = params.get(TASK_THRESHOLDS_PARAM) or []
    if not isinstance(instructions, (list, tuple)) or not all(isinstance(i, str) for i in instructions):
        raise ValueError(f"{TASK_INSTRUCTIONS_PARAM} must be a list of instructions, got {instructions!r}")
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"{TASK_THRESHOLDS_PARAM} must be a list of numbers, got {values!r}")
    if len(instructions) != len(values):
        raise ValueError(
            f"{TASK_INSTRUCTIONS_PARAM} has {len(instructions)} entries but "
            f"{TASK_THRESHOLDS_PARAM} has {len(values)}: they pair up one to one"
        )
    global_value = params.get("success_threshold", default)
    pairs = tuple(
        (instruction_key(i), _check_threshold(v, f"the threshold of {i!r}")) for i, v in zip(instructions, values)
    )
    return SuccessThresholds(_check_threshold(global_value, "success_threshold"), pairs)
