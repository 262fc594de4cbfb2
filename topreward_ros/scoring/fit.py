"""Does a rig fit? Setup, model, episode and tick cost, before anything is recorded.

``check_rig`` answers from what can be known without a camera: the torch
build and the GPU driver, the model's configuration (a local directory, the
Hugging Face cache, or a built-in table of the Qwen3-VL sizes when neither
is at hand) and the rig's cameras, view size and window. Every figure comes
from the same rules the scorer follows: frames are sized for ``max_frames``
samples (``backends.transformers_qwen.sizing.episode_frame_size``), the prompt is the one the session
writes, and the KV cache holds the header and every complete 2-frame group.
``time_rig`` adds measured costs on the real model. ``topreward check`` and
the node's start-up log print ``CheckReport.lines()``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from topreward_ros.scoring.backends.protocol import ScoringBackend
from topreward_ros.scoring.config import ScorerConfig
from topreward_ros.scoring.cuda import Setup, inspect_setup
from topreward_ros.scoring.errors import ModelLoadError

GIB = 1024**3
#: Bytes per weight or cache element of each dtype name.
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
#: Memory kept free beyond weights and cache: activations of a full forward
#: over the window (the rebuild after a thinning), the CUDA context, fragmentation.
MARGIN = 0.2
# Qwen3-VL's video processor (the released video_preprocessor_config.json).
QWEN3_VL_VIDEO = {
    "patch_size": 16,
    "merge_size": 2,
    "temporal_patch_size": 2,
    "size": {"shortest_edge": 4096, "longest_edge": 25165824},
}


def _qwen3_vl(
    text: tuple[int, int, int, int, int, bool], vision: tuple[int, int, int, int, list[int]]
) -> dict[str, Any]:
    hidden, intermediate, layers, heads, kv, tied = text
    v_hidden, v_intermediate, depth, v_heads, deepstack = vision
    return {
        "text_config": {
            "vocab_size": 151936,
            "hidden_size": hidden,
            "intermediate_size": intermediate,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": kv,
            "head_dim": 128,
            "tie_word_embeddings": tied,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5000000.0,
                "mrope_section": [24, 20, 20],
                "mrope_interleaved": True,
            },
        },
        "vision_config": {
            "depth": depth,
            "hidden_size": v_hidden,
            "intermediate_size": v_intermediate,
            "num_heads": v_heads,
            "out_hidden_size": hidden,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 2304,
            "deepstack_visual_indexes": deepstack,
        },
        "tie_word_embeddings": tied,
    }


#: The released Qwen3-VL sizes (their config.json dimensions), for offline checks.
BUILTIN_MODELS: dict[str, dict[str, Any]] = {
    "2B": _qwen3_vl((2048, 6144, 28, 16, 8, True), (1024, 4096, 24, 16, [5, 11, 17])),
    "4B": _qwen3_vl((2560, 9728, 36, 32, 8, True), (1024, 4096, 24, 16, [5, 11, 17])),
    "8B": _qwen3_vl((4096, 12288, 36, 32, 8, False), (1152, 4304, 27, 16, [8, 16, 24])),
    "32B": _qwen3_vl((5120, 25600, 64, 64, 8, False), (1152, 4304, 27, 16, [8, 16, 24])),
}


@dataclass(frozen=True)
class Rig:
    """What the check needs to know about a rig (the node's parameters)."""

    config: ScorerConfig
    cameras: int = 1
    max_frames: int = 256
    rate_hz: float = 1.0
    instruction: str = "pick up the cup and put it in the bowl"

    def __post_init__(self) -> None:
        if self.cameras < 1:
            raise ValueError(f"cameras must be >= 1, got {self.cameras!r}")
        if self.max_frames < 2:
            raise ValueError(f"max_frames must be >= 2, got {self.max_frames!r}")
        if not self.rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {self.rate_hz!r}")


@dataclass
class ModelCost:
    """The model's size from its configuration."""

    model: str
    source: str  # where the configuration came from
    parameters: int
    dtype: str
    weight_bytes: int
    layers: int
    kv_heads: int
    head_dim: int

    @property
    def kv_bytes_per_token(self) -> int:
        """Keys and values of one token over every layer."""
        return 2 * self.layers * self.kv_heads * self.head_dim * DTYPE_BYTES[self.dtype]


@dataclass
class EpisodeCost:
    """What one sample and a full window cost the model."""

    frame_size: tuple[int, int]  # (H, W) of a sample as the model sees it
    own_size: tuple[int, int]  # what the processor alone would give a short episode
    video_tokens_per_group: int  # pads of one 2-sample group
    prompt_tokens_at_max: int  # the whole prompt with max_frames samples
    video_tokens_at_max: int
    cached_tokens_at_max: int  # what the KV cache keeps between ticks at max_frames
    kv_bytes_at_max: int
    thinning_starts_s: float

    @property
    def video_tokens_per_sample(self) -> float:
        return self.video_tokens_per_group / 2


@dataclass
class Timing:
    full_forward_s: float  # a full forward over max_frames samples (rebuild after thinning: about half)
    tick_s: float  # one tick: two new samples on a cache of max_frames - 2
    rate_hz: float

    @property
    def holds(self) -> bool:
        return self.tick_s <= 1.0 / self.rate_hz


@dataclass
class CheckReport:
    rig: Rig
    setup: Setup
    device: str  # where the model would run
    model: ModelCost
    episode: EpisodeCost
    available_bytes: int | None  # free memory where the model would run (None: unknown)
    timing: Timing | None = None

    @property
    def needed_bytes(self) -> int:
        return int((self.model.weight_bytes + self.episode.kv_bytes_at_max) * (1 + MARGIN))

    @property
    def fits(self) -> bool | None:
        if self.device_problem is not None:
            return False
        if self.timing is not None and not self.timing.holds:
            return False
        return self.memory_fits()

    @property
    def device_problem(self) -> str | None:
        wanted = self.rig.config.device
        if wanted.startswith("cuda"):
            return self.setup.cuda_problem()
        return None

    def memory_fits(self) -> bool | None:
        if self.available_bytes is None:
            return None
        return self.needed_bytes <= self.available_bytes

    def verdict(self) -> str:
        """The answer in words, with what to change when it does not fit."""
        if self.device_problem:
            return f"DOES NOT FIT: {self.device_problem}."
        where = "the GPU" if self.device.startswith("cuda") else "this machine's memory"
        need = _size(self.needed_bytes)
        memory = self.memory_fits()
        if memory is None:
            reasons = [f"needs {need}; the free memory of {where} could not be read"]
        else:
            reasons = [f"needs {need}, {_size(self.available_bytes)} free on {where}"]
        if self.timing is not None:
            state = "holds" if self.timing.holds else "does NOT hold"
            reasons.append(f"rate_hz {self.rig.rate_hz:g} {state} (a tick takes {self.timing.tick_s:.2f} s)")
        if self.device == "cpu" and self.rig.config.device == "auto" and self.setup.driver:
            # A GPU is there but unusable: the model would run on the CPU without a word.
            problem = self.setup.cuda_problem()
            if problem:
                reasons.append(f"device 'auto' falls back to the CPU here: {problem}")
        fits = self.fits
        head = {True: "FITS", False: "DOES NOT FIT", None: "UNKNOWN"}[fits]
        words = f"{head}: " + "; ".join(reasons) + "."
        if fits is False:
            words += " Suggestions: " + "; ".join(self.suggestions()) + "."
        return words

    def suggestions(self) -> list[str]:
        tips = []
        smaller = _smaller_model(self.rig.config.model)
        if smaller:
            tips.append(f"a smaller model ({smaller})")
        if self.rig.max_frames > 64:
            tips.append(f"fewer frames (max_frames {self.rig.max_frames // 2})")
        if self.rig.config.view_size > 160:
            tips.append(f"a smaller view (view_size {max(64, self.rig.config.view_size // 2)})")
        if self.timing is not None and not self.timing.holds:
            tips.append(f"a lower rate_hz (at most {1 / self.timing.tick_s:.2f})")
        if self.model.dtype == "float32" and self.device.startswith("cuda"):
            tips.append("dtype bfloat16")
        return tips or ["a larger GPU"]

    def lines(self) -> list[str]:
        s, m, e, rig = self.setup, self.model, self.episode, self.rig
        gpus = ", ".join(f"{name} ({free / GIB:.1f} of {total / GIB:.1f} GiB free)" for name, free, total in s.gpus)
        out = [
            "Setup",
            f"  torch {s.torch_version}, built for CUDA {s.torch_cuda or '- (CPU build)'}"
            + (f" (needs driver {s.needed_driver()}+)" if s.needed_driver() else ""),
            f"  NVIDIA driver: {s.driver or 'none found'}; CUDA usable: {'yes' if s.cuda_available else 'no'}",
            f"  GPUs: {gpus or 'none'}; the model would run on: {self.device}",
            "Model cost",
            f"  {m.model} ({m.source}): {m.parameters / 1e9:.2f} B parameters, {m.dtype}: "
            f"weights {_size(m.weight_bytes)}",
            "Episode cost",
            f"  {rig.cameras} camera(s) at view_size {rig.config.view_size}: samples of {e.frame_size[0]}x"
            f"{e.frame_size[1]} (the processor alone: {e.own_size[0]}x{e.own_size[1]}), "
            f"{e.video_tokens_per_sample:g} video tokens per sample",
            f"  at max_frames {rig.max_frames}: {e.prompt_tokens_at_max} prompt tokens ({e.video_tokens_at_max} "
            f"video), KV cache {e.cached_tokens_at_max} tokens = {_size(e.kv_bytes_at_max)}",
            f"  thinning starts at {e.thinning_starts_s:.0f} s of episode ({rig.max_frames} samples at "
            f"{rig.config.sample_fps:g} fps)",
            f"  memory needed: weights + KV cache + {MARGIN:.0%} = {_size(self.needed_bytes)}",
        ]
        if self.timing is not None:
            t = self.timing
            out += [
                "Timing",
                f"  full forward at max_frames: {t.full_forward_s:.2f} s (the rebuild after a "
                f"thinning: about half); one tick: {t.tick_s:.3f} s; rate_hz {t.rate_hz:g} needs "
                f"<= {1 / t.rate_hz:.3f} s",
            ]
        out += ["Verdict", f"  {self.verdict()}"]
        return out


def _size(n: int) -> str:
    return f"{n / GIB:.2f} GiB" if n >= GIB / 10 else f"{n / 1024**2:.1f} MiB"


def _builtin_key(model: str) -> str | None:
    match = re.search(r"Qwen3-VL-(\d+B)", model, re.IGNORECASE)
    return match.group(1).upper() if match and match.group(1).upper() in BUILTIN_MODELS else None


def _smaller_model(model: str) -> str | None:
    key = _builtin_key(model)
    order = list(BUILTIN_MODELS)
    if key is None or order.index(key) == 0:
        return None
    smaller = order[order.index(key) - 1]
    return re.sub(r"(?i)Qwen3-VL-\d+B", f"Qwen3-VL-{smaller}", model)


def _resolved_dtype(config: ScorerConfig, device: str) -> str:
    if config.dtype == "auto":
        return "bfloat16" if device.startswith("cuda") else "float32"
    return config.dtype


def _model_config(config: ScorerConfig) -> tuple[Any, Any, Any, str]:
    """(model config, video processor, tokenizer or None, where they came from)."""
    from transformers import AutoConfig, AutoTokenizer, AutoVideoProcessor, Qwen3VLConfig

    from topreward_ros.scoring.backends.transformers_qwen.runtime import hub_offline, local_model_dir

    local = local_model_dir(config.model, "read the configuration of model")
    is_local = local is not None
    source = str(local) if is_local else config.model
    common: dict[str, Any] = {"revision": config.revision, "local_files_only": hub_offline(config) or not is_local}
    if not is_local:
        # Never download for a check: the cache or the built-in table.
        common.update(cache_dir=config.cache_dir, local_files_only=True)
    try:
        model_config = AutoConfig.from_pretrained(source, **common)
        where = "local directory" if is_local else "Hugging Face cache"
    except Exception as exc:
        key = _builtin_key(config.model)
        if is_local or key is None:
            raise ModelLoadError(f"cannot read the configuration of model {config.model!r}: {exc}") from exc
        return (
            Qwen3VLConfig(**BUILTIN_MODELS[key]),
            SimpleNamespace(**QWEN3_VL_VIDEO),
            None,
            f"built-in table, Qwen3-VL-{key}",
        )
    try:
        video = AutoVideoProcessor.from_pretrained(source, **common)
    except Exception:
        video = SimpleNamespace(**QWEN3_VL_VIDEO)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **common)
    except Exception:
        tokenizer = None
    return model_config, video, tokenizer, where


