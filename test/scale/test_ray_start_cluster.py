"""`topreward bag --ray ADDRESS` on a cluster the command did not start: `ray start --head` on loopback.

As docs/offline.md describes a cluster: ``ray start --head`` (Ray's defaults,
token authentication on; workers at nice 0, as the docs advise where the
machine runs other work) in one shell, then ``topreward bag bags/k1 -o out
--ray 127.0.0.1:PORT`` from the user's directory, with paths relative to it.

* without ``RAY_AUTH_MODE=token`` the cluster refuses the driver: the command
  fails (exit 2) and its error says what to set;
* with it, every replica (whose working directory is the cluster's, not the
  user's) finds the relative input, and the outputs equal a local run's,
  apart from the recorded input path (absolute on Ray).

``ray start --block`` runs as a child of the test and takes the processes it
started with it when stopped; nothing else on the machine is touched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("ray")

from support.command_line import command_line
from support.output_compare import assert_close, assert_same_outputs  # noqa: E402

from topreward_ros.demo.scene import DEMO_SCENES  # noqa: E402
from topreward_ros.demo.synthetic_bag import CameraSpec, write_episodes_bag  # noqa: E402

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]

RAY = Path(sys.executable).parent / "ray"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH") and k != "RAY_ADDRESS"}
    env.update(OMP_NUM_THREADS="1", **extra)
    return env


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not RAY.exists():
        pytest.skip(f"{RAY} not found: the `ray` command comes with the scale requirements")
    port = free_port()
    # A short temporary directory: Ray's socket paths must stay under the Unix limit.
    temp = Path(f"/tmp/trr{port}")
    log = tmp_path_factory.mktemp("ray_head") / "ray_start.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command_line(
                "{} start --head --block --node-ip-address=127.0.0.1 {} "
                "--num-cpus=2 --include-dashboard=false --disable-usage-stats {} "
                "--object-store-memory=134217728",
                RAY,
                f"--port={port}",
                f"--temp-dir={temp}",
            ),
            stdout=out,
            stderr=subprocess.STDOUT,
            # docs/offline.md's advice for a cluster whose machine runs other work (this
            # suite's other workers, a busy CI machine): workers at nice 0, not Ray's 15,
            # which would leave them a few percent of a CPU beside busy processes.
            env=clean_env(RAY_worker_niceness="0"),
            start_new_session=True,
        )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"`ray start --head` did not come up:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield address
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user's directory: bags/k1 (two episodes) relative to it."""
    root = tmp_path_factory.mktemp("user")
    write_episodes_bag(
        root / "bags" / "k1", "mcap", DEMO_SCENES[:2], cameras=(CameraSpec("/camera/image_raw"),), duration_s=2.0
    )
    return root


def topreward_bag(
    user_dir: Path, out: str, model: Path, *extra: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *command_line(
                "{} -m topreward_ros bag bags/k1 -o {} --model {} --device cpu "
                "--dtype float32 --local-files-only --view-size 64 "
                "--num-prefixes 4 --no-plot -q",
                sys.executable,
                out,
                model,
            ),
            *extra,
        ],
        cwd=user_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )


def test_a_refused_token_says_what_to_set(head: str, user_dir: Path, tiny_model_dir: Path) -> None:
    run = topreward_bag(user_dir, "out_refused", tiny_model_dir, "--ray", head, env=clean_env())
    assert run.returncode == 2, run.stdout + run.stderr
    assert "set RAY_AUTH_MODE=token" in run.stderr, run.stderr[-3000:]


def test_relative_paths_on_a_cluster_it_did_not_start_give_the_local_outputs(
    head: str, user_dir: Path, tiny_model_dir: Path
) -> None:
    local = topreward_bag(user_dir, "out_local", tiny_model_dir, env=clean_env())
    assert local.returncode == 0, local.stdout + local.stderr
    on_ray = topreward_bag(
        user_dir, "out_ray", tiny_model_dir, "--ray", head, "--replicas", "1", env=clean_env(RAY_AUTH_MODE="token")
    )
    assert on_ray.returncode == 0, on_ray.stdout + on_ray.stderr
    a, b = user_dir / "out_local", user_dir / "out_ray"
    assert_same_outputs(a, b, skip=("manifest.json",))
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    assert ma["input"]["path"] == "bags/k1"
    assert mb["input"]["path"] == str(user_dir / "bags" / "k1")
    ma["input"]["path"] = mb["input"]["path"]
    assert_close(ma, mb, "manifest.json")
    assert len(ma["episodes"]) == 2


def test_a_run_whose_episodes_all_failed_names_the_failures_not_the_cameras() -> None:
    from topreward_ros.offline.report import EpisodeOutcome, RunReport

    failed = EpisodeOutcome(0, "stack the cups", "failed", "BagOpenError: bags/k1: no such file or directory")
    text = RunReport("bags/k1", "out", [failed, EpisodeOutcome(1, "open the drawer", "failed", "same")]).summary()
    assert "NOTHING SCORED: 2 episode(s) of the bag failed (their errors are above)" in text
    assert "usable camera frame" not in text
    text = RunReport("bags/k1", "out", [failed, EpisodeOutcome(1, "open the drawer", "empty")]).summary()
    assert "NOTHING SCORED: 1 episode(s) of the bag failed (their errors are above), 1 had no usable" in text
    text = RunReport("bags/k1", "out", [EpisodeOutcome(0, "open the drawer", "empty")]).summary()
    assert "NOTHING SCORED: no episode of the bag had a usable camera frame" in text
