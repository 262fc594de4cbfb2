"""The reference forward of a Qwen-VL model through transformers, and its curves.

Two ways to score a video prefix, with the same result (tested to 1e-5 nats
in float32 on the CPU):

* ``VideoScorer.score``: one independent forward over processor output, what
  the released TOPReward code does for every prefix. The reference.
* ``EpisodeSession.score`` (``session.py``, and ``VideoScorer.curve`` with
  ``use_cache``): reuses the KV cache of everything that cannot change when
  frames are appended, so a new score costs the new frames plus the
  statement text, not the whole episode.

Frames are sized once per episode (``sizing.py``). Qwen2.5-VL / Qwen2-VL
are supported through the reference path only (same prompt, no timestamps
in their video block); cached curves fall back to independent forwards for
them, with a log message.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from topreward_ros.scoring.backends.transformers_qwen.runtime import import_torch, out_of_memory_as_model_error
from topreward_ros.scoring.backends.transformers_qwen.session import QWEN3_VIDEO_KWARGS, EpisodeSession
from topreward_ros.scoring.backends.transformers_qwen.sizing import episode_frame_size, processor_size, resize_rgb
from topreward_ros.scoring.config import ScorerConfig
from topreward_ros.scoring.curve import ProgressCurve, build_curve
from topreward_ros.scoring.errors import ModelLoadError
from topreward_ros.scoring.frames import check_frames
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

# Video processor options of the Qwen2/2.5-VL reference path: no resampling
# of our already-sampled frames.
_VIDEO_KWARGS: dict[str, Any] = {"do_sample_frames": False}


@dataclass
class _Prepared:
    """Processor-ready video: frames (a single one duplicated) and metadata."""

    video: np.ndarray
    metadata: dict[str, Any]
    num_frames: int


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
        self, model: Any, processor: Any, config: ScorerConfig, *, model_id: str, device: str, dtype: Any, family: str
    ) -> None:
        self.model = model
        self.processor = processor
        self.config = config
        self.model_id = model_id
        self.device = device
        self.dtype = dtype
        self.family = family
        self._torch = import_torch()
        self._lock = threading.RLock()
        # Live sessions, so release() can drop their KV caches too.
        self._sessions: weakref.WeakSet[EpisodeSession] = weakref.WeakSet()
        tokenizer = processor.tokenizer
        self.true_token_id = self._single_token(tokenizer, ANSWER_TRUE)
        self.false_token_id = self._single_token(tokenizer, ANSWER_FALSE)
        self.header_ids: list[int] = list(tokenizer(PROMPT_HEADER, add_special_tokens=False)["input_ids"])
        self._special_tokens = tuple(getattr(tokenizer, "all_special_tokens", ())) + tuple(
            t for t in (getattr(processor, "video_token", None), getattr(processor, "image_token", None)) if t
        )
        self.supports_cache = family in CACHE_FAMILIES
        self._video_kwargs = QWEN3_VIDEO_KWARGS if self.supports_cache else _VIDEO_KWARGS
        # Qwen3-VL's processor writes the vision markers around each group
        # itself; Qwen2/2.5-VL's expands only the pads, inside the markers.
        self.video_block = (
            VIDEO_PLACEHOLDER if self.supports_cache else f"<|vision_start|>{VIDEO_PLACEHOLDER}<|vision_end|>"
        )

    # ---------------------------------------------------------------- lifetime

    def require_loaded(self) -> Any:
        """The model; ``ModelLoadError`` once ``release()`` has dropped it."""
        if self.model is None:
            raise ModelLoadError(f"model {self.model_id!r} was released; load it again to score")
        return self.model

    def require_processor(self) -> Any:
        """The processor; ``ModelLoadError`` once ``release()`` has dropped it."""
        if self.processor is None:
            raise ModelLoadError(f"model {self.model_id!r} was released; load it again to score")
        return self.processor

    def out_of_memory(self, what: str) -> AbstractContextManager[None]:
        """A block in which running out of memory raises ``ModelOutOfMemoryError``."""
        return out_of_memory_as_model_error(what, self.model_id, self.device)

    def release(self) -> None:
        """Free the model's memory: drop the weights, the processor and every session's KV cache.

        Waits for a forward in progress (the lock), then drops the
        references, collects garbage and empties torch's CUDA cache when the
        model ran on CUDA. Safe to call again; scoring afterwards raises
        ``ModelLoadError``.
        """
        with self._lock:
            for session in list(self._sessions):
                session.release_cache()
            self._sessions.clear()
            self.model = None
            self.processor = None
        gc.collect()
        torch = self._torch
        if str(self.device).startswith("cuda") and torch.cuda.is_available():
            torch.cuda.empty_cache()

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
        return processor_size(self.require_processor().video_processor, height, width, num_frames)

    def episode_frame_size(self, height: int, width: int, max_frames: int) -> tuple[int, int] | None:
        """The size frames of HxW are given for an episode of at most ``max_frames``; None: as they are.

        See ``episode_frame_size`` (module level); None for families whose
        processor does not size by length.
        """
        if not self.supports_cache:
            return None
        return episode_frame_size(self.require_processor().video_processor, height, width, max_frames)

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
        return [resize_rgb(f, *size) if f.shape[:2] != size else f for f in frames]

    def validate_instruction(self, instruction: str) -> str:
        return validate_instruction(instruction, self._special_tokens)

    def _prepare(self, frames: Sequence[np.ndarray], stamps_ns: Sequence[int]) -> _Prepared:
        """Stack frames and describe their real times to the processor.

        Time origin is the first frame. ``fps = 1e9`` with frame "indices" in
        nanoseconds makes the processor's ``index / fps`` the real time in
        seconds, so the ``<t seconds>`` it writes come from the real stamps.
        A single frame is duplicated (Qwen needs two temporal steps).
        """
        check_frames(frames, stamps_ns)
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
        self, frames: Sequence[np.ndarray], stamps_ns: Sequence[int], instruction: str, max_frames: int | None = None
    ) -> dict[str, Any]:
        """What the reference path feeds the model: processor output as tensors.

        ``max_frames``: size the frames for an episode of at most that many
        (``fit_frames``), as a session started with it does.
        """
        instruction = self.validate_instruction(instruction)
        check_frames(frames, stamps_ns)
        prepared = self._prepare(self.fit_frames(frames, max_frames), stamps_ns)
        text = f"{PROMPT_HEADER}{self.video_block}{statement_text(instruction)}"
        inputs = self.require_processor()(
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

    def score(
        self, frames: Sequence[np.ndarray], stamps_ns: Sequence[int], instruction: str, max_frames: int | None = None
    ) -> Score:
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
        with self._lock, self.out_of_memory(f"scoring {len(frames)} frames"), torch.inference_mode():
            model = self.require_loaded()
            inputs = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in inputs.items()}
            out = model(**inputs, logits_to_keep=2, use_cache=False)
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
        self.require_loaded()
        session = EpisodeSession(self, instruction, max_frames)
        self._sessions.add(session)
        return session

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
        check_frames(frames, stamps_ns)
        k = self.config.num_prefixes if num_prefixes is None else num_prefixes
        lengths = prefix_lengths(len(frames), k)
        planned = len(frames) if max_frames is None else max(int(max_frames), len(frames))
        scores: list[Score] = []
        if use_cache and not self.supports_cache:
            LOG.info(
                "KV-cache reuse is implemented for %s only; %s uses independent forwards",
                ", ".join(CACHE_FAMILIES),
                self.family,
            )
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