def _parameters(model_config: Any) -> int:
    """Exact parameter count: the model built on the meta device (no memory, no weights)."""
    import torch
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(model_config)
    return sum(p.numel() for p in model.parameters())


def _prompt_tokens(tokenizer: Any, rig: Rig, pads_per_group: int) -> tuple[int, int, int]:
    """(whole prompt, video tokens, KV-cached tokens) with max_frames samples at the sampling rate.

    The prompt is written as the session writes it; without a tokenizer
    the text around the video is counted as 6 tokens per timestamp and 60
    for the header and statement (a close estimate for the Qwen vocabulary).
    """
    from topreward_ros.scoring.prompt import PROMPT_HEADER, statement_text

    groups = math.ceil(rig.max_frames / 2)
    period = 1.0 / rig.config.sample_fps
    video_tokens = groups * (pads_per_group + 2)
    if tokenizer is None:
        cached = 3 + groups * (6 + pads_per_group + 2)
        return cached + 60, video_tokens, cached
    stamps = [i * period for i in range(rig.max_frames)]
    text_groups = []
    for g in range(groups):
        a, b = stamps[2 * g], stamps[min(2 * g + 1, rig.max_frames - 1)]
        text_groups.append(f"<{(a + b) / 2:.1f} seconds><|vision_start|><|vision_end|>")
    header = len(tokenizer(PROMPT_HEADER, add_special_tokens=False)["input_ids"])
    body = len(tokenizer("".join(text_groups), add_special_tokens=False)["input_ids"])
    statement = (
        len(
            tokenizer(PROMPT_HEADER + "".join(text_groups) + statement_text(rig.instruction), add_special_tokens=False)[
                "input_ids"
            ]
        )
        - header
        - body
    )
    cached = header + body + groups * pads_per_group
    # The session keeps every complete group; an odd max_frames leaves the last one out.
    if rig.max_frames % 2:
        last = len(tokenizer(text_groups[-1], add_special_tokens=False)["input_ids"])
        cached -= last + pads_per_group
    return header + body + groups * pads_per_group + statement, video_tokens, cached


