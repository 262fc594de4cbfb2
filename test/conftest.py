"""Shared fixtures: the tiny real Qwen3-VL and a DDS domain per test module.

The tiny model is a randomly initialised Qwen3-VL with the real Qwen
vocabulary, saved to disk once and loaded by every test through the same
loader users get. Its scores are meaningless; the tests check plumbing,
exactness and robustness, never score values.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

TEST_ROOT = Path(__file__).resolve().parent
REPO_ROOT = TEST_ROOT.parent
TINY_MODEL_DIR = REPO_ROOT / ".cache" / "tiny-qwen3-vl"

#: First DDS domain id tried when TOPREWARD_TEST_DOMAIN_ID does not name one.
DEFAULT_DOMAIN_BASE = 60
#: Domain ids tried in turn (ROS 2 on Linux: 0-101 keep clear of ephemeral ports; 0 is everyone's default).
DOMAIN_IDS = range(1, 102)


#: The longest test modules (node processes, Ray clusters, busy-machine replays), first.
#: pytest-xdist hands whole modules to its workers in collection order, so starting the
#: long ones first keeps the workers from idling while one of them finishes a long
#: module at the end. Order only: every module still runs alone and in any order.
LONG_MODULES = (
    "test_scale_ray.py",
    "test_scale_ray_dataset.py",
    "test_replay_under_load.py",
    "test_success_replay.py",
    "test_managed_node.py",
    "test_eval_rerun.py",
    "test_scorer_node.py",
    "test_eval_dataset.py",
    "test_eval_scores.py",
    "test_eval_report.py",
    "test_demo.py",
    "test_ros2_cli.py",
)


#: The folder name that marks its tests ``graph``: they start ROS 2 processes on a real
#: rclpy graph (``pytest -m graph`` selects them; ``make test-soak`` runs them over and
#: over). test/ mirrors the package; each folder keeps such modules in its ``graph/``.
GRAPH_FOLDER = "graph"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if GRAPH_FOLDER in item.path.relative_to(TEST_ROOT).parts[:-1]:
            item.add_marker(pytest.mark.graph)
    rank = {name: i for i, name in enumerate(LONG_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def claim_domain(base: int) -> tuple[int, IO[bytes]]:
    """The first free DDS domain id from ``base`` on, held by an exclusive lock file.

    Every test module of every test run on this machine claims its domain
    this way, so two runs at once (two checkouts, CI beside a developer) never
    share one. The lock is the open file: it is released when the file is
    closed or the process dies, so a crashed run leaves nothing to clean up.
    """
    ids = list(DOMAIN_IDS)
    start = ids.index(base) if base in ids else 0
    for domain in ids[start:] + ids[:start]:
        handle = open(Path(tempfile.gettempdir()) / f"topreward-ros-domain-{domain}.lock", "ab")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        return domain, handle
    raise RuntimeError(f"every DDS domain id in {DOMAIN_IDS} is held by another test run on this machine")


@pytest.fixture(scope="module", autouse=True)
def ros_domain() -> Iterator[int]:
    """A DDS domain of this test module's own (``ROS_DOMAIN_ID``, inherited by the processes it starts).

    Claimed before the module's other fixtures, so its contexts, nodes and
    child processes all join it; TOPREWARD_TEST_DOMAIN_ID sets the first id tried.
    """
    base = int(os.environ.get("TOPREWARD_TEST_DOMAIN_ID") or DEFAULT_DOMAIN_BASE)
    domain, lock = claim_domain(base)
    previous = os.environ.get("ROS_DOMAIN_ID")
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    try:
        yield domain
    finally:
        if previous is None:
            os.environ.pop("ROS_DOMAIN_ID", None)
        else:
            os.environ["ROS_DOMAIN_ID"] = previous
        lock.close()


@pytest.fixture
def context() -> Iterator[Any]:
    """An rclpy context of the test's own, in the module's domain, shut down after the test.

    Nodes built on it are real participants of the graph; a context per test
    keeps one test's nodes and subscriptions out of the next one's.
    """
    rclpy = pytest.importorskip("rclpy")
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx, args=[])
    yield ctx
    rclpy.shutdown(context=ctx)


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """Directory of the tiny random Qwen3-VL (built on first use, then cached)."""
    from topreward_ros.tools.tiny_model import build_tiny_model

    return Path(build_tiny_model(TINY_MODEL_DIR))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
