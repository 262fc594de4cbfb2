"""The random Qwen3-VL builder: real vocabulary, exact reload, idempotent, deterministic."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from topreward_ros.tools.tiny_model import MARKER_FILE, build_model, build_tiny_model, main


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tokenizer_has_the_real_qwen_ids(tiny_model_dir: Path) -> None:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    assert type(processor).__name__ == "Qwen3VLProcessor"
    tok = processor.tokenizer
    ids = {
        t: tok.convert_tokens_to_ids(t)
        for t in (
            "<|endoftext|>",
            "<|im_start|>",
            "<|im_end|>",
            "<|vision_start|>",
            "<|vision_end|>",
            "<|image_pad|>",
            "<|video_pad|>",
        )
    }
    assert ids == {
        "<|endoftext|>": 151643,
        "<|im_start|>": 151644,
        "<|im_end|>": 151645,
        "<|vision_start|>": 151652,
        "<|vision_end|>": 151653,
        "<|image_pad|>": 151655,
        "<|video_pad|>": 151656,
    }
    assert tok.encode(" True", add_special_tokens=False) == [3007]
    assert tok.encode("True", add_special_tokens=False) == [2514]
    assert tok.encode("False", add_special_tokens=False) == [4049]
    assert tok.encode("<|im_start|>user\n", add_special_tokens=False) == [151644, 872, 198]
    assert tok.decode(tok.encode("Pick up the cup. Done!")) == "Pick up the cup. Done!"


def test_model_reloads_exactly(tiny_model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForImageTextToText

    loaded = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    assert type(loaded).__name__ == "Qwen3VLForConditionalGeneration"
    fresh = build_model("tiny", seed=0)
    a, b = loaded.state_dict(), fresh.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.config.video_token_id == 151656 and loaded.config.vision_start_token_id == 151652


def test_seed_changes_weights() -> None:
    import torch

    a = build_model("tiny", seed=0).state_dict()
    b = build_model("tiny", seed=1).state_dict()
    assert not torch.equal(a["lm_head.weight"], b["lm_head.weight"])


def test_build_is_deterministic_and_idempotent(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = build_tiny_model(tmp_path / "m")
    assert (out / MARKER_FILE).is_file()
    for name in ("model.safetensors", "tokenizer.json", "config.json", "processor_config.json"):
        assert _digest(out / name) == _digest(tiny_model_dir / name), name
    # A second build finds the finished directory and writes nothing.
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert build_tiny_model(out) == out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_incomplete_directory_is_rebuilt(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "partial"
    out.mkdir()
    (out / "config.json").write_text("{}")  # an interrupted build: no marker
    assert main([str(out)]) == 0
    assert (out / MARKER_FILE).is_file()
    assert _digest(out / "model.safetensors") == _digest(tiny_model_dir / "model.safetensors")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".partial.")]


def test_bad_size_is_rejected(tmp_path: Path) -> None:
    from topreward_ros.tools.tiny_model import TinyModelError, build_random_model

    with pytest.raises(TinyModelError, match="size must be 'tiny' or '2b', got '7b'"):
        build_random_model(tmp_path / "x", size="7b")  # type: ignore[arg-type]