def check_rig(rig: Rig, setup: Setup | None = None) -> CheckReport:
    """Every figure of the check but the timing (no weights are loaded)."""
    from topreward_ros.scoring.backends.transformers_qwen.sizing import processor_size

    setup = setup or inspect_setup()
    wanted = rig.config.device
    device = ("cuda" if setup.cuda_available else "cpu") if wanted == "auto" else wanted
    model_config, video, tokenizer, where = _model_config(rig.config)
    family = getattr(model_config, "model_type", None)
    if family not in ("qwen3_vl", "qwen3_vl_moe"):
        raise ModelLoadError(f"the check covers Qwen3-VL models; {rig.config.model!r} is a {family!r} model")
    dtype = _resolved_dtype(rig.config, device)
    text = model_config.get_text_config()
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    parameters = _parameters(model_config)
    model = ModelCost(
        rig.config.model,
        where,
        parameters,
        dtype,
        parameters * DTYPE_BYTES[dtype],
        text.num_hidden_layers,
        text.num_key_value_heads,
        head_dim,
    )
    side = rig.config.view_size
    height, width = side, side * rig.cameras
    planned = rig.max_frames + rig.max_frames % 2
    frame = processor_size(video, height, width, planned)
    own = processor_size(video, height, width, 2)
    unit = video.patch_size * video.merge_size
    pads = (frame[0] // unit) * (frame[1] // unit)
    prompt, video_tokens, cached = _prompt_tokens(tokenizer, rig, pads)
    episode = EpisodeCost(
        frame,
        own,
        pads,
        prompt,
        video_tokens,
        cached,
        cached * model.kv_bytes_per_token,
        rig.max_frames / rig.config.sample_fps,
    )
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        available = setup.gpus[index][1] if index < len(setup.gpus) else None
    else:
        available = _available_ram()
    return CheckReport(rig, setup, device, model, episode, available)


def _available_ram() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def time_rig(report: CheckReport, scorer: ScoringBackend) -> Timing:
    """Measure a full forward over max_frames samples and one tick after it, on ``scorer``."""
    import time

    import numpy as np

    rig = report.rig
    rng = np.random.default_rng(0)
    side = rig.config.view_size
    shape = (side, side * rig.cameras, 3)
    frames = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(rig.max_frames)]
    period_ns = int(round(1e9 / rig.config.sample_fps))
    stamps = [i * period_ns for i in range(rig.max_frames)]
    session = scorer.start_episode(rig.instruction, rig.max_frames)
    start = time.perf_counter()
    session.extend(frames[:-2], stamps[:-2])
    session.score()
    full = time.perf_counter() - start
    start = time.perf_counter()
    session.extend(frames[-2:], stamps[-2:])
    session.score()
    tick = time.perf_counter() - start
    report.timing = Timing(full, tick, rig.rate_hz)
    return report.timing
