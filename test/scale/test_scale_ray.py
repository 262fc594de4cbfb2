"""`topreward bag --ray` on a real local Ray cluster started here, with the tiny model.

The cluster is real (``ray.init(num_cpus=2)``: a raylet, worker processes,
actors that load the tiny Qwen3-VL from disk); nothing about Ray is mocked.
The local, in-process path is the reference: the Ray path must leave the
same files with the same values (tables, curve.json, manifests, runs.json).
A replica killed mid-run (``ray.kill`` on its actor, right after the driver
wrote the bag's first episode) must lose only unfinished episodes: the
episodes written before the kill are never redone, and a re-run (or the
retry within the run) completes the outputs to exactly the reference.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray (the optional 'scale' extra) is not installed")

from support.command_line import command_line  # noqa: E402
from support.output_compare import assert_same_outputs  # noqa: E402
from support.ray_cluster import SCENES, cluster, episode_mtimes  # noqa: E402,F401 (cluster: the module's Ray)

from topreward_ros.commands.bag import EXIT_OK, EXIT_PARTIAL, register, run_bag  # noqa: E402
from topreward_ros.demo.synthetic_bag import write_episodes_bag  # noqa: E402


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ray_fleet") / "bags"
    write_episodes_bag(root / "a", "mcap", SCENES[:2], duration_s=1.5)
    write_episodes_bag(root / "b", "sqlite3", SCENES[2:], duration_s=1.5)
    return root


def fleet(inputs: list[str], out: Path, model: Path, flags: str = "", on_replica_episode=None) -> int:
    """``topreward bag INPUTS... -o OUT --model MODEL`` on 1 thread at 2 Hz, then ``flags``."""
    parser = argparse.ArgumentParser(prog="topreward")
    register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "bag",
            *inputs,
            *command_line(
                "-o {} --model {} --local-files-only --view-size 64 --torch-threads 1 --rate 2 -q", out, model
            ),
            *flags.split(),
        ]
    )
    args.on_replica_episode = on_replica_episode
    return run_bag(args)


@pytest.fixture(scope="module")
def reference(bags, tiny_model_dir, tmp_path_factory) -> Path:
    """The local (embedded) path's outputs for the two bags: what Ray must reproduce."""
    out = tmp_path_factory.mktemp("reference") / "out"
    assert fleet([str(bags)], out, tiny_model_dir) == EXIT_OK
    return out


def test_ray_gives_the_local_tables_curves_and_manifests(bags, tiny_model_dir, reference, tmp_path):
    out = tmp_path / "ray"
    assert fleet([str(bags)], out, tiny_model_dir, "--ray --replicas 2") == EXIT_OK
    compared = assert_same_outputs(reference, out)
    # Values were compared, not only names: every kind of output is in the list.
    for rel in (
        "runs.json",
        "frames.parquet",
        "a/manifest.json",
        "b/manifest.json",
        "a/episode_0001/curve.json",
        "a/episode_0001/frames.parquet",
        "b/episode_0000/plot.png",
        "b/episode_0000/progress.mcap",
    ):
        assert rel in compared
    runs = json.loads((out / "runs.json").read_text())
    assert [(b["name"], b["episodes"], b["episode_offset"]) for b in runs["bags"]] == [("a", 2, 0), ("b", 1, 2)]


def test_single_bag_with_ray_keeps_the_single_layout(bags, tiny_model_dir, reference, tmp_path):
    out = tmp_path / "one"
    assert fleet([str(bags / "b")], out, tiny_model_dir, "--ray --replicas 1") == EXIT_OK
    assert not (out / "runs.json").exists()
    assert_same_outputs(reference / "b", out)


