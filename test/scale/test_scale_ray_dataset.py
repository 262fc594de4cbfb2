"""`topreward lerobot --ray` and `topreward eval --ray` on a real local Ray cluster, tiny model.

One input, many episodes: a LeRobot dataset's episodes are spread over the
replicas (each replica reads its own episodes from the dataset), and the
files equal the in-process engine's, content compared (JSON and CSV values,
MCAP messages, PNG pixels, the RA-BC parquet). A replica killed after the
first episode leaves that episode on disk and a re-run completes the rest.
`topreward eval --ray` over a dataset and a bag gives the local run's
records, tables and calibrated.yaml. The cluster is real (``ray.init``:
raylet, workers, actors loading the model from disk); nothing is mocked.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray (the optional 'scale' extra) is not installed")

from support.command_line import command_line  # noqa: E402
from support.output_compare import assert_same_outputs  # noqa: E402
from support.ray_cluster import SCENES, cluster, episode_mtimes  # noqa: E402,F401 (cluster: the module's Ray)

from topreward_ros.commands.options import EXIT_OK, EXIT_PARTIAL  # noqa: E402
from topreward_ros.demo.synthetic_bag import write_episodes_bag  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from topreward_ros.demo.synthetic_lerobot import DatasetCamera, write_lerobot_dataset

    root = tmp_path_factory.mktemp("ray_dataset") / "ds"
    write_lerobot_dataset(
        root, SCENES, (DatasetCamera("observation.images.front", 64, 48),), fps=10, duration_s=1.5, episodes_per_file=2
    )
    return root


def lerobot(dataset: Path, out: Path, model: Path, flags: str = "", on_replica_episode=None) -> int:
    """``topreward lerobot DATASET -o OUT --model MODEL`` on 1 thread at 2 Hz, then ``flags``."""
    from topreward_ros.commands.lerobot import register as register_lerobot
    from topreward_ros.commands.lerobot import run_lerobot

    parser = argparse.ArgumentParser(prog="topreward")
    register_lerobot(parser.add_subparsers())
    args = parser.parse_args(
        [
            *command_line(
                "lerobot {} -o {} --model {} --local-files-only --view-size 64 --torch-threads 1 --rate 2 -q",
                dataset,
                out,
                model,
            ),
            *flags.split(),
        ]
    )
    args.on_replica_episode = on_replica_episode
    return run_lerobot(args)


@pytest.fixture(scope="module")
def local(dataset, tiny_model_dir, tmp_path_factory) -> Path:
    """The in-process engine's outputs for the dataset: what Ray must reproduce."""
    out = tmp_path_factory.mktemp("lerobot_local") / "out"
    assert lerobot(dataset, out, tiny_model_dir) == EXIT_OK
    return out


def test_lerobot_on_ray_spreads_one_dataset_over_replicas_and_gives_the_local_outputs(
    dataset, local, tiny_model_dir, tmp_path
):
    out = tmp_path / "ray"
    scored_by: dict[int, int] = {}

    def note_replica(job, spec, actor):
        scored_by[spec.index] = ray.get(actor.info.remote())["pid"]

    assert lerobot(dataset, out, tiny_model_dir, "--ray --replicas 2", on_replica_episode=note_replica) == EXIT_OK
    compared = assert_same_outputs(local, out)
    for rel in (
        "manifest.json",
        "frames.parquet",
        "topreward_progress.parquet",
        "episode_0002/curve.json",
        "episode_0002/progress.mcap",
        "episode_0000/plot.png",
    ):
        assert rel in compared
    # One input, several replicas: its episodes went to both.
    assert sorted(scored_by) == [0, 1, 2] and len(set(scored_by.values())) == 2


def test_lerobot_on_ray_with_a_killed_replica_resumes_to_the_local_outputs(dataset, local, tiny_model_dir, tmp_path):
    out = tmp_path / "killed"
    kills = []

    def kill_after_first_episode(job, spec, actor):
        if not kills:
            kills.append(spec.index)
            ray.kill(actor)

    assert (
        lerobot(
            dataset, out, tiny_model_dir, "--ray --replicas 1 --retries 0", on_replica_episode=kill_after_first_episode
        )
        == EXIT_PARTIAL
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert kills == [0] and sorted(manifest["episodes"]) == ["0"]
    before = episode_mtimes(out)
    assert lerobot(dataset, out, tiny_model_dir, "--ray --replicas 1") == EXIT_OK
    after = episode_mtimes(out)
    assert {k: after[k] for k in before} == before  # nothing written before the kill was redone
    assert_same_outputs(local, out)


def test_eval_on_ray_scores_a_dataset_and_a_bag_as_the_local_engine_does(dataset, tiny_model_dir, tmp_path):
    """`topreward eval --ray`: every episode record (curve, control, live ticks) and the report."""
    from topreward_ros.commands.cli import main

    bags = tmp_path / "bags"
    write_episodes_bag(bags / "a", "mcap", SCENES[:2], duration_s=1.5)

    labels = tmp_path / "labels.csv"
    labels.write_text("episode,success\nds/0,1\nds/1,0\nds/2,1\na/0,1\na/1,0\n")
    common = command_line(
        "{} {} -l {} --model {} --local-files-only --view-size 64 --torch-threads 1 --rate 2 -q",
        dataset,
        bags / "a",
        labels,
        tiny_model_dir,
    )
    assert main(["eval", *common, "-o", str(tmp_path / "local")]) == EXIT_OK
    assert (
        main([*command_line("eval"), *common, *command_line("-o {} --ray --replicas 2", tmp_path / "ray")]) == EXIT_OK
    )
    compared = assert_same_outputs(tmp_path / "local", tmp_path / "ray", skip=("report.md",))
    records = [rel for rel in compared if rel.startswith("episodes/")]
    assert len(records) == 5  # every labelled episode, both inputs
    for rel in (
        "episodes.csv",
        "metrics.json",
        "calibrated.yaml",
        "datasets/ds/manifest.json",
        "bags/a/episode_0001/curve.json",
    ):
        assert rel in compared
