"""The paper's prompt text and instruction validation (no model needed)."""

from __future__ import annotations

import pytest

from topreward_ros.scoring import InstructionError, build_prompt
from topreward_ros.scoring.prompt import statement_text, validate_instruction


def test_prompt_is_the_papers_text_without_chat_template() -> None:
    assert build_prompt("stack the cups") == (
        "<|im_start|>user\n<|video_pad|>The above video shows a robot manipulation trajectory that completes "
        "the following task: stack the cups Decide whether the above statement is True or not. "
        "The answer is: True"
    )


def test_instruction_is_inserted_verbatim() -> None:
    # No added period, no stripping, no case change.
    assert "task:  Fold the towel.  Decide" in statement_text(" Fold the towel. ")


@pytest.mark.parametrize("bad", ["", " ", "\n"])
def test_blank_instruction_is_rejected(bad: str) -> None:
    with pytest.raises(InstructionError, match="instruction must contain text"):
        build_prompt(bad)


def test_non_string_instruction_is_rejected() -> None:
    with pytest.raises(InstructionError, match="instruction must be a string, got NoneType"):
        validate_instruction(None)


def test_control_token_syntax_is_rejected() -> None:
    with pytest.raises(InstructionError, match=r"control-token syntax '<\|vision_start\|>'"):
        validate_instruction("look <|vision_start|> here")


def test_listed_special_tokens_are_rejected() -> None:
    with pytest.raises(InstructionError, match="control token '</s>'"):
        validate_instruction("end</s>", special_tokens=["</s>"])


def test_ordinary_punctuation_is_fine() -> None:
    assert validate_instruction("move <left> arm | then stop") == "move <left> arm | then stop"
