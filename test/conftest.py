"""Shared fixtures: the tiny real Qwen3-VL and an isolated ROS graph.

The tiny model is a randomly initialised Qwen3-VL with the real Qwen
vocabulary, saved to disk once and loaded by every test through the same
loader users get. Its scores are meaningless; the tests check plumbing,
exactness and robustness, never score values.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL_DIR = REPO_ROOT / ".cache" / "tiny-qwen3-vl"


def pytest_configure(config: pytest.Config) -> None:
    # A private DDS domain per test session: parallel test runs on one
    # machine must not see each other's topics.
    # TOPREWARD_TEST_DOMAIN_ID pins it when needed.
    domain = os.environ.get("TOPREWARD_TEST_DOMAIN_ID")
    os.environ["ROS_DOMAIN_ID"] = domain or str(random.Random(os.getpid()).randint(1, 101))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """Directory of the tiny random Qwen3-VL (built on first use, then cached)."""
    from topreward_ros.tools.tiny_model import build_tiny_model

    return Path(build_tiny_model(TINY_MODEL_DIR))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
