"""The VLM through transformers: loading, the reference forward, exact KV reuse.

Two ways to score a video prefix, with the same result (tested to 1e-3 nats
in float32):

* ``VideoScorer.score``: one independent forward over processor output, what
  the released TOPReward code does for every prefix. The reference.
* ``EpisodeSession.score`` (and ``VideoScorer.curve`` with ``use_cache``):
  reuses the KV cache of everything that cannot change when frames are
  appended, so a new score costs the new frames plus the statement text,
  not the whole episode.

Why exact reuse is possible on Qwen3-VL (read from transformers'
``modeling_qwen3_vl.py``):

1. The vision encoder attends only within one temporal patch (2 frames):
   its ``cu_seqlens`` split the sequence per temporal grid step, and its
   position embeddings depend only on the patch's (h, w). A complete
   2-frame group therefore encodes the same whatever follows it.
2. The processor writes ``<t seconds><|vision_start|> pads <|vision_end|>``
   per 2-frame group; ``get_rope_index`` gives each group positions that
   start where the tokens before it ended. Earlier positions never depend on
   later tokens.
3. Attention is causal.

So the cache of [prompt header + complete 2-frame groups] is valid for every
longer prefix. What is NOT reusable, and is computed on top of the cache and
then cropped away (``DynamicCache.crop``): the last group of an odd prefix
(its frame duplicated, with its own timestamp) and the statement text, whose
positions move with every new group. Positions of the new chunk are taken
from ``get_rope_index`` on the full prefix ids, never from generation-time
position logic. (The authors' later cached variant is not exact: up to 1.1
nats from independent forwards, as reported with the method.)

Frame size, chosen once per episode: the processor shrinks every frame of a
video that exceeds its pixel budget (``size["longest_edge"]``, 384 frames of
256x256 with the Qwen3-VL defaults; two cameras side by side, 256x480, reach
it at 205 frames), so left to itself it would change the pixels of old frames
as the episode grows and void the cache at every tick. Given ``max_frames``
(the most frames the episode will hold), frames are sized for that length
instead: when ``max_frames`` frames at the processor's own rounding would
exceed the budget, every frame is resized (bicubic) to the size the
processor gives a video of ``max_frames`` frames, and the processor, never
over budget with fewer frames, keeps that size for every prefix. When they
fit, nothing changes: frames reach the processor as they are. The reference
path applies the same rule when given the same ``max_frames``.

One case still defeats reuse: the processor enlarges tiny frames of short
videos (``size["shortest_edge"]``, below about 45x45 pixels), by an amount
that depends on the length. The session detects it and recomputes from
scratch, still exactly; so it does when an episode outgrows ``max_frames``.

Qwen2.5-VL / Qwen2-VL are supported through the reference path only (same
prompt, no timestamps in their video block); cached curves fall back to
independent forwards for them, with a log message.
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from topreward_ros.scoring.config import ScorerConfig
from topreward_ros.scoring.curve import ProgressCurve, build_curve
from topreward_ros.scoring.errors import BackendUnavailableError, FrameError, ModelLoadError
from topreward_ros.scoring.frames import check_rgb
from topreward_ros.scoring.prompt import (
    ANSWER_FALSE,
    ANSWER_TRUE,
    PROMPT_HEADER,
    VIDEO_PLACEHOLDER,
    statement_text,
    validate_instruction,
)
from topreward_ros.scoring.schedule import NS_PER_S, prefix_lengths
from topreward_ros.scoring.score import Score

if TYPE_CHECKING:  # pragma: no cover
    import torch

LOG = logging.getLogger(__name__)

#: Model types whose KV cache the session can reuse exactly (same rope and
#: video-block layout as Qwen3-VL).
CACHE_FAMILIES = ("qwen3_vl", "qwen3_vl_moe")
#: Model types scored through the reference path only.
REFERENCE_ONLY_FAMILIES = ("qwen2_5_vl", "qwen2_vl")
SUPPORTED_FAMILIES = CACHE_FAMILIES + REFERENCE_ONLY_FAMILIES

_OFFLINE_VALUES = ("1", "true", "yes", "on")
# Video processor options passed on every call: no resampling of our
# already-sampled frames, and the uncapped resize of the released code.
_VIDEO_KWARGS: dict[str, Any] = {"do_sample_frames": False}
_QWEN3_VIDEO_KWARGS: dict[str, Any] = {"do_sample_frames": False, "cap_pixels_per_frame": False}


def _import_torch() -> Any:
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


def _default_cache_dir() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # pragma: no cover - hub library always ships with transformers
        return os.path.join(os.environ.get("HF_HOME", "~/.cache/huggingface"), "hub")


def resolve_device(config: ScorerConfig) -> str:
    torch = _import_torch()
    if config.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        from topreward_ros.scoring.cuda import cuda_unavailable_message

        # Names the driver, the CUDA version of the torch build and the fix.
        raise ModelLoadError(cuda_unavailable_message(config.device))
    return config.device


def resolve_dtype(config: ScorerConfig, device: str) -> Any:
    torch = _import_torch()
    if config.dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, config.dtype)


def load_scorer(config: ScorerConfig | None = None) -> VideoScorer:
    """Load the VLM and its processor named by ``config`` and wrap them.

    Hub id or local directory; the standard (or given) Hugging Face cache;
    offline when ``config.local_files_only`` or ``HF_HUB_OFFLINE=1``. Any
    failure to find or load the model raises one ``ModelLoadError`` that names
    the model, where it was looked for and what to do.
    """
    config = config or ScorerConfig()
    torch = _import_torch()
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    offline = hub_offline(config)
    model_ref = config.model
    local = Path(model_ref).expanduser()
    is_local = local.is_dir() or looks_like_path(model_ref)
    cache_dir = config.cache_dir or _default_cache_dir()
    if is_local:
        where = f"local directory {local}"
        if not local.is_dir():
            raise ModelLoadError(
                f"cannot load model {model_ref!r}: local directory {local} does not exist. "
                "Pass an existing directory written by save_pretrained, or a hub id such as "
                "'Qwen/Qwen3-VL-8B-Instruct'."
            )
        source = str(local)
    else:
        mode = "offline (HF_HUB_OFFLINE / local_files_only): cache only" if offline else "online: cache, then hub"
        revision = f" at revision {config.revision!r}" if config.revision else ""
        where = f"hub id{revision} in cache dir {cache_dir}, {mode}"
        source = model_ref

    def fail(what: str, exc: BaseException) -> ModelLoadError:
        if is_local:
            hint = "Check that the directory holds config.json, the weights and the processor files."
        elif offline:
            hint = (
                "Download it first on a machine with access (e.g. `hf download "
                f"{model_ref}`) into that cache, set cache_dir to where it is, or unset HF_HUB_OFFLINE."
            )
        else:
            hint = "Check the id and revision, network access, and login for gated models."
        return ModelLoadError(
            f"cannot load {what} of model {model_ref!r} (looked in: {where}): "
            f"{type(exc).__name__}: {exc}. {hint}"
        )

    common: dict[str, Any] = {"revision": config.revision, "local_files_only": offline}
    if not is_local:
        common["cache_dir"] = config.cache_dir
    try:
        model_config = AutoConfig.from_pretrained(source, **common)
    except Exception as exc:
        raise fail("the configuration", exc) from exc
    family = getattr(model_config, "model_type", None)
    if family not in SUPPORTED_FAMILIES:
        raise ModelLoadError(
            f"model {model_ref!r} is a {family!r} model; TOPReward scoring supports "
            f"{', '.join(SUPPORTED_FAMILIES)} (Qwen3-VL recommended)"
        )
    device = resolve_device(config)
    dtype = resolve_dtype(config, device)
    if config.torch_threads is not None:
        torch.set_num_threads(config.torch_threads)
    try:
        processor = AutoProcessor.from_pretrained(source, **common)
    except Exception as exc:
        raise fail("the processor", exc) from exc
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            source, dtype=dtype, attn_implementation=config.attn_implementation, **common
        )
    except Exception as exc:
        raise fail("the weights", exc) from exc
    model.to(device)
    model.eval()
    return VideoScorer(model, processor, config, model_id=model_ref, device=device, dtype=dtype, family=family)


def processor_size(video_processor: Any, height: int, width: int, num_frames: int) -> tuple[int, int]:
    """(H, W) a Qwen3-VL video processor resizes a video of ``num_frames`` frames of HxW to."""
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize

    vp = video_processor
    return smart_resize(
        num_frames=max(int(num_frames), vp.temporal_patch_size),
        height=int(height),
        width=int(width),
        temporal_factor=vp.temporal_patch_size,
        factor=vp.patch_size * vp.merge_size,
        min_pixels=vp.size["shortest_edge"],
        max_pixels=vp.size["longest_edge"],
    )


def episode_frame_size(video_processor: Any, height: int, width: int, max_frames: int) -> tuple[int, int] | None:
    """The size frames of HxW are given for an episode of at most ``max_frames``; None: as they are.

    None when ``max_frames`` frames at the processor's rounding fit its pixel
    budget (then no shorter prefix is resized by length either); otherwise
    the size the processor gives ``max_frames`` frames (rounded up to an even
    count, the temporal patch), at which every shorter prefix fits the budget
    and so keeps it.
    """
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize

    vp = video_processor
    step = vp.temporal_patch_size
    planned = max(int(max_frames), step)
    planned += -planned % step
    rounded = smart_resize(num_frames=planned, height=int(height), width=int(width), temporal_factor=step,
                           factor=vp.patch_size * vp.merge_size, min_pixels=0, max_pixels=math.inf)
    sized = processor_size(vp, height, width, planned)
    return None if sized == rounded else sized


def _resize_rgb(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """``frame`` resized to ``height`` x ``width`` (bicubic, as the processor resamples)."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(frame))
    return np.asarray(image.resize((width, height), Image.Resampling.BICUBIC), dtype=np.uint8)


