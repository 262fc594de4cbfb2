"""load_scorer: the real loader on the tiny model, and its error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from topreward_ros.scoring import ModelLoadError, ScorerConfig, load_scorer


def test_loads_the_tiny_model_from_a_directory(tiny_model_dir: Path) -> None:
    import torch

    scorer = load_scorer(ScorerConfig(model=str(tiny_model_dir), device="cpu", dtype="auto"))
    assert scorer.model_id == str(tiny_model_dir)
    assert scorer.device == "cpu" and scorer.dtype == torch.float32
    assert scorer.family == "qwen3_vl" and scorer.supports_cache
    assert next(scorer.model.parameters()).dtype == torch.float32
    assert scorer.config.model == str(tiny_model_dir)


def test_missing_local_directory(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match=f"local directory {missing} does not exist") as info:
        load_scorer(ScorerConfig(model=str(missing)))
    assert "save_pretrained" in str(info.value)


def test_directory_without_model_files(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as info:
        load_scorer(ScorerConfig(model=str(tmp_path)))
    message = str(info.value)
    assert f"model {str(tmp_path)!r}" in message
    assert f"looked in: local directory {tmp_path}" in message
    assert "config.json" in message


def test_offline_hub_id_not_in_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as info:
        load_scorer(ScorerConfig(model="Qwen/Qwen3-VL-2B-Instruct", cache_dir=str(tmp_path)))
    message = str(info.value)
    assert "model 'Qwen/Qwen3-VL-2B-Instruct'" in message
    assert f"cache dir {tmp_path}" in message
    assert "offline" in message and "hf download Qwen/Qwen3-VL-2B-Instruct" in message


def test_local_files_only_counts_as_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(ModelLoadError, match="offline"):
        load_scorer(ScorerConfig(model="Qwen/Qwen3-VL-2B-Instruct", cache_dir=str(tmp_path), local_files_only=True))


def test_unsupported_model_family(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(ModelLoadError, match="is a 'gpt2' model; TOPReward scoring supports qwen3_vl"):
        load_scorer(ScorerConfig(model=str(tmp_path)))


def test_cuda_requested_without_cuda(tiny_model_dir: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ModelLoadError, match="device 'cuda' requested but CUDA cannot be used: ") as raised:
        load_scorer(ScorerConfig(model=str(tiny_model_dir), device="cuda"))
    # The message names this torch build and its CUDA version (or that it has none), and the fix.
    message = str(raised.value)
    assert f"torch {torch.__version__}" in message, message
    if torch.version.cuda is not None:
        assert f"CUDA {torch.version.cuda}" in message, message
    assert message.endswith("or set device 'cpu' ('auto' also falls back to the CPU)"), message
