"""`topreward eval` on a LeRobot v3 dataset: labels by episode index, records equal to `topreward lerobot`.

The dataset is written the way LeRobot lays one out (``lerobot.synthetic``):
three short episodes, two cameras, the front one chosen with ``--camera``.
The evaluation is run once (CSV labels naming the dataset's episode
indices); the other checks re-run it on a copy of the finished output with
other labels, which rescores nothing. The values are compared with
independent computations: ``topreward lerobot`` scoring the same dataset
into another folder (the offline curve and live ticks of each episode), the
static control recomputed from the video decoded here with PyAV, and the
node's success rule written out over the recorded ticks. Scores of the
random model are meaningless; no assertion compares them with fixed values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import yaml
from support.command_line import command_line
from support.eval_outputs import node_would_fire, read_csv, record, rerun_with_labels, run_cli

from topreward_ros.demo.scene import SceneSpec
from topreward_ros.demo.synthetic_lerobot import DatasetCamera, write_lerobot_dataset

pytestmark = pytest.mark.timeout(900)

VIEW = 64
FRONT, WRIST = "observation.images.front", "observation.images.wrist"
CAMERAS = (DatasetCamera(FRONT, 96, 72), DatasetCamera(WRIST, 64, 48, mirrored=True))
SCENES = (
    SceneSpec("put the red block in the bowl", (200, 40, 40), 0.25, 0.72, duration_s=2.0),
    SceneSpec("put the blue block in the bowl", (40, 70, 210), 0.70, 0.28, duration_s=2.0),
    SceneSpec("put the green block in the bowl", (40, 180, 60), 0.65, 0.25, duration_s=2.0),
)
# Labels by the dataset's episode index; tasks differ per episode, so a label
# joined to the wrong episode shows in the instruction and task columns.
LABELS = {0: (1, "red"), 1: (0, "blue"), 2: (1, "green")}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("eval_dataset")
    written = write_lerobot_dataset(root / "ds", SCENES, CAMERAS, fps=8, duration_s=2.0, episodes_per_file=2)
    labels = root / "labels.csv"
    labels.write_text("episode,success,task\n" + "".join(f"ds/{i},{y},{task}\n" for i, (y, task) in LABELS.items()))
    out = root / "out"
    model = command_line(
        "--model {} --local-files-only --device cpu --dtype float32 --view-size {} --rate 4 --camera {} -q",
        tiny_model_dir,
        VIEW,
        FRONT,
    )
    common = [str(written.root), "-l", str(labels), "-o", str(out), *model]
    result = run_cli("eval", *common)
    assert result[0] == 0, result
    # The independent computation: the same dataset scored by `topreward lerobot`.
    lerobot = root / "lerobot"
    code, _, stderr = run_cli("lerobot", str(written.root), "-o", str(lerobot), "--no-plot", *model)
    assert code == 0, stderr
    return {
        "root": root,
        "written": written,
        "out": out,
        "common": common,
        "stdout": result[1],
        "lerobot": lerobot,
        "model": tiny_model_dir,
    }


def test_rows_join_the_labels_to_the_dataset_episodes_by_episode_index(setup: dict[str, Any]) -> None:
    out, written = setup["out"], setup["written"]
    rows = read_csv(out / "episodes.csv")
    assert [r["episode"] for r in rows] == ["ds/0", "ds/1", "ds/2"]
    for row, episode in zip(rows, written.episodes):
        success, task = LABELS[episode.episode_index]
        assert (row["success"], row["task"], row["status"]) == (str(success), task, "scored")
        assert (row["kind"], row["input"]) == ("dataset", str(written.root))
        assert row["instruction"] == episode.task  # the dataset's task of that episode
        assert int(row["num_frames"]) == len(episode.index)
        rec = record(out, row["episode"])
        assert rec["dataset_episode"] == episode.episode_index
        assert rec["episode_dir"] == f"datasets/ds/episode_{episode.episode_index:04d}"
        assert f"scored   ds/{episode.episode_index}" in setup["stdout"]
    # Datasets have no ROS topics: calibrated.yaml names none, even with --camera given.
    params = yaml.safe_load((out / "calibrated.yaml").read_text())["/**"]["ros__parameters"]
    assert "camera_topics" not in params and params["view_size"] == VIEW


def test_records_equal_topreward_lerobot_on_the_same_dataset(setup: dict[str, Any]) -> None:
    out = setup["out"]
    for episode in setup["written"].episodes:
        index = episode.episode_index
        rec = record(out, f"ds/{index}")
        independent = json.loads((setup["lerobot"] / f"episode_{index:04d}" / "curve.json").read_text())
        offline = independent["offline"]
        for key in ("prefix_lengths", "stamps_ns"):
            assert rec["curve"][key] == offline[key], key
        for key in ("log_prob_true", "log_prob_false", "normalized"):
            np.testing.assert_allclose(rec["curve"][key], offline[key], rtol=0, atol=1e-5, err_msg=key)
        assert rec["sample_stamps_ns"] == independent["sample_stamps_ns"]
        assert rec["instruction"] == independent["instruction"] == episode.task
        assert [t["stamp_ns"] for t in rec["live"]] == [t["stamp_ns"] for t in independent["live"]]
        np.testing.assert_allclose(
            [t["log_prob_true"] for t in rec["live"]],
            [t["log_prob_true"] for t in independent["live"]],
            rtol=0,
            atol=1e-5,
        )
        # The eval's own copy of the offline outputs holds the same curve as its record.
        own = json.loads((out / rec["episode_dir"] / "curve.json").read_text())["offline"]
        assert own["log_prob_true"] == rec["curve"]["log_prob_true"]
        # The row's numbers come from that curve.
        row = next(r for r in read_csv(out / "episodes.csv") if r["episode"] == f"ds/{index}")
        assert float(row["raw_success_score"]) == pytest.approx(np.mean(offline["log_prob_true"][-3:]), abs=1e-5)


def test_live_check_replays_the_node_rule_over_the_dataset_ticks(setup: dict[str, Any]) -> None:
    out = setup["out"]
    threshold = json.loads((out / "metrics.json").read_text())["overall"]["threshold_raw"]["threshold"]
    for row in read_csv(out / "episodes.csv"):
        ticks = [t["log_prob_true"] for t in record(out, row["episode"])["live"]]
        assert len(ticks) >= 4  # 4 Hz ticks over a 2 s episode
        assert row["live_success"] == str(int(node_would_fire(ticks, min(0.0, threshold), 3, 2)))


def test_control_is_the_first_decoded_frame_repeated(setup: dict[str, Any]) -> None:
    """Episode 1 starts half-way through file-000.mp4: its first frame is picked by position there."""
    from topreward_ros.scoring import ScorerConfig, load_scorer, prepare_view

    written = setup["written"]
    episode = written.episodes[1]
    with av.open(str(written.root / f"videos/{FRONT}/chunk-000/file-000.mp4")) as container:
        pictures = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    first = pictures[round(episode.from_timestamp * written.fps)]
    rec = record(setup["out"], "ds/1")
    stamps = rec["sample_stamps_ns"]
    assert stamps[0] == 0 and rec["control"]["stamps_ns"] == rec["curve"]["stamps_ns"]
    scorer = load_scorer(
        ScorerConfig(model=str(setup["model"]), device="cpu", dtype="float32", local_files_only=True, view_size=VIEW)
    )
    expected = scorer.curve([prepare_view(first, VIEW)] * len(stamps), stamps, episode.task, use_cache=False)
    np.testing.assert_allclose(rec["control"]["log_prob_true"], expected.log_prob_true, atol=1e-3)
    np.testing.assert_allclose(rec["control"]["log_prob_false"], expected.log_prob_false, atol=1e-3)
    # ... which is not the episode itself.
    assert np.max(np.abs(np.subtract(rec["control"]["log_prob_true"], rec["curve"]["log_prob_true"]))) > 1e-3


def test_yaml_labels_address_the_same_episodes(setup: dict[str, Any]) -> None:
    """The same labels as YAML, indices zero-padded and in another order: the same rows, nothing rescored."""
    text = "".join(f"ds/{i:04d}: {{success: {y}, task: {task}}}\n" for i, (y, task) in reversed(LABELS.items()))
    code, stdout, stderr, out = rerun_with_labels(setup, "yaml_labels", text, suffix=".yaml")
    assert code == 0, stderr
    assert "scored   " not in stdout and "done     ds/2 (earlier run)" in stdout
    assert read_csv(out / "episodes.csv") == read_csv(setup["out"] / "episodes.csv")
    flipped = "".join(f"ds/{i}: {{success: {1 - y}, task: {task}}}\n" for i, (y, task) in LABELS.items())
    code, _, stderr, out = rerun_with_labels(setup, "yaml_flipped", flipped, suffix=".yaml")
    assert code == 0, stderr
    assert [int(r["success"]) for r in read_csv(out / "episodes.csv")] == [1 - y for y, _ in LABELS.values()]


def test_a_label_for_a_missing_dataset_episode_is_a_problem(setup: dict[str, Any]) -> None:
    text = "episode,success,task\n" + "".join(f"ds/{i},{y},{t}\n" for i, (y, t) in LABELS.items()) + "ds/7,1,red\n"
    code, stdout, stderr, out = rerun_with_labels(setup, "missing", text, suffix=".csv")
    assert code == 1
    assert "scored   " not in stdout
    labels_file = setup["root"] / "missing.csv"
    assert (
        f"PROBLEM: {labels_file}:5: the labels name episode 'ds/7' but dataset ds has no episode_index 7; "
        f"its 3 episode(s): 0-2"
    ) in stderr
    rows = {r["episode"]: r for r in read_csv(out / "episodes.csv")}
    assert list(rows) == ["ds/0", "ds/1", "ds/2", "ds/7"]
    assert (rows["ds/7"]["status"], rows["ds/7"]["status_detail"]) == ("missing", "dataset ds has no episode_index 7")
    assert rows["ds/7"]["voc"] == rows["ds/7"]["predicted_success"] == ""
    metrics = json.loads((out / "metrics.json").read_text())["overall"]
    assert (metrics["episodes"], metrics["successes"]) == (3, 2)
    assert "ds/7" in (out / "report.md").read_text()