@dataclass
class _Prepared:
    """Processor-ready video: frames (a single one duplicated) and metadata."""

    video: np.ndarray
    metadata: dict[str, Any]
    num_frames: int


def _check_frames(frames: Sequence[np.ndarray], stamps_ns: Sequence[int]) -> None:
    if len(frames) != len(stamps_ns):
        raise FrameError(f"got {len(frames)} frames but {len(stamps_ns)} stamps")
    if len(frames) == 0:
        raise FrameError("no frames to score: a prefix needs at least one frame")
    shape = None
    for i, frame in enumerate(frames):
        check_rgb(frame, f"frames[{i}]")
        if shape is None:
            shape = frame.shape
        elif frame.shape != shape:
            raise FrameError(f"frames[{i}] has shape {frame.shape}, expected {shape} like frames[0]")
    previous = None
    for i, stamp in enumerate(stamps_ns):
        if isinstance(stamp, bool) or not isinstance(stamp, (int, np.integer)):
            raise FrameError(f"stamps_ns[{i}] must be an integer (nanoseconds), got {stamp!r}")
        if previous is not None and stamp <= previous:
            raise FrameError(f"stamps_ns must increase strictly: stamps_ns[{i}]={stamp} after {previous}")
        previous = stamp


class VideoScorer:
    """TOPReward scores from a loaded Qwen-VL model.

    Thread-safe: forwards are serialised by a lock (the model keeps per-call
    state), so a node may share one scorer between callbacks.

    Attributes:
        model_id: the hub id or directory the model was loaded from.
        config: the ``ScorerConfig`` it was loaded with.
        device: torch device string the model runs on.
        dtype: torch dtype of the weights.
        family: transformers model type (``"qwen3_vl"``, ...).
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        config: ScorerConfig,
        *,
        model_id: str,
        device: str,
        dtype: Any,
        family: str,
    ) -> None:
        self.model = model
        self.processor = processor
        self.config = config
        self.model_id = model_id
        self.device = device
        self.dtype = dtype
        self.family = family
        self._torch = _import_torch()
        self._lock = threading.RLock()
        tokenizer = processor.tokenizer
        self.true_token_id = self._single_token(tokenizer, ANSWER_TRUE)
        self.false_token_id = self._single_token(tokenizer, ANSWER_FALSE)
        self.header_ids: list[int] = list(tokenizer(PROMPT_HEADER, add_special_tokens=False)["input_ids"])
        self._special_tokens = tuple(getattr(tokenizer, "all_special_tokens", ())) + tuple(
            t for t in (getattr(processor, "video_token", None), getattr(processor, "image_token", None)) if t
        )
        self.supports_cache = family in CACHE_FAMILIES
        self._video_kwargs = _QWEN3_VIDEO_KWARGS if self.supports_cache else _VIDEO_KWARGS
        # Qwen3-VL's processor writes the vision markers around each group
        # itself; Qwen2/2.5-VL's expands only the pads, inside the markers.
        self.video_block = (
            VIDEO_PLACEHOLDER if self.supports_cache else f"<|vision_start|>{VIDEO_PLACEHOLDER}<|vision_end|>"
        )

    def release(self) -> None:
        """Give the model's memory back (the scorer is unusable after): the weights, then the CUDA cache."""
        import gc

        with self._lock:  # after a forward that is running, never beside one
            self.model = None
        gc.collect()
        if self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()

    def _single_token(self, tokenizer: Any, text: str) -> int:
        ids = tokenizer.encode(text, add_special_tokens=False)
        if len(ids) != 1:
            raise ModelLoadError(
                f"the tokenizer of {self.model_id!r} encodes {text!r} as {len(ids)} tokens {ids}; "
                "TOPReward needs the answer to be one token"
            )
        return int(ids[0])

    # ------------------------------------------------------------------ inputs

    def processor_size(self, height: int, width: int, num_frames: int) -> tuple[int, int]:
        """(H, W) the video processor resizes a video of ``num_frames`` frames of HxW to.

        Qwen3-VL's rule: the patch grid's rounding, then a shrink when the
        video exceeds the pixel budget or an enlargement when it falls short
        of the minimum. Families without a length-dependent rule get the
        frame size back unchanged.
        """
        if not self.supports_cache:
            return int(height), int(width)
        return processor_size(self.processor.video_processor, height, width, num_frames)

    def episode_frame_size(self, height: int, width: int, max_frames: int) -> tuple[int, int] | None:
        """The size frames of HxW are given for an episode of at most ``max_frames``; None: as they are.

        See ``episode_frame_size`` (module level); None for families whose
        processor does not size by length.
        """
        if not self.supports_cache:
            return None
        return episode_frame_size(self.processor.video_processor, height, width, max_frames)

    def fit_frames(self, frames: Sequence[np.ndarray], max_frames: int | None) -> list[np.ndarray]:
        """``frames`` at the size of an episode of at most ``max_frames`` (see the module doc).

        ``max_frames`` None, or smaller than ``len(frames)``, sizes for the
        frames at hand. Frames are returned unchanged when they need no resize.
        """
        frames = list(frames)
        if max_frames is None or not frames:
            return frames
        height, width = frames[0].shape[:2]
        size = self.episode_frame_size(height, width, max(int(max_frames), len(frames)))
        if size is None:
            return frames
        return [_resize_rgb(f, *size) if f.shape[:2] != size else f for f in frames]

    def validate_instruction(self, instruction: str) -> str:
        return validate_instruction(instruction, self._special_tokens)

    def _prepare(self, frames: Sequence[np.ndarray], stamps_ns: Sequence[int]) -> _Prepared:
        """Stack frames and describe their real times to the processor.

        Time origin is the first frame. ``fps = 1e9`` with frame "indices" in
        nanoseconds makes the processor's ``index / fps`` the real time in
        seconds, so the ``<t seconds>`` it writes come from the real stamps.
        A single frame is duplicated (Qwen needs two temporal steps).
        """
        _check_frames(frames, stamps_ns)
        t0 = int(stamps_ns[0])
        offsets = [int(s) - t0 for s in stamps_ns]
        video_frames = list(frames)
        if len(video_frames) == 1:
            video_frames = video_frames * 2
            offsets = offsets * 2
        if self.supports_cache:
            metadata = {"fps": float(NS_PER_S), "frames_indices": offsets, "total_num_frames": len(video_frames)}
        else:
            # Qwen2/2.5-VL know only a uniform frame rate (their temporal
            # positions come from it, no timestamps in the text): the
            # schedule's sampling rate.
            metadata = {
                "fps": float(self.config.sample_fps),
                "frames_indices": list(range(len(video_frames))),
                "total_num_frames": len(video_frames),
            }
        return _Prepared(np.stack(video_frames), metadata, len(frames))

    def processor_inputs(
        self, frames: Sequence[np.ndarray], stamps_ns: Sequence[int], instruction: str,
        max_frames: int | None = None,
    ) -> dict[str, Any]:
        """What the reference path feeds the model: processor output as tensors.

        ``max_frames``: size the frames for an episode of at most that many
        (``fit_frames``), as a session started with it does.
        """
        instruction = self.validate_instruction(instruction)
        _check_frames(frames, stamps_ns)
        prepared = self._prepare(self.fit_frames(frames, max_frames), stamps_ns)
        text = f"{PROMPT_HEADER}{self.video_block}{statement_text(instruction)}"
        inputs = self.processor(
            text=[text],
            videos=[prepared.video],
            video_metadata=[prepared.metadata],
            return_tensors="pt",
            **self._video_kwargs,
        )
        inputs.pop("video_metadata", None)
        inputs.pop("text_replacement_offsets", None)
        return dict(inputs)

    # --------------------------------------------------------------- reference

    def _log_probs(self, logits_row: torch.Tensor) -> tuple[float, float]:
        log_probs = logits_row.float().log_softmax(dim=-1)
        return float(log_probs[self.true_token_id]), float(log_probs[self.false_token_id])

    def score(self, frames: Sequence[np.ndarray], stamps_ns: Sequence[int], instruction: str,
              max_frames: int | None = None) -> Score:
        """Score one prefix with one independent full forward (the reference path).

        ``max_frames``: the frame size of an episode of at most that many
        frames (see ``start_episode``); None sizes for these frames.
        """
        torch = self._torch
        start = time.perf_counter()
        inputs = self.processor_inputs(frames, stamps_ns, instruction, max_frames)
        input_ids = inputs["input_ids"]
        if int(input_ids[0, -1]) != self.true_token_id:
            raise RuntimeError("prompt does not end with the answer token; tokenizer/prompt mismatch")
        inputs = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in inputs.items()}
        with self._lock, torch.inference_mode():
            out = self.model(**inputs, logits_to_keep=2, use_cache=False)
        lp_true, lp_false = self._log_probs(out.logits[0, -2])
        return Score(lp_true, lp_false, len(frames), time.perf_counter() - start)

    # ------------------------------------------------------------------ curves

    def start_episode(self, instruction: str, max_frames: int | None = None) -> EpisodeSession:
        """Begin an episode for live / incremental scoring.

        ``max_frames``: the most frames the episode will hold. Frames are then
        sized once for that length, so the cache survives every extension up
        to it. None sizes each prefix as the processor would on its own,
        which rebuilds the cache whenever that size changes with the length.
        """
        return EpisodeSession(self, instruction, max_frames)

    def curve(
        self,
        frames: Sequence[np.ndarray],
        stamps_ns: Sequence[int],
        instruction: str,
        num_prefixes: int | None = None,
        use_cache: bool = True,
        max_frames: int | None = None,
    ) -> ProgressCurve:
        """Score K growing prefixes of an (already sampled) episode.

        ``use_cache=False`` runs K independent forwards (the released code);
        with the cache the result is the same and the cost about one forward
        over the whole episode plus K statement suffixes. Every prefix is
        sized as an episode of ``max_frames`` frames (default: the whole
        episode's length), the rule a live session follows.
        """
        self.validate_instruction(instruction)
        _check_frames(frames, stamps_ns)
        k = self.config.num_prefixes if num_prefixes is None else num_prefixes
        lengths = prefix_lengths(len(frames), k)
        planned = len(frames) if max_frames is None else max(int(max_frames), len(frames))
        scores: list[Score] = []
        if use_cache and not self.supports_cache:
            LOG.info("KV-cache reuse is implemented for %s only; %s uses independent forwards",
                     ", ".join(CACHE_FAMILIES), self.family)
            use_cache = False
        if use_cache:
            session = self.start_episode(instruction, planned)
            done = 0
            for length in lengths:
                session.extend(frames[done:length], stamps_ns[done:length])
                done = length
                scores.append(session.score())
        else:
            for length in lengths:
                scores.append(self.score(frames[:length], stamps_ns[:length], instruction, planned))
        return build_curve(
            lengths,
            [int(stamps_ns[n - 1]) for n in lengths],
            scores,
            model_id=self.model_id,
            success_window=self.config.success_window,
        )


