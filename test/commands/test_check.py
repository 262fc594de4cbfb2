"""``topreward check`` on the tiny model: its figures against the processor and the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from topreward_ros.commands.cli import main
from topreward_ros.scoring import ModelLoadError, ScorerConfig, VideoScorer, load_scorer
from topreward_ros.scoring.backends.transformers_qwen.runtime import resolve_device
from topreward_ros.scoring.fit import Rig, Setup, check_rig

INSTRUCTION = "stack the red block on the blue block"
# Two 64x64 views side by side, a window of 9 samples (odd: the cache leaves the last one out).
CAMERAS, VIEW, MAX_FRAMES = 2, 64, 9


@pytest.fixture(scope="module")
def scorer(tiny_model_dir: Path) -> VideoScorer:
    return load_scorer(ScorerConfig(model=str(tiny_model_dir), device="cpu", torch_threads=1))


@pytest.fixture(scope="module")
def rig(tiny_model_dir: Path) -> Rig:
    config = ScorerConfig(model=str(tiny_model_dir), device="cpu", local_files_only=True, view_size=VIEW)
    return Rig(config, cameras=CAMERAS, max_frames=MAX_FRAMES, rate_hz=1.0, instruction=INSTRUCTION)


def window(n: int) -> tuple[list[np.ndarray], list[int]]:
    rng = np.random.default_rng(n)
    frames = [rng.integers(0, 256, (VIEW, VIEW * CAMERAS, 3), dtype=np.uint8) for _ in range(n)]
    return frames, [i * 500_000_000 for i in range(n)]


def test_token_and_memory_figures_are_what_the_processor_and_the_cache_report(scorer, rig):
    report = check_rig(rig)
    frames, stamps = window(MAX_FRAMES)
    ids = scorer.processor_inputs(frames, stamps, INSTRUCTION, max_frames=MAX_FRAMES)["input_ids"][0].tolist()
    processor = scorer.processor
    video_ids = {processor.video_token_id, processor.vision_start_token_id, processor.vision_end_token_id}
    episode = report.episode
    assert episode.prompt_tokens_at_max == len(ids)
    assert episode.video_tokens_at_max == sum(1 for i in ids if i in video_ids)
    assert episode.video_tokens_per_group == ids.count(processor.video_token_id) // ((MAX_FRAMES + 1) // 2)
    assert episode.frame_size == scorer.processor_size(VIEW, VIEW * CAMERAS, MAX_FRAMES)
    session = scorer.start_episode(INSTRUCTION, MAX_FRAMES)
    session.extend(frames, stamps)
    session.score()
    assert episode.cached_tokens_at_max == session.cached_tokens
    assert episode.kv_bytes_at_max == session.cache_bytes > 0
    weights = sum(p.numel() * p.element_size() for p in scorer.model.parameters())
    assert report.model.weight_bytes == weights
    assert report.model.dtype == "float32"
    assert episode.thinning_starts_s == MAX_FRAMES / 2.0


def test_two_default_views_are_sized_for_max_frames(tiny_model_dir):
    config = ScorerConfig(model=str(tiny_model_dir), device="cpu", local_files_only=True)
    report = check_rig(Rig(config, cameras=2, max_frames=256))
    assert report.episode.own_size == (256, 480)
    assert report.episode.frame_size == (192, 416)
    assert report.episode.video_tokens_per_sample == 6 * 13 / 2


def test_qwen3_vl_sizes_come_from_the_built_in_table_offline(tmp_path):
    # An empty cache and no hub: the 8B figures come from the table.
    config = ScorerConfig(
        model="Qwen/Qwen3-VL-8B-Instruct",
        device="cpu",
        dtype="bfloat16",
        cache_dir=str(tmp_path),
        local_files_only=True,
    )
    report = check_rig(Rig(config, cameras=1, max_frames=256))
    assert report.model.source == "built-in table, Qwen3-VL-8B"
    assert 8.0e9 < report.model.parameters < 9.5e9
    assert report.model.weight_bytes == 2 * report.model.parameters
    # 36 layers x 8 KV heads x 128 x (K, V) x 2 bytes per token.
    assert report.model.kv_bytes_per_token == 36 * 8 * 128 * 2 * 2
    assert "Qwen3-VL-4B" in " ".join(report.suggestions())


def test_a_missing_local_model_directory_is_named(tmp_path):
    missing = tmp_path / "no-model"
    with pytest.raises(ModelLoadError, match=f"local directory {missing} does not exist"):
        check_rig(Rig(ScorerConfig(model=str(missing)), cameras=1, max_frames=16))


def test_the_driver_problem_names_versions_and_the_wheel():
    old = Setup(torch_version="2.14.1+cu130", torch_cuda="13.0", driver="550.54.15")
    problem = old.cuda_problem()
    assert "550.54.15" in problem and "CUDA 13.0" in problem and "580" in problem and "cu126" in problem
    assert "CPU-only" in Setup(torch_version="2.14.1+cpu", torch_cuda=None).cuda_problem()
    assert "no NVIDIA driver" in Setup(torch_version="2.14.1", torch_cuda="13.0").cuda_problem()
    assert Setup(torch_cuda="13.0", driver="580.1", cuda_available=True).cuda_problem() is None


def test_device_cuda_without_cuda_says_why_and_what_to_do():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a usable GPU")
    with pytest.raises(ModelLoadError, match=r"CUDA cannot be used: .*(driver|CPU-only)") as info:
        resolve_device(ScorerConfig(device="cuda"))
    if torch.version.cuda:
        assert f"CUDA {torch.version.cuda}" in str(info.value)


def test_command_prints_the_figures_and_a_verdict(rig, tmp_path, capsys):
    params = tmp_path / "rig.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n"
        f"    model: {rig.config.model}\n    device: cpu\n    local_files_only: true\n"
        f"    camera_topics: [cam0/image_raw, cam1/image_raw]\n    view_size: {VIEW}\n"
        f"    max_frames: {MAX_FRAMES}\n    instruction: {INSTRUCTION}\n"
    )
    code = main(["check", "--params-file", str(params), "--time"])
    out = capsys.readouterr().out
    report = check_rig(rig)
    assert f"at max_frames {MAX_FRAMES}: {report.episode.prompt_tokens_at_max} prompt tokens" in out
    assert f"KV cache {report.episode.cached_tokens_at_max} tokens" in out
    assert "full forward at max_frames" in out and "one tick" in out
    verdict = out.split("Verdict\n", 1)[1]
    assert verdict.strip().startswith(("FITS", "DOES NOT FIT"))
    assert code == (1 if "DOES NOT FIT" in verdict else 0)


def test_command_refuses_a_bad_parameters_file(tmp_path, capsys):
    params = tmp_path / "rig.yaml"
    params.write_text("/**:\n  ros__parameters:\n    max_frames: 1\n")
    assert main(["check", "--params-file", str(params)]) == 2
    assert "max_frames must be >= 2" in capsys.readouterr().err
