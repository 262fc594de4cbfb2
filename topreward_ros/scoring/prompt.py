"""The TOPReward prompt, exactly as the paper and its released code build it.

No chat template: the paper measured -47% VOC on Qwen with one. The input is
the opened user turn, the video, then the statement, with no system turn, no
``<|im_end|>`` and no assistant turn, and it ends with the answer token whose
probability is the reward::

    <|im_start|>user\\n<video>The above video shows a robot manipulation
    trajectory that completes the following task: {instruction} Decide whether
    the above statement is True or not. The answer is: True

The instruction is inserted verbatim (no added period).

The video block: in the released code the chat template writes
``<|vision_start|><|video_pad|><|vision_end|>`` and the transformers version
of that time (4.57) replaced this whole triple by the per-temporal-patch
blocks ``<t seconds><|vision_start|><|video_pad|>...<|vision_end|>``. Newer
transformers (5.x) replace only the ``<|video_pad|>`` and would leave an extra
``<|vision_start|>`` / ``<|vision_end|>`` around the blocks, a layout the model
never saw in training. We therefore write the bare ``<|video_pad|>``
placeholder, which gives the released layout on transformers 5.x.
"""

from __future__ import annotations

from collections.abc import Iterable

from topreward_ros.scoring.errors import InstructionError

#: Opens the user turn (no system turn before it).
PROMPT_HEADER = "<|im_start|>user\n"
#: Placeholder the Qwen-VL processor expands into the timestamped video blocks.
VIDEO_PLACEHOLDER = "<|video_pad|>"
#: Statement text before the instruction.
STATEMENT_PREFIX = "The above video shows a robot manipulation trajectory that completes the following task: "
#: Question after the instruction, up to (not including) the answer token.
QUESTION = " Decide whether the above statement is True or not. The answer is:"
#: The scored answer: its log-probability is the reward. One token (id 3007 in Qwen).
ANSWER_TRUE = " True"
#: Read from the same position as ANSWER_TRUE, for free.
ANSWER_FALSE = " False"

#: Any text of this shape would be read as a control token by Qwen tokenizers.
_CONTROL_MARKERS = ("<|", "|>")


def validate_instruction(instruction: object, special_tokens: Iterable[str] = ()) -> str:
    """Return the instruction unchanged, or raise ``InstructionError``.

    Rejects non-strings, empty or whitespace-only text, and text containing
    control tokens (``<|im_end|>``, ``<|video_pad|>``, ...): those would
    silently change the prompt structure or the number of video placeholders.
    """
    if not isinstance(instruction, str):
        raise InstructionError(f"instruction must be a string, got {type(instruction).__name__}")
    if not instruction.strip():
        raise InstructionError(f"instruction must contain text, got {instruction!r}")
    for token in special_tokens:
        if token and token in instruction:
            raise InstructionError(f"instruction must not contain the model control token {token!r}: {instruction!r}")
    if all(marker in instruction for marker in _CONTROL_MARKERS):
        start = instruction.find("<|")
        end = instruction.find("|>", start)
        if start != -1 and end != -1:
            raise InstructionError(
                f"instruction must not contain control-token syntax {instruction[start : end + 2]!r}: {instruction!r}"
            )
    return instruction


def statement_text(instruction: str) -> str:
    """Everything after the video block, ending with the answer token."""
    return f"{STATEMENT_PREFIX}{instruction}{QUESTION}{ANSWER_TRUE}"


def build_prompt(instruction: str) -> str:
    """The full prompt with the video placeholder, as handed to the processor."""
    validate_instruction(instruction)
    return f"{PROMPT_HEADER}{VIDEO_PLACEHOLDER}{statement_text(instruction)}"