class EpisodeSession:
    """Incremental scoring of one episode: append frames, score the prefix so far.

    Appending is cheap (frames are stored); ``score()`` runs the model on what
    changed since the cache was last extended: new complete 2-frame groups
    (kept in the KV cache), plus the transient tail (an unpaired last frame
    and the statement text), which is cropped off the cache afterwards.
    For model families without exact cache reuse each ``score()`` is one
    reference forward.

    ``max_frames`` fixes the frame size for an episode of at most that many
    frames (``VideoScorer.fit_frames``): up to it, no extension changes the
    pixels of earlier frames, so the cache is never rebuilt. None sizes each
    prefix for its own length, as the processor would.
    """

    def __init__(self, scorer: VideoScorer, instruction: str, max_frames: int | None = None) -> None:
        if max_frames is not None and (isinstance(max_frames, bool) or int(max_frames) < 1):
            raise ValueError(f"max_frames must be a positive integer or None, got {max_frames!r}")
        self._scorer = scorer
        self.instruction = scorer.validate_instruction(instruction)
        self.max_frames = None if max_frames is None else int(max_frames)
        self._frames: list[np.ndarray] = []
        # The frames as the processor gets them (resized when the rule asks),
        # and the size they were fitted to (None: unchanged).
        self._fitted: list[np.ndarray] = []
        self._fitted_size: tuple[int, int] | None = None
        self._stamps: list[int] = []
        self._last: Score | None = None
        #: How often the cache had to be recomputed from scratch (see module doc).
        self.cache_rebuilds = 0
        #: Of the last score()'s prompt, the tokens taken from the KV cache and
        #: the prompt's length: how much of the work incremental scoring saved.
        self.last_reused_tokens = 0
        self.last_prompt_tokens = 0
        self._reset_cache()

    def _reset_cache(self) -> None:
        if getattr(self, "_cache", None) is not None:
            self.cache_rebuilds += 1
        self._cache: Any = None
        self._cached_ids: list[int] = []
        self._cached_groups = 0
        self._cached_hw: tuple[int, int] | None = None

    @property
    def num_frames(self) -> int:
        return len(self._frames)

    @property
    def stamps_ns(self) -> tuple[int, ...]:
        return tuple(self._stamps)

    @property
    def cached_tokens(self) -> int:
        """Tokens held in the KV cache (header + complete 2-frame groups)."""
        return len(self._cached_ids)

    @property
    def cache_bytes(self) -> int:
        """Bytes of the key and value tensors the KV cache holds between scores."""
        if self._cache is None:
            return 0
        total = 0
        for layer in getattr(self._cache, "layers", ()):
            for tensor in (getattr(layer, "keys", None), getattr(layer, "values", None)):
                if tensor is not None and hasattr(tensor, "numel"):
                    total += tensor.numel() * tensor.element_size()
        return total

    def extend(self, frames: Sequence[np.ndarray], stamps_ns: Sequence[int]) -> None:
        """Append frames (already sampled views) with their capture stamps.

        Everything is checked before anything is stored, so a bad batch
        leaves the session as it was.
        """
        frames = list(frames)
        stamps = [s for s in stamps_ns]
        if len(frames) != len(stamps):
            raise FrameError(f"got {len(frames)} frames but {len(stamps)} stamps")
        if not frames:
            return
        _check_frames(frames, stamps)
        if self._frames:
            if frames[0].shape != self._frames[0].shape:
                raise FrameError(
                    f"frames have shape {frames[0].shape}, but this episode's frames are {self._frames[0].shape}"
                )
            if int(stamps[0]) <= self._stamps[-1]:
                raise FrameError(
                    f"stamps must increase across extend() calls: {int(stamps[0])} after {self._stamps[-1]}"
                )
        self._frames.extend(frames)
        self._stamps.extend(int(s) for s in stamps)

    def score(self) -> Score:
        """Score the episode so far (all frames appended until now)."""
        if not self._frames:
            raise FrameError("no frames to score: extend() the episode first")
        if self._last is not None and self._last.num_frames == len(self._frames):
            return self._last
        scorer = self._scorer
        if not scorer.supports_cache:
            self._last = scorer.score(self._frames, self._stamps, self.instruction, self.max_frames)
            self.last_reused_tokens = self.last_prompt_tokens = 0
            return self._last
        start = time.perf_counter()
        with scorer._lock, scorer._torch.inference_mode():
            lp_true, lp_false = self._cached_forward()
        self._last = Score(lp_true, lp_false, len(self._frames), time.perf_counter() - start)
        return self._last

    # --------------------------------------------------------------- internals

    def _fit(self) -> list[np.ndarray]:
        """The frames as the processor gets them, each resized once while the size holds."""
        if self.max_frames is None:
            return self._frames
        n = len(self._frames)
        height, width = self._frames[0].shape[:2]
        size = self._scorer.episode_frame_size(height, width, max(self.max_frames, n))
        if size != self._fitted_size:
            # Only when the episode outgrows max_frames: every frame changes.
            self._fitted, self._fitted_size = [], size
        if size is None:
            return self._frames
        self._fitted.extend(_resize_rgb(f, *size) for f in self._frames[len(self._fitted):])
        return self._fitted

    def _resize_hw(self, frames: Sequence[np.ndarray], num_frames: int) -> tuple[int, int]:
        """(H, W) the video processor resizes ``frames``' size to for a video of ``num_frames``."""
        height, width = frames[0].shape[:2]
        return self._scorer.processor_size(height, width, num_frames)

    def _cached_forward(self) -> tuple[float, float]:
        scorer = self._scorer
        torch = scorer._torch
        processor = scorer.processor
        vp = processor.video_processor
        model = scorer.model
        n = len(self._frames)
        fitted = self._fit()
        # The frames the reference path would hand the processor.
        frames = fitted if n > 1 else fitted * 2
        stamps = self._stamps if n > 1 else self._stamps * 2
        n_video = len(frames)
        complete = n // 2  # groups of two distinct real frames: reusable
        groups = math.ceil(n_video / 2)
        target_hw = self._resize_hw(frames, n_video)
        if self._cached_hw is not None and self._cached_hw != target_hw:
            LOG.info("frame resolution changes with video length (%s -> %s): recomputing the cache",
                     self._cached_hw, target_hw)
            self._reset_cache()
        first_new = self._cached_groups
        chunk = list(frames[2 * first_new:])
        if len(chunk) % 2:
            chunk.append(chunk[-1])  # as the processor pads an odd video
        if self._resize_hw(chunk, len(chunk)) != target_hw:
            # Short videos of tiny frames are enlarged by an amount that
            # depends on the frame count: the chunk alone would be resized
            # differently from the whole prefix. Recompute everything.
            self._reset_cache()
            first_new = 0
            chunk = list(frames) + ([frames[-1]] if len(frames) % 2 else [])
        processed = vp(
            videos=[np.stack(chunk)], return_tensors="pt", **_QWEN3_VIDEO_KWARGS
        )
        pixel_values = processed["pixel_values_videos"]
        grid = processed["video_grid_thw"]
        grid_t, grid_h, grid_w = (int(v) for v in grid[0])
        merge = vp.merge_size
        if (grid_h * vp.patch_size, grid_w * vp.patch_size) != tuple(target_hw) or grid_t != groups - first_new:
            raise RuntimeError(
                f"video chunk processed to grid {tuple(grid[0].tolist())}, expected "
                f"{groups - first_new} groups at {target_hw}"
            )
        tokens_per_group = grid_h * grid_w // (merge * merge)

        # Token ids of the whole prefix, written as the processor writes them.
        t0 = stamps[0]
        parts = [PROMPT_HEADER]
        for g in range(groups):
            a = stamps[2 * g] - t0
            b = stamps[min(2 * g + 1, n_video - 1)] - t0
            seconds = (a + b) / 2 / NS_PER_S
            parts.append(
                f"<{seconds:.1f} seconds>{processor.vision_start_token}"
                f"{processor.video_token * tokens_per_group}{processor.vision_end_token}"
            )
        parts.append(statement_text(self.instruction))
        ids = processor.tokenizer("".join(parts), add_special_tokens=False)["input_ids"]
        if ids[-1] != scorer.true_token_id:
            raise RuntimeError("prompt does not end with the answer token; tokenizer/prompt mismatch")
        if ids[: len(self._cached_ids)] != self._cached_ids:
            LOG.warning("cached prompt tokens changed; recomputing the cache")
            self._reset_cache()
            return self._cached_forward()

        # Positions from the full prefix, sliced to the new chunk.
        video_token_id = model.config.video_token_id
        ids_t = torch.tensor([ids], dtype=torch.long, device=scorer.device)
        mm_types = (ids_t == video_token_id).to(torch.int32) * 2
        full_grid = torch.tensor([[groups, grid_h, grid_w]], dtype=torch.long, device=scorer.device)
        positions, _ = model.model.get_rope_index(
            input_ids=ids_t, mm_token_type_ids=mm_types, video_grid_thw=full_grid
        )
        vision_end_id = processor.vision_end_token_id
        end_positions = (ids_t[0] == vision_end_id).nonzero().flatten().tolist()
        if len(end_positions) != groups:
            raise RuntimeError(f"found {len(end_positions)} video blocks in the prompt, expected {groups}")
        header_len = len(scorer.header_ids)
        if ids[:header_len] != scorer.header_ids:
            raise RuntimeError("prompt does not start with the user-turn header; tokenizer/prompt mismatch")
        keep_len = end_positions[complete - 1] + 1 if complete > 0 else header_len
        begin = len(self._cached_ids)
        stop = len(ids) - 1  # the answer token itself is not an input we need
        self.last_reused_tokens, self.last_prompt_tokens = begin, len(ids)

        chunk_ids = ids_t[:, begin:stop]
        embeds = model.model.get_input_embeddings()(chunk_ids)
        video_mask = chunk_ids[0] == video_token_id
        visual_pos_masks = None
        deepstack = None
        if bool(video_mask.any()):
            features = model.model.get_video_features(
                pixel_values.to(scorer.device), grid.to(scorer.device), return_dict=True
            )
            video_embeds = torch.cat(features.pooler_output, dim=0).to(embeds.device, embeds.dtype)
            if video_embeds.shape[0] != int(video_mask.sum()):
                raise RuntimeError(
                    f"{video_embeds.shape[0]} video features for {int(video_mask.sum())} video tokens"
                )
            embeds[0, video_mask] = video_embeds
            visual_pos_masks = video_mask[None, :]
            deepstack = [torch.cat(f, dim=0).to(embeds.device, embeds.dtype) for f in features.deepstack_features]
        if self._cache is None:
            from transformers import DynamicCache

            self._cache = DynamicCache(config=model.config.get_text_config())
        out = model.model.language_model(
            inputs_embeds=embeds,
            position_ids=positions[:, :, begin:stop],
            past_key_values=self._cache,
            use_cache=True,
            visual_pos_masks=visual_pos_masks,
            deepstack_visual_embeds=deepstack,
        )
        logits = model.lm_head(out.last_hidden_state[:, -1])
        remove = self._cache.get_seq_length() - keep_len
        if remove > 0:
            self._cache.crop(-remove)
        self._cached_ids = ids[:keep_len]
        self._cached_groups = complete
        self._cached_hw = tuple(target_hw)
        return scorer._log_probs(logits[0])
