"""What the Ray test modules share: a real local cluster per module, scenes, file times.

``cluster`` is a module-scoped, autouse fixture: a module that imports it
starts one real local Ray instance for its tests (raylet, GCS, worker
processes) and shuts it down after them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from topreward_ros.demo.scene import DEMO_SCENES, SceneSpec

SCENES = (*DEMO_SCENES, SceneSpec("push the green block to the left", (40, 160, 60), 0.6, 0.3))


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Iterator[None]:
    """Two CPUs, a small object store: the machine the tests run on, shared with other work.

    Its workers run at nice 0, as in the instance ``--ray`` starts for a run
    (``scale/engine.py``): at Ray's default of 15 they would get a few percent
    of a CPU beside the suite's other workers or busy processes, and a Ray
    test would take many times its time on a loaded machine.
    """
    import ray

    before = os.environ.get("RAY_worker_niceness")
    os.environ["RAY_worker_niceness"] = "0"
    try:
        ray.init(
            num_cpus=2,
            object_store_memory=128 * 1024 * 1024,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    finally:
        if before is None:
            os.environ.pop("RAY_worker_niceness", None)
        else:
            os.environ["RAY_worker_niceness"] = before
    yield
    ray.shutdown()


def episode_mtimes(out: Path) -> dict[str, int]:
    """When each episode file under ``out`` was last written (a redone episode changes it)."""
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("episode_*/*") if p.is_file()}