def test_killed_replica_loses_only_unfinished_episodes_and_a_rerun_completes(bags, tiny_model_dir, reference, tmp_path):
    out = tmp_path / "killed"
    kills = []

    def kill_after_first_episode(job, spec, actor):
        if not kills:
            kills.append((job.name, spec.index))
            ray.kill(actor)

    code = fleet(
        [str(bags)], out, tiny_model_dir, "--ray --replicas 1 --retries 0", on_replica_episode=kill_after_first_episode
    )
    assert code == EXIT_PARTIAL
    assert kills == [("a", 0)]
    runs = json.loads((out / "runs.json").read_text())
    assert [b["status"] for b in runs["bags"]] == ["incomplete", "incomplete"]
    assert "died" in runs["bags"][0]["error"] and "no model replica left" in runs["bags"][1]["error"]
    manifest = json.loads((out / "a" / "manifest.json").read_text())
    assert sorted(manifest["episodes"]) == ["0"]  # written before the kill, recorded once
    assert not (out / "a" / "episode_0001").exists()
    before = episode_mtimes(out)
    assert before and all(k.startswith("a/episode_0000/") for k in before)

    assert fleet([str(bags)], out, tiny_model_dir, "--ray --replicas 1") == EXIT_OK
    after = episode_mtimes(out)
    assert {k: after[k] for k in before} == before  # nothing written before the kill was redone
    assert_same_outputs(reference, out, skip=("runs.json",))
    runs = json.loads((out / "runs.json").read_text())
    assert [b["this_run"] for b in runs["bags"]] == [
        {"scored": 1, "skipped": 1, "empty": 0, "failed": 0},
        {"scored": 1, "skipped": 0, "empty": 0, "failed": 0},
    ]


def test_a_replica_killed_mid_run_is_replaced_within_the_run(bags, tiny_model_dir, reference, tmp_path):
    out = tmp_path / "retried"
    kills = []
    first_files = {}

    def kill_after_first_episode(job, spec, actor):
        if not kills:
            kills.append((job.name, spec.index))
            first_files.update(episode_mtimes(out))
            ray.kill(actor, no_restart=False)  # Ray restarts it (the model loads again)

    assert (
        fleet(
            [str(bags)],
            out,
            tiny_model_dir,
            "--ray --replicas 1 --retries 1",
            on_replica_episode=kill_after_first_episode,
        )
        == EXIT_OK
    )
    assert kills == [("a", 0)]
    after = episode_mtimes(out)
    assert first_files and {k: after[k] for k in first_files} == first_files
    assert_same_outputs(reference, out, skip=("runs.json",))


def test_killed_driver_loses_only_unfinished_episodes_and_a_rerun_completes(bags, tiny_model_dir, reference, tmp_path):
    """The driver process is SIGKILLed right after it wrote the first episode."""
    out = tmp_path / "driver_killed"
    address = ray.get_runtime_context().gcs_address
    script = f"""
import argparse, os, signal
from topreward_ros.commands.bag import register, run_bag
parser = argparse.ArgumentParser(prog="topreward")
register(parser.add_subparsers())
args = parser.parse_args(["bag", {str(bags / "a")!r}, "-o", {str(out)!r}, "--model", {str(tiny_model_dir)!r},
                          "--local-files-only", "--view-size", "64", "--torch-threads", "1",
                          "--rate", "2", "-q", "--ray", {address!r}, "--replicas", "1"])
def die(job, spec, actor):
    os.kill(os.getpid(), signal.SIGKILL)
args.on_replica_episode = die
run_bag(args)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=dict(os.environ), timeout=600
    )
    assert result.returncode == -9, result.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["episodes"]) == ["0"]
    before = episode_mtimes(out)
    assert before and all(k.startswith("episode_0000/") for k in before)
    # No half-written file under a final name: only completed episode files and the manifest.
    assert not [p for p in out.rglob(".*.tmp")]

    assert fleet([str(bags / "a")], out, tiny_model_dir, "--ray --replicas 1") == EXIT_OK
    after = episode_mtimes(out)
    assert {k: after[k] for k in before} == before
    assert_same_outputs(reference / "a", out)
