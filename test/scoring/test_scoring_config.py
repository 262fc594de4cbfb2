"""ScorerConfig validation: one test per rule, the error names the bad value."""

from __future__ import annotations

import dataclasses

import pytest

from topreward_ros.scoring import DEFAULT_MODEL, DEFAULT_SUCCESS_THRESHOLD, ScorerConfig


def test_defaults_follow_the_paper() -> None:
    config = ScorerConfig()
    assert config.model == DEFAULT_MODEL == "Qwen/Qwen3-VL-8B-Instruct"
    assert (config.sample_fps, config.num_prefixes, config.view_size, config.success_window) == (2.0, 15, 244, 3)
    assert (config.device, config.dtype, config.attn_implementation) == ("auto", "auto", "sdpa")
    assert config.success_threshold == DEFAULT_SUCCESS_THRESHOLD
    assert config.local_files_only is False and config.torch_threads is None
    assert config.backend == "transformers"


def test_config_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ScorerConfig().model = "x"  # type: ignore[misc]


def test_valid_values_are_accepted() -> None:
    config = ScorerConfig(
        model="/models/qwen",
        revision="main",
        cache_dir="/tmp/hf",
        local_files_only=True,
        device="cuda:1",
        dtype="float16",
        attn_implementation="eager",
        sample_fps=4,
        num_prefixes=2,
        view_size=32,
        success_window=1,
        success_threshold=-3,
        torch_threads=2,
    )
    assert config.device == "cuda:1"


def test_model_must_be_non_empty() -> None:
    with pytest.raises(ValueError, match="model must be a hub id or a directory, got ' '"):
        ScorerConfig(model=" ")


def test_backend_must_be_registered() -> None:
    assert ScorerConfig(backend="transformers").backend == "transformers"
    with pytest.raises(ValueError, match="backend must be one of transformers, got 'vllm'"):
        ScorerConfig(backend="vllm")


def test_revision_must_be_non_empty() -> None:
    with pytest.raises(ValueError, match="revision must be a non-empty string or None, got ''"):
        ScorerConfig(revision="")


def test_cache_dir_must_be_non_empty() -> None:
    with pytest.raises(ValueError, match="cache_dir must be a non-empty path or None, got ''"):
        ScorerConfig(cache_dir="")


def test_local_files_only_must_be_bool() -> None:
    with pytest.raises(ValueError, match="local_files_only must be a bool, got 'yes'"):
        ScorerConfig(local_files_only="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:x", "CPU"])
def test_device_must_be_known(device: str) -> None:
    with pytest.raises(ValueError, match=f"device must be one of auto, cpu, cuda or 'cuda:N', got '{device}'"):
        ScorerConfig(device=device)


def test_dtype_must_be_known() -> None:
    with pytest.raises(ValueError, match="dtype must be one of auto, bfloat16, float16, float32, got 'fp8'"):
        ScorerConfig(dtype="fp8")


def test_attn_implementation_must_be_known() -> None:
    with pytest.raises(
        ValueError, match="attn_implementation must be one of sdpa, eager, flash_attention_2, got 'flex'"
    ):
        ScorerConfig(attn_implementation="flex")


def test_flash_attention_needs_cuda() -> None:
    with pytest.raises(ValueError, match="'flash_attention_2' needs a CUDA device, got device 'cpu'"):
        ScorerConfig(attn_implementation="flash_attention_2", device="cpu")


@pytest.mark.parametrize("fps", [0, -2.0, float("nan"), float("inf"), True])
def test_sample_fps_must_be_positive_finite(fps: float) -> None:
    with pytest.raises(ValueError, match=r"sample_fps must be a finite number > 0, got"):
        ScorerConfig(sample_fps=fps)


@pytest.mark.parametrize("k", [1, 0, 2.5])
def test_num_prefixes_must_be_at_least_two(k: int) -> None:
    with pytest.raises(ValueError, match=f"num_prefixes must be an integer >= 2, got {k}"):
        ScorerConfig(num_prefixes=k)


@pytest.mark.parametrize("size", [31, 0, 244.0])
def test_view_size_must_cover_a_patch(size: int) -> None:
    with pytest.raises(ValueError, match=f"view_size must be an integer >= 32 .*, got {size}"):
        ScorerConfig(view_size=size)


def test_success_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="success_window must be an integer >= 1, got 0"):
        ScorerConfig(success_window=0)


@pytest.mark.parametrize("threshold", [float("nan"), float("-inf"), "high"])
def test_success_threshold_must_be_finite(threshold: float) -> None:
    with pytest.raises(ValueError, match="success_threshold must be a finite number"):
        ScorerConfig(success_threshold=threshold)


def test_torch_threads_must_be_positive() -> None:
    with pytest.raises(ValueError, match="torch_threads must be an integer >= 1 or None, got 0"):
        ScorerConfig(torch_threads=0)
