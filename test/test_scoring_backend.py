"""The scorer on the real tiny Qwen3-VL: prompt layout, reference forward, exact KV reuse.

The tiny model has random weights: its scores mean nothing. These tests check
that the right tokens reach the model, that the reference path is exactly a
plain transformers forward, and that every cached path equals independent
forwards.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from topreward_ros.scoring import FrameError, InstructionError, ScorerConfig, VideoScorer, load_scorer
from topreward_ros.scoring.prompt import QUESTION, STATEMENT_PREFIX

INSTRUCTION = "put the red block in the bowl"
FRAME_COUNTS = (1, 2, 3, 5, 8, 13, 21, 40)
TOL_NATS = 1e-5  # cached and uncached forwards differ by ~3e-6 nats here (float32, CPU)


@pytest.fixture(scope="module")
def scorer(tiny_model_dir: Path) -> VideoScorer:
    import torch

    torch.set_num_threads(2)
    return load_scorer(ScorerConfig(model=str(tiny_model_dir), local_files_only=True, device="cpu"))


def make_episode(n: int, seed: int = 0, size: tuple[int, int] = (64, 64)) -> tuple[list[np.ndarray], list[int]]:
    """Random frames with non-uniform stamps (0.3..0.9 s apart, arbitrary origin)."""
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n)]
    gaps = rng.integers(300_000_000, 900_000_000, n)
    stamps = (1_700_000_000_000_000_000 + np.cumsum(gaps)).tolist()
    return frames, [int(s) for s in stamps]


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


def test_score_equals_a_plain_transformers_forward(scorer: VideoScorer, tiny_model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    frames, stamps = make_episode(6, seed=3)
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).eval()
    text = (
        "<|im_start|>user\n<|video_pad|>The above video shows a robot manipulation trajectory that "
        f"completes the following task: {INSTRUCTION} Decide whether the above statement is True or not. "
        "The answer is: True"
    )
    offsets = [s - stamps[0] for s in stamps]
    inputs = processor(
        text=[text],
        videos=[np.stack(frames)],
        video_metadata=[{"fps": 1e9, "frames_indices": offsets, "total_num_frames": 6}],
        do_sample_frames=False,
        cap_pixels_per_frame=False,
        return_tensors="pt",
    )
    inputs.pop("video_metadata", None)
    with torch.no_grad():
        logits = model(**inputs).logits
    log_probs = torch.log_softmax(logits[0, -2].float(), dim=-1)
    score = scorer.score(frames, stamps, INSTRUCTION)
    assert score.num_frames == 6
    assert score.log_prob_true == pytest.approx(float(log_probs[3007]), abs=1e-5)
    assert score.log_prob_false == pytest.approx(float(log_probs[scorer.false_token_id]), abs=1e-5)
    assert score.latency_s > 0


def test_scores_depend_on_frames_and_instruction(scorer: VideoScorer) -> None:
    frames, stamps = make_episode(4, seed=1)
    other, _ = make_episode(4, seed=2)
    base = scorer.score(frames, stamps, INSTRUCTION).log_prob_true
    assert scorer.score(other, stamps, INSTRUCTION).log_prob_true != pytest.approx(base, abs=1e-4)
    assert scorer.score(frames, stamps, "open the drawer").log_prob_true != pytest.approx(base, abs=1e-4)


@pytest.fixture(scope="module")
def episode_40(scorer: VideoScorer) -> tuple[list[np.ndarray], list[int], dict[int, float], dict[int, float]]:
    frames, stamps = make_episode(40, seed=7)
    true = {}
    false = {}
    for n in FRAME_COUNTS:
        s = scorer.score(frames[:n], stamps[:n], INSTRUCTION)
        true[n], false[n] = s.log_prob_true, s.log_prob_false
    return frames, stamps, true, false


def test_session_equals_independent_forwards(scorer: VideoScorer, episode_40) -> None:
    frames, stamps, true, false = episode_40
    session = scorer.start_episode(INSTRUCTION)
    done = 0
    for n in FRAME_COUNTS:
        session.extend(frames[done:n], stamps[done:n])
        done = n
        score = session.score()
        assert score.num_frames == n == session.num_frames
        assert score.log_prob_true == pytest.approx(true[n], abs=TOL_NATS), n
        assert score.log_prob_false == pytest.approx(false[n], abs=TOL_NATS), n
    assert session.stamps_ns == tuple(stamps)
    assert session.cache_rebuilds == 0
    # header (3 tokens) + 20 complete groups of (timestamp + 4 pads + 2 markers)
    assert session.cached_tokens > 20 * 6


def test_session_one_frame_at_a_time(scorer: VideoScorer, episode_40) -> None:
    frames, stamps, true, _ = episode_40
    session = scorer.start_episode(INSTRUCTION)
    got = {}
    for n in range(1, 14):
        session.extend([frames[n - 1]], [stamps[n - 1]])
        got[n] = session.score().log_prob_true
    for n in (1, 2, 3, 5, 8, 13):
        assert got[n] == pytest.approx(true[n], abs=TOL_NATS), n


def test_cached_curve_equals_uncached_curve(scorer: VideoScorer, episode_40) -> None:
    frames, stamps, _, _ = episode_40
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
    frames, stamps, _, _ = episode_40
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


@pytest.mark.parametrize("instruction", ["", "   ", "\n\t"])
def test_empty_instruction_is_rejected(scorer: VideoScorer, instruction: str) -> None:
    frames, stamps = make_episode(2)
    with pytest.raises(InstructionError, match="instruction must contain text"):
        scorer.score(frames, stamps, instruction)
    with pytest.raises(InstructionError, match="instruction must contain text"):
        scorer.start_episode(instruction)


def test_instruction_with_control_tokens_is_rejected(scorer: VideoScorer) -> None:
    frames, stamps = make_episode(2)
    with pytest.raises(InstructionError, match=r"<\|video_pad\|>"):
        scorer.score(frames, stamps, "pick <|video_pad|> up")
    with pytest.raises(InstructionError, match=r"<\|im_end\|>"):
        scorer.start_episode("done<|im_end|>")


def test_bad_frames_are_rejected(scorer: VideoScorer) -> None:
    frames, stamps = make_episode(3)
    with pytest.raises(FrameError, match="at least one frame"):
        scorer.score([], [], INSTRUCTION)
    with pytest.raises(FrameError, match="3 frames but 2 stamps"):
        scorer.score(frames, stamps[:2], INSTRUCTION)
    with pytest.raises(FrameError, match=r"frames\[1\] must be uint8"):
        scorer.score([frames[0], frames[1].astype(np.float32), frames[2]], stamps, INSTRUCTION)
    with pytest.raises(FrameError, match=r"frames\[2\] has shape \(32, 64, 3\)"):
        scorer.score([frames[0], frames[1], frames[2][:32]], stamps, INSTRUCTION)
    with pytest.raises(FrameError, match=r"shape HxWx3"):
        scorer.score([frames[0][..., 0]], stamps[:1], INSTRUCTION)
    with pytest.raises(FrameError, match="increase strictly"):
        scorer.score(frames, [stamps[0], stamps[0], stamps[2]], INSTRUCTION)
    with pytest.raises(FrameError, match="must be an integer"):
        scorer.score(frames, [float(s) for s in stamps], INSTRUCTION)


def test_bad_extend_leaves_the_session_unchanged(scorer: VideoScorer) -> None:
    frames, stamps = make_episode(4)
    session = scorer.start_episode(INSTRUCTION)
    with pytest.raises(FrameError, match="extend"):
        session.score()
    session.extend(frames[:2], stamps[:2])
    with pytest.raises(FrameError, match="must increase across extend"):
        session.extend(frames[2:], [stamps[0], stamps[3]])
    with pytest.raises(FrameError, match="this episode's frames are"):
        session.extend([np.zeros((32, 32, 3), np.uint8)], [stamps[3]])
    with pytest.raises(FrameError, match="2 frames but 1 stamps"):
        session.extend(frames[2:], stamps[2:3])
    assert session.num_frames == 2
    session.extend(frames[2:], stamps[2:])
    assert session.score().log_prob_true == pytest.approx(
        scorer.score(frames, stamps, INSTRUCTION).log_prob_true, abs=TOL_NATS
    )


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


def test_max_frames_of_a_session_must_be_positive(scorer: VideoScorer) -> None:
    with pytest.raises(ValueError, match="max_frames must be a positive integer"):
        scorer.start_episode(INSTRUCTION, max_frames=0)
