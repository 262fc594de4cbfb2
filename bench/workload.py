"""What the bench scripts feed the code they measure: random models, node messages, a CPU `topreward bag` run.

Several scripts build the same things: random Qwen3-VL models of chosen
dimensions (no pretrained weights can be fetched here, and the costs, not the
scores, are what is measured), the node's camera messages and a node to take
them, and the command line of a `topreward bag` run on the CPU. Building them
in one place keeps the scripts measuring the same workload and keeps the
measuring scripts about their measurements. Nothing heavy is imported until
a function needs it, so a script pays only for what it uses.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
from long_episode import NS, H, W  # bench/ is the script's directory

ROOT = Path(__file__).resolve().parents[1]
#: Where the tiny test model is built (``build_tiny_model`` reuses it when present).
TINY_DIR = ROOT / ".cache" / "tiny-qwen3-vl"


# ----------------------------------------------------------------------------
# Random models.
# ----------------------------------------------------------------------------
def random_qwen3_vl(text_config: dict[str, Any], vision_config: dict[str, Any]) -> Any:
    """A Qwen3-VL with these towers, randomly initialised from seed 0 (fp32, eval mode).

    The vision placeholders get the real Qwen vocabulary's ids, so the real
    processor's prompts work with it.
    """
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    from topreward_ros.tools.tiny_model import QWEN_VL_TOKEN_IDS

    config = Qwen3VLConfig(
        text_config=text_config, vision_config=vision_config, **QWEN_VL_TOKEN_IDS, tie_word_embeddings=True
    )
    torch.manual_seed(0)
    return Qwen3VLForConditionalGeneration(config).eval()


def random_2b_scorer(threads: int) -> Any:
    """A random Qwen3-VL at the real 2B dimensions, built in memory (no 9 GB checkpoint on disk)."""
    import torch

    from topreward_ros.scoring import ScorerConfig, VideoScorer
    from topreward_ros.tools.tiny_model import build_model, build_processor

    torch.set_num_threads(threads)
    config = ScorerConfig(model="random-qwen3-vl-2b", device="cpu", dtype="float32", torch_threads=threads)
    return VideoScorer(
        build_model("2b"),
        build_processor(),
        config,
        model_id=config.model,
        device="cpu",
        dtype=torch.float32,
        family="qwen3_vl",
    )


def tiny_scorer(threads: int) -> Any:
    """The tiny test model from ``TINY_DIR``, loaded as the node loads a model."""
    from topreward_ros.scoring import ScorerConfig, load_scorer

    return load_scorer(ScorerConfig(model=str(TINY_DIR), device="cpu", torch_threads=threads))


#: The long-episode model: Qwen3-VL-2B's layout (head_dim 128, grouped KV heads,
#: deepstack) with one text layer 768 wide and one vision layer 384 wide, so that a
#: tick (two new samples) costs 0.1-1 s on two idle cores.
SMALL_TEXT = {
    "hidden_size": 768,
    "intermediate_size": 2304,
    "num_hidden_layers": 1,
    "num_attention_heads": 6,
    "num_key_value_heads": 2,
}
SMALL_VISION = {
    "hidden_size": 384,
    "intermediate_size": 1536,
    "num_heads": 6,
    "out_hidden_size": 768,
    "depth": 1,
    "deepstack_visual_indexes": [0],
}


def random_small_scorer(threads: int) -> Any:
    """A random Qwen3-VL: 2B layout (head_dim 128, GQA, deepstack), half widths, few layers."""
    import torch

    from topreward_ros.scoring import ScorerConfig, VideoScorer
    from topreward_ros.tools.tiny_model import _text_config, _vision_config, build_processor

    torch.set_num_threads(threads)
    model = random_qwen3_vl(dict(_text_config("2b"), **SMALL_TEXT), dict(_vision_config("2b"), **SMALL_VISION))
    name = "random-qwen3-vl-small"
    scorer_config = ScorerConfig(model=name, device="cpu", dtype="float32", torch_threads=threads)
    return VideoScorer(
        model, build_processor(), scorer_config, model_id=name, device="cpu", dtype=torch.float32, family="qwen3_vl"
    )


# ----------------------------------------------------------------------------
# The node and its messages.
# ----------------------------------------------------------------------------
def make_node(**params: Any) -> Any:
    """A ``ScorerNode`` in this process with these parameters overridden."""
    from rclpy.parameter import Parameter

    from topreward_ros.node.scorer_node import ScorerNode

    return ScorerNode(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])


def give_scorer(node: Any, scorer: Any) -> None:
    """Hand an already loaded scorer to a node built with a model that cannot load.

    The node's own (failing) load is waited for first, so it cannot overwrite
    the scorer; the benchmark then measures ticks, not loading.
    """
    from topreward_ros.node.diagnostics import ModelState

    while node._model.state == ModelState.LOADING:
        time.sleep(0.05)
    node._model.put(scorer)


def make_message(kind: str, rgb: np.ndarray) -> Any:
    """A 640x480 camera message of encoding ``kind`` (or a JPEG/PNG ``CompressedImage``) from ``rgb``."""
    from PIL import Image as PILImage
    from sensor_msgs.msg import CompressedImage, Image

    if kind in ("jpeg", "png"):
        msg = CompressedImage()
        buf = io.BytesIO()
        PILImage.fromarray(rgb).save(buf, format=kind.upper(), **({"quality": 90} if kind == "jpeg" else {}))
        msg.format, msg.data = kind, buf.getvalue()
        return msg
    msg = Image()
    msg.height, msg.width, msg.encoding = H, W, kind
    # The scene's bytes, as many as a frame of the encoding holds: the cost of a
    # conversion depends on the encoding and size, not on the pixel values.
    size = bytes_per_pixel(kind) * W
    msg.step = size
    msg.data = np.resize(rgb.reshape(-1), size * H).tobytes()
    return msg


def bytes_per_pixel(encoding: str) -> int:
    if encoding.startswith("bayer_"):
        return 1
    if encoding in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv"):
        return 2
    channels = 1 if encoding.startswith("mono") else 4 if "a" in encoding[:4] else 3
    return channels * (2 if encoding.endswith("16") else 1)


def raw_encodings() -> tuple[str, ...]:
    """Every raw image encoding the node accepts."""
    from topreward_ros.episode.images import SUPPORTED_ENCODINGS

    return SUPPORTED_ENCODINGS


def stamp(ns: int) -> Any:
    """A ROS ``Time`` of ``ns`` nanoseconds."""
    from builtin_interfaces.msg import Time

    return Time(sec=ns // NS, nanosec=ns % NS)


# ----------------------------------------------------------------------------
# A `topreward bag` run on the CPU.
# ----------------------------------------------------------------------------
def cpu_bag_args(bag: Path, out: Path, model: Path, *options: str) -> list[str]:
    """`topreward bag` arguments: score ``bag`` into ``out`` with the local ``model`` on the CPU.

    float32, ticks at 1 Hz, no plots, quiet: the settings of every bench run
    of the command; ``options`` add the run's own.
    """
    return [
        "bag",
        str(bag),
        "-o",
        str(out),
        "--model",
        str(model),
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--local-files-only",
        "--rate",
        "1.0",
        "--no-plot",
        "-q",
        *options,
    ]
