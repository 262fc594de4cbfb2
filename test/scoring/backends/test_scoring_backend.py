"""The transformers backend on the real tiny Qwen3-VL: prompt layout, KV reuse, sizing, memory.

What every backend must do (equal the plain-transformers reference, session
equal to uncached scores, the errors) is checked in
test_backend_conformance.py; here is what is particular to this backend:
the tokens that reach the model, the KV cache on long episodes and its
rebuilds, frame sizing for ``max_frames``, the Qwen2.5-VL reference-only
path, and the translation of torch's out-of-memory errors. The tiny model
has random weights: its scores mean nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.scoring_reference import INSTRUCTION, make_episode

from topreward_ros.scoring import ModelOutOfMemoryError, ScorerConfig, VideoScorer, load_scorer
from topreward_ros.scoring.backends.transformers_qwen.runtime import out_of_memory_as_model_error
from topreward_ros.scoring.prompt import QUESTION, STATEMENT_PREFIX

TOL_NATS = 1e-5  # cached and uncached forwards differ by ~3e-6 nats here (float32, CPU)


@pytest.fixture(scope="module")
def scorer(tiny_model_dir: Path) -> VideoScorer:
    import torch

    torch.set_num_threads(2)
    return load_scorer(ScorerConfig(model=str(tiny_model_dir), local_files_only=True, device="cpu"))


def test_answer_token_ids_are_the_qwen_ones(scorer: VideoScorer) -> None:
    tok = scorer.processor.tokenizer
    assert scorer.true_token_id == 3007
    assert tok.encode(" True", add_special_tokens=False) == [3007]
    assert scorer.false_token_id == tok.encode(" False", add_special_tokens=False)[0]
    assert tok.decode([scorer.false_token_id]) == " False"


def test_prompt_token_layout(scorer: VideoScorer) -> None:
    frames, stamps = make_episode(5)
    inputs = scorer.processor_inputs(frames, stamps, INSTRUCTION)
    ids = inputs["input_ids"][0].tolist()
    tok = scorer.processor.tokenizer
    # No system turn, no chat template: the user turn opens the sequence.
    assert ids[:3] == tok.encode("<|im_start|>user\n", add_special_tokens=False)
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>")
    assert tok.convert_tokens_to_ids("<|im_end|>") not in ids
    # 5 frames -> 3 temporal groups, each "<t seconds>" + one vision block, not nested.
    vs, ve, pad = (tok.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|vision_end|>", "<|video_pad|>"))
    assert (vs, pad) == (151652, 151656)
    assert ids.count(vs) == 3 and ids.count(ve) == 3
    assert [ids[i + 1] == pad for i, t in enumerate(ids) if t == vs] == [True] * 3
    assert int(inputs["video_grid_thw"][0, 0]) == 3
    text = tok.decode(ids)
    # Timestamps from the real stamps, relative to the first frame, averaged per group;
    # the last group of an odd prefix is the last frame alone.
    rel = [(s - stamps[0]) / 1e9 for s in stamps]
    expected = [(rel[0] + rel[1]) / 2, (rel[2] + rel[3]) / 2, rel[4]]
    for seconds in expected:
        assert f"<{seconds:.1f} seconds><|vision_start|>" in text
    assert text.startswith("<|im_start|>user\n<")
    # Then the statement, the instruction verbatim, ending with the scored " True".
    last_ve = max(i for i, t in enumerate(ids) if t == ve)
    assert tok.decode(ids[last_ve + 1 :]) == f"{STATEMENT_PREFIX}{INSTRUCTION}{QUESTION} True"
    assert ids[-1] == 3007


def test_single_frame_is_duplicated(scorer: VideoScorer) -> None:
    frames, stamps = make_episode(1)
    inputs = scorer.processor_inputs(frames, stamps, INSTRUCTION)
    assert inputs["video_grid_thw"][0].tolist()[0] == 1  # one temporal group of two frames
    assert "<0.0 seconds>" in scorer.processor.tokenizer.decode(inputs["input_ids"][0])


@pytest.fixture(scope="module")
def episode_40() -> tuple[list[np.ndarray], list[int]]:
    return make_episode(40, seed=7)


def test_a_session_keeps_every_frame_group_in_its_cache_without_rebuilding(scorer: VideoScorer, episode_40) -> None:
    """The transformers session's own cache; its scores after each extend are the conformance suite's check."""
    frames, stamps = episode_40
    session = scorer.start_episode(INSTRUCTION)
    for start in range(0, len(frames), 8):
        session.extend(frames[start : start + 8], stamps[start : start + 8])
        session.score()
    assert session.stamps_ns == tuple(stamps)
    assert session.cache_rebuilds == 0
    # header (3 tokens) + 20 complete groups of (timestamp + 4 pads + 2 markers)
    assert session.cached_tokens > 20 * 6


def test_cached_curve_equals_uncached_curve(scorer: VideoScorer, episode_40) -> None:
    frames, stamps = episode_40
    cached = scorer.curve(frames, stamps, INSTRUCTION, num_prefixes=8)
    uncached = scorer.curve(frames, stamps, INSTRUCTION, num_prefixes=8, use_cache=False)
    assert cached.prefix_lengths == uncached.prefix_lengths == (1, 7, 12, 18, 23, 29, 34, 40)
    assert cached.stamps_ns == tuple(stamps[n - 1] for n in cached.prefix_lengths)
    np.testing.assert_allclose(cached.log_prob_true, uncached.log_prob_true, atol=TOL_NATS, rtol=0)
    np.testing.assert_allclose(cached.log_prob_false, uncached.log_prob_false, atol=TOL_NATS, rtol=0)
    np.testing.assert_allclose(cached.normalized, uncached.normalized, atol=1e-3, rtol=0)
    assert cached.model_id == str(scorer.model_id)
    assert cached.success_score == pytest.approx(np.mean(uncached.log_prob_true[-3:]), abs=TOL_NATS)


def test_default_num_prefixes_is_config(scorer: VideoScorer, episode_40) -> None:
    frames, stamps = episode_40
    curve = scorer.curve(frames[:20], stamps[:20], INSTRUCTION)
    assert len(curve.prefix_lengths) == 15 == scorer.config.num_prefixes


def test_session_recomputes_when_the_processor_resizes_with_length(scorer: VideoScorer) -> None:
    # Tiny frames are enlarged by an amount that depends on the frame count
    # (processor min_pixels): the cache cannot be reused and must be rebuilt.
    frames, stamps = make_episode(7, seed=11, size=(32, 32))
    session = scorer.start_episode(INSTRUCTION)
    for n in range(1, 8):
        session.extend([frames[n - 1]], [stamps[n - 1]])
        expected = scorer.score(frames[:n], stamps[:n], INSTRUCTION).log_prob_true
        assert session.score().log_prob_true == pytest.approx(expected, abs=TOL_NATS), n
    assert session.cache_rebuilds >= 1


def test_repeated_score_without_new_frames_is_reused(scorer: VideoScorer) -> None:
    frames, stamps = make_episode(3)
    session = scorer.start_episode(INSTRUCTION)
    session.extend(frames, stamps)
    assert session.score() is session.score()


def test_qwen25_vl_is_scored_through_the_reference_path(tmp_path: Path) -> None:
    from topreward_ros.tools.tiny_model import build_qwen25_vl

    scorer = load_scorer(ScorerConfig(model=str(build_qwen25_vl(tmp_path / "q25")), device="cpu"))
    assert scorer.family == "qwen2_5_vl" and not scorer.supports_cache
    frames, stamps = make_episode(5, seed=5, size=(56, 56))
    inputs = scorer.processor_inputs(frames, stamps, INSTRUCTION)
    tok = scorer.processor.tokenizer
    ids = inputs["input_ids"][0].tolist()
    # Qwen2.5-VL layout: one vision block holding all pads, no timestamps.
    assert ids.count(151652) == 1 and ids.count(151653) == 1 and ids[3] == 151652
    assert ids[-1] == 3007 and "seconds" not in tok.decode(ids)
    session = scorer.start_episode(INSTRUCTION)
    session.extend(frames[:3], stamps[:3])
    live = session.score()
    curve = scorer.curve(frames, stamps, INSTRUCTION, num_prefixes=3)  # falls back to independent forwards
    assert curve.prefix_lengths == (1, 3, 5)
    assert curve.log_prob_true[1] == pytest.approx(live.log_prob_true, abs=1e-5)
    assert all(np.isfinite(curve.log_prob_true))


# Two 64x64 views side by side; 3072 of them fit the processor's pixel budget,
# so an episode planned for 4000 has every frame sized down (to 32x96).
WIDE = (64, 128)
PLANNED = 4000


def test_frames_are_sized_once_for_max_frames(scorer: VideoScorer) -> None:
    assert scorer.processor_size(*WIDE, 3000) == WIDE
    assert scorer.processor_size(*WIDE, 3100) != WIDE  # sized by length, it would shrink here
    assert scorer.episode_frame_size(*WIDE, PLANNED) == scorer.processor_size(*WIDE, PLANNED) == (32, 96)
    assert scorer.episode_frame_size(*WIDE, 3000) is None  # fits: frames stay as they are
    frames, _ = make_episode(3, size=WIDE)
    fitted = scorer.fit_frames(frames, PLANNED)
    assert [f.shape for f in fitted] == [(32, 96, 3)] * 3
    assert all(f is g for f, g in zip(scorer.fit_frames(frames, 3000), frames))


def test_session_sized_for_max_frames_equals_independent_forwards_at_that_size(scorer: VideoScorer) -> None:
    frames, stamps = make_episode(9, seed=5, size=WIDE)
    session = scorer.start_episode(INSTRUCTION, max_frames=PLANNED)
    done = 0
    for n in (1, 2, 3, 6, 9):
        session.extend(frames[done:n], stamps[done:n])
        done = n
        score = session.score()
        expected = scorer.score(frames[:n], stamps[:n], INSTRUCTION, max_frames=PLANNED)
        assert score.log_prob_true == pytest.approx(expected.log_prob_true, abs=TOL_NATS), n
        assert score.log_prob_false == pytest.approx(expected.log_prob_false, abs=TOL_NATS), n
    assert session.cache_rebuilds == 0
    # The size is in effect: at the processor's own size the score differs.
    own = scorer.score(frames, stamps, INSTRUCTION)
    assert abs(own.log_prob_true - score.log_prob_true) > 1e-3
    cached = scorer.curve(frames, stamps, INSTRUCTION, num_prefixes=4, max_frames=PLANNED)
    uncached = scorer.curve(frames, stamps, INSTRUCTION, num_prefixes=4, max_frames=PLANNED, use_cache=False)
    np.testing.assert_allclose(cached.log_prob_true, uncached.log_prob_true, atol=TOL_NATS, rtol=0)
    assert cached.log_prob_true[-1] == pytest.approx(score.log_prob_true, abs=TOL_NATS)


def test_frames_that_fit_score_exactly_as_sized_by_the_processor(scorer: VideoScorer) -> None:
    # One default view (244, 256 after rounding): 256 frames fit the budget,
    # so max_frames changes nothing, to the last bit.
    frames, stamps = make_episode(5, seed=3, size=(244, 244))
    plain = scorer.score(frames, stamps, INSTRUCTION)
    planned = scorer.score(frames, stamps, INSTRUCTION, max_frames=256)
    assert (planned.log_prob_true, planned.log_prob_false) == (plain.log_prob_true, plain.log_prob_false)


def test_the_transformers_backend_is_a_video_scorer(scorer: VideoScorer) -> None:
    assert isinstance(scorer, VideoScorer) and scorer.config.backend == "transformers"


def test_torch_out_of_memory_becomes_model_out_of_memory_error() -> None:
    import torch

    raised = [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1 bytes. Out of memory"),
        MemoryError(),
    ]
    for error in raised:
        with pytest.raises(
            ModelOutOfMemoryError, match="out of memory scoring 9 frames with model 'm' on cuda:1"
        ) as info:
            with out_of_memory_as_model_error("scoring 9 frames", "m", "cuda:1"):
                raise error
        assert info.value.__cause__ is error
        assert isinstance(info.value, MemoryError)
    # Any other error passes through untouched.
    with pytest.raises(RuntimeError, match="shape mismatch"):
        with out_of_memory_as_model_error("scoring", "m", "cpu"):
            raise RuntimeError("shape mismatch")


def test_release_drops_the_weights_and_every_session_cache(tiny_model_dir: Path) -> None:
    import weakref

    scorer = load_scorer(ScorerConfig(model=str(tiny_model_dir), device="cpu"))
    weights = weakref.ref(scorer.model)
    frames, stamps = make_episode(4)
    session = scorer.start_episode(INSTRUCTION)
    session.extend(frames, stamps)
    session.score()
    assert session.cache_bytes > 0 and session.cached_tokens > 0
    scorer.release()
    assert weights() is None  # nothing else held the model: it is gone
    assert scorer.model is None and scorer.processor is None
    assert session.cache_bytes == 0 and session.cached_tokens == 0
    scorer.release()
