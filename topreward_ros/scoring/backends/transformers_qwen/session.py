"""Incremental scoring of one episode with exact KV-cache reuse (Qwen3-VL).

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
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from topreward_ros.scoring.backends.transformers_qwen.sizing import resize_rgb
from topreward_ros.scoring.errors import FrameError
from topreward_ros.scoring.frames import check_frames
from topreward_ros.scoring.prompt import PROMPT_HEADER, statement_text
from topreward_ros.scoring.schedule import NS_PER_S
from topreward_ros.scoring.score import Score

LOG = logging.getLogger(__name__)
#: Video processor options of every cached chunk: no resampling of our
#: already-sampled frames, and the uncapped resize of the released code.
QWEN3_VIDEO_KWARGS: dict[str, Any] = {"do_sample_frames": False, "cap_pixels_per_frame": False}


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

    ``scorer`` is the ``VideoScorer`` that started the session (typed ``Any``
    here because the scorer module imports this one, not the other way).
    """

    def __init__(self, scorer: Any, instruction: str, max_frames: int | None = None) -> None:
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
        check_frames(frames, stamps)
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
        with (
            scorer._lock,
            scorer.out_of_memory(f"scoring {len(self._frames)} frames (cached)"),
            scorer._torch.inference_mode(),
        ):
            scorer.require_loaded()
            try:
                lp_true, lp_false = self._cached_forward()
            except BaseException:
                # A forward that failed part way (out of memory) may leave
                # the cache half extended: start over at the next score.
                self._reset_cache()
                raise
        self._last = Score(lp_true, lp_false, len(self._frames), time.perf_counter() - start)
        return self._last

    def release_cache(self) -> None:
        """Drop the KV cache (the scorer's ``release``); a later ``score()`` recomputes it."""
        self._reset_cache()
        self._last = None

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
        self._fitted.extend(resize_rgb(f, *size) for f in self._frames[len(self._fitted) :])
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
            LOG.info(
                "frame resolution changes with video length (%s -> %s): recomputing the cache",
                self._cached_hw,
                target_hw,
            )
            self._reset_cache()
        first_new = self._cached_groups
        chunk = list(frames[2 * first_new :])
        if len(chunk) % 2:
            chunk.append(chunk[-1])  # as the processor pads an odd video
        if self._resize_hw(chunk, len(chunk)) != target_hw:
            # Short videos of tiny frames are enlarged by an amount that
            # depends on the frame count: the chunk alone would be resized
            # differently from the whole prefix. Recompute everything.
            self._reset_cache()
            first_new = 0
            chunk = list(frames) + ([frames[-1]] if len(frames) % 2 else [])
        processed = vp(videos=[np.stack(chunk)], return_tensors="pt", **QWEN3_VIDEO_KWARGS)
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
        positions, _ = model.model.get_rope_index(input_ids=ids_t, mm_token_type_ids=mm_types, video_grid_thw=full_grid)
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
                raise RuntimeError(f"{video_embeds.shape[0]} video features for {int(video_mask.sum())} video tokens")
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
