"""`topreward eval` end to end: the demo bag and a frame folder, labels, a tiny random model.

The run is done twice in the module fixture: first with ``--max-episodes 3``
(an interrupted evaluation), then completed by a re-run. Every metric is
recomputed here with scipy / scikit-learn from the files the command wrote;
the static-video control is recomputed from the bag's own frames through the
scoring core. Scores of the random model are meaningless: the tests compare
the command's numbers with independent computations, never with fixed values.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image
from scipy.special import logsumexp
from scipy.stats import spearmanr
from sklearn.metrics import balanced_accuracy_score, roc_auc_score, roc_curve
from support.command_line import command_line
from support.eval_outputs import node_would_fire, read_csv, record, run_cli

from topreward_ros.demo.run import CAMERA_TOPIC, write_demo_bag
from topreward_ros.demo.scene import SceneSpec, render_episode
from topreward_ros.evaluation.runner import record_file_name

pytestmark = pytest.mark.timeout(900)

VIEW = 64
SCENES = (
    SceneSpec("put the red block in the bowl", (200, 40, 40), 0.25, 0.72, duration_s=3.0),
    SceneSpec("put the blue block in the bowl", (40, 70, 210), 0.70, 0.28, duration_s=4.0),
    SceneSpec("put the red block in the bowl", (200, 40, 40), 0.30, 0.75, duration_s=5.0),
    SceneSpec("put the green block in the bowl", (40, 180, 60), 0.65, 0.25, duration_s=3.5),
    SceneSpec("put the blue block in the bowl", (40, 70, 210), 0.20, 0.70, duration_s=4.5),
    SceneSpec("put the green block in the bowl", (40, 180, 60), 0.75, 0.30, duration_s=3.0),
)
BAG_LABELS = (1, 0, 1, 0, 1, 1)
TASKS = ("red", "blue", "red", "green", "blue", "green")
FRAMES_FPS = 4.0
FRAMES_INSTRUCTION = "put the green block in the bowl"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("eval")
    bag = write_demo_bag(root / "demo_bag", scenes=SCENES, rate_hz=6.0, size=(96, 72))
    frames = root / "clip_green"
    frames.mkdir()
    for i, rgb in enumerate(
        render_episode(SceneSpec(FRAMES_INSTRUCTION, (40, 180, 60), 0.7, 0.3, 2.5), FRAMES_FPS, 96, 72)
    ):
        Image.fromarray(rgb).save(frames / f"{i:03d}.png")
    labels = root / "labels.csv"
    rows = [f"demo_bag/{i},{y},{t}," for i, (y, t) in enumerate(zip(BAG_LABELS, TASKS))]
    rows.append(f"clip_green,0,green,{FRAMES_INSTRUCTION}")
    labels.write_text("episode,success,task,instruction\n" + "\n".join(rows) + "\n")
    out = root / "out"
    common = command_line(
        "{} {} -l {} -o {} --model {} --local-files-only --view-size {} "
        "--source-fps {} --success-consecutive 2 --rate 4 -q",
        bag,
        frames,
        labels,
        out,
        tiny_model_dir,
        VIEW,
        FRAMES_FPS,
    )
    first = run_cli("eval", *common, "--max-episodes", "3")
    assert first[0] == 0, first
    snapshot = {
        "rows": read_csv(out / "episodes.csv"),
        "records": {
            n: (
                (out / "episodes" / record_file_name(n)).stat().st_ino,
                (out / "episodes" / record_file_name(n)).read_bytes(),
            )
            for n in ("demo_bag/0", "demo_bag/1", "demo_bag/2")
        },
        "stdout": first[1],
    }
    second = run_cli("eval", *common)
    assert second[0] == 0, second
    return {
        "root": root,
        "bag": bag,
        "frames": frames,
        "labels": labels,
        "out": out,
        "common": common,
        "first": snapshot,
        "second": second,
        "model": tiny_model_dir,
    }


def test_interrupted_run_is_resumed_and_finished_episodes_are_kept(setup: dict[str, Any]) -> None:
    out, first = setup["out"], setup["first"]
    # Every labelled episode has a row; those not reached yet are pending, without scores.
    assert [r["episode"] for r in first["rows"]] == [f"demo_bag/{i}" for i in range(6)] + ["clip_green"]
    assert [r["status"] for r in first["rows"]] == ["scored"] * 3 + ["pending"] * 4
    for row in first["rows"][3:]:
        assert "--max-episodes" in row["status_detail"]
        assert row["voc"] == row["raw_success_score"] == row["num_samples"] == row["predicted_success"] == ""
    first["rows"] = first["rows"][:3]
    assert "scored   demo_bag/2" in first["stdout"] and "clip_green" not in first["stdout"]
    rows = read_csv(out / "episodes.csv")
    assert [r["episode"] for r in rows] == [f"demo_bag/{i}" for i in range(6)] + ["clip_green"]
    # The first episodes' values are kept exactly; their records were not rewritten.
    for before in first["rows"]:
        after = next(r for r in rows if r["episode"] == before["episode"])
        for key in (
            "voc",
            "control_voc",
            "raw_success_score",
            "two_way_success_score",
            "control_raw_success_score",
            "num_samples",
        ):
            assert after[key] == before[key], key
    for name, (inode, data) in first["records"].items():
        path = out / "episodes" / record_file_name(name)
        assert path.stat().st_ino == inode and path.read_bytes() == data
        assert f"done     {name} (earlier run)" in setup["second"][1]
    for name in ("demo_bag/3", "demo_bag/4", "demo_bag/5", "clip_green"):
        assert f"scored   {name}" in setup["second"][1]


def test_metrics_match_scipy_and_sklearn_on_the_written_csv(setup: dict[str, Any]) -> None:
    out = setup["out"]
    rows = read_csv(out / "episodes.csv")
    assert {(r["status"], r["status_detail"]) for r in rows} == {("scored", "")}
    metrics = json.loads((out / "metrics.json").read_text())
    y = np.array([int(r["success"]) for r in rows])
    assert y.tolist() == [*BAG_LABELS, 0]
    raw = np.array([float(r["raw_success_score"]) for r in rows])
    two = np.array([float(r["two_way_success_score"]) for r in rows])
    vocs = np.array([float(r["voc"]) for r in rows])
    control = np.array([float(r["control_voc"]) for r in rows])

    def check(m: dict[str, Any], mask: np.ndarray) -> None:
        yy, rr, tt = y[mask], raw[mask], two[mask]
        assert (m["episodes"], m["successes"]) == (mask.sum(), yy.sum())
        assert m["voc_mean"] == pytest.approx(vocs[mask].mean(), abs=1e-12)
        assert m["control_voc_mean"] == pytest.approx(control[mask].mean(), abs=1e-12)
        if mask.sum() > 1:
            assert m["voc_std"] == pytest.approx(np.std(vocs[mask], ddof=1), abs=1e-12)
            assert m["control_voc_std"] == pytest.approx(np.std(control[mask], ddof=1), abs=1e-12)
        if yy.min() == yy.max():  # one class: say so, no numbers
            assert m["auc_raw"] is m["auc_two_way"] is m["threshold_raw"] is m["threshold_two_way"] is None
            assert "need both successes and failures" in m["undefined_reason"]
            return
        assert m["auc_raw"] == pytest.approx(roc_auc_score(yy, rr), abs=1e-12)
        assert m["auc_two_way"] == pytest.approx(roc_auc_score(yy, tt), abs=1e-12)
        for key, scores in (("threshold_raw", rr), ("threshold_two_way", tt)):
            choice = m[key]
            fpr, tpr, _ = roc_curve(yy, scores)
            predicted = scores > choice["threshold"]
            assert balanced_accuracy_score(yy, predicted) == pytest.approx(0.5 + np.max(tpr - fpr) / 2, abs=1e-12)
            assert choice["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(yy, predicted), abs=1e-12)
            assert choice["tpr"] == pytest.approx(predicted[yy == 1].mean(), abs=1e-12)
            assert choice["fpr"] == pytest.approx(predicted[yy == 0].mean(), abs=1e-12)

    check(metrics["overall"], np.ones(len(rows), bool))
    tasks = np.array([r["task"] for r in rows])
    assert sorted(metrics["per_task"]) == ["blue", "green", "red"]
    for task, m in metrics["per_task"].items():
        check(m, tasks == task)
    assert metrics["per_task"]["red"]["auc_raw"] is None and metrics["per_task"]["blue"]["auc_raw"] is not None
    # calibrated.yaml carries the raw threshold; the CSV's prediction applies it.
    params = yaml.safe_load((out / "calibrated.yaml").read_text())
    assert list(params) == ["/**"]
    # Every setting the threshold depends on is written, defaults too: the
    # file then pins them over a rig's parameters file (launch calibration_file:=).
    assert params["/**"]["ros__parameters"] == {
        "success_threshold": metrics["overall"]["threshold_raw"]["threshold"],
        "success_window": 3,
        "success_consecutive": 2,
        "model": str(setup["model"]),
        "camera_topics": [CAMERA_TOPIC],
        "instruction_topic": "/instruction",
        "rate_hz": 4.0,
        "sample_fps": 2.0,
        "max_frames": 256,
        "view_size": VIEW,
        "sync_tolerance_s": 0.05,
    }
    predicted = [int(r["predicted_success"]) for r in rows]
    assert predicted == (raw > metrics["overall"]["threshold_raw"]["threshold"]).astype(int).tolist()


def test_live_check_replays_the_node_rule_over_the_bag_ticks(setup: dict[str, Any]) -> None:
    out = setup["out"]
    threshold = json.loads((out / "metrics.json").read_text())["overall"]["threshold_raw"]["threshold"]
    rows = read_csv(out / "episodes.csv")
    fired = {}
    for row in rows:
        rec = record(out, row["episode"])
        if rec["kind"] != "bag":
            assert row["live_success"] == ""
            continue
        ticks = [t["log_prob_true"] for t in rec["live"]]
        assert len(ticks) >= 5  # 4 Hz ticks on 2 fps samples: one per new sample
        fired[row["episode"]] = node_would_fire(ticks, threshold, 3, 2)
        assert row["live_success"] == str(int(fired[row["episode"]])), row["episode"]
    live = json.loads((out / "metrics.json").read_text())["live"]
    labels = dict(zip([f"demo_bag/{i}" for i in range(6)], BAG_LABELS))
    assert live["declared_successes"] == sum(v for k, v in fired.items() if labels[k])
    assert live["declared_failures"] == sum(v for k, v in fired.items() if not labels[k])
    assert (live["successes"], live["failures"]) == (sum(BAG_LABELS), 6 - sum(BAG_LABELS))


def test_vocs_and_success_scores_recomputed_from_the_curves(setup: dict[str, Any]) -> None:
    out = setup["out"]
    for row in read_csv(out / "episodes.csv"):
        rec = record(out, row["episode"])
        if rec["kind"] == "bag":
            # topreward bag's own curve.json of the same episode: the same offline curve.
            index = int(row["episode"].split("/")[1])
            bag_curve = json.loads((out / "bags" / "demo_bag" / f"episode_{index:04d}" / "curve.json").read_text())[
                "offline"
            ]
            assert bag_curve["log_prob_true"] == rec["curve"]["log_prob_true"]
            assert bag_curve["log_prob_false"] == rec["curve"]["log_prob_false"]
        t = np.array(rec["curve"]["log_prob_true"])
        f = np.array(rec["curve"]["log_prob_false"])
        assert len(t) >= 5
        assert float(row["voc"]) == pytest.approx(spearmanr(t, np.arange(len(t))).statistic, abs=1e-12)
        assert float(row["raw_success_score"]) == pytest.approx(t[-3:].mean(), abs=1e-12)
        two = np.array([a - logsumexp([a, b]) for a, b in zip(t, f)])
        assert float(row["two_way_success_score"]) == pytest.approx(two[-3:].mean(), abs=1e-9)
        ct = np.array(rec["control"]["log_prob_true"])
        cf = np.array(rec["control"]["log_prob_false"])
        assert float(row["control_voc"]) == pytest.approx(
            spearmanr(ct, np.arange(len(ct))).statistic if np.ptp(ct) > 0 else 0.0, abs=1e-12
        )
        assert float(row["control_raw_success_score"]) == pytest.approx(ct[-3:].mean(), abs=1e-12)
        ctwo = np.array([a - logsumexp([a, b]) for a, b in zip(ct, cf)])
        assert float(row["control_two_way_success_score"]) == pytest.approx(ctwo[-3:].mean(), abs=1e-9)


def first_frame_of_bag_episode(bag: Path, index: int) -> tuple[int, np.ndarray]:
    """Stamp and pixels of the first camera frame after the episode's instruction (read here, with PIL)."""
    from topreward_ros.bag.reader import BagReader

    with BagReader(bag) as reader:
        seen = -1
        for message in reader.messages([CAMERA_TOPIC, "/instruction"]):
            if message.topic == "/instruction":
                seen += 1
                continue
            if seen == index:
                msg = reader.deserialize(message)
                stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                return stamp, np.asarray(Image.open(io.BytesIO(bytes(msg.data))).convert("RGB"))
    raise AssertionError(f"episode {index} not in the bag")


@pytest.fixture(scope="module")
def scorer(tiny_model_dir: Path) -> Any:
    from topreward_ros.scoring import ScorerConfig, load_scorer

    return load_scorer(ScorerConfig(model=str(tiny_model_dir), local_files_only=True, view_size=VIEW, torch_threads=1))


@pytest.mark.parametrize("index", [1, 4])
def test_control_is_the_first_sampled_frame_repeated_at_the_same_stamps(
    setup: dict[str, Any], scorer: Any, index: int
) -> None:
    from topreward_ros.scoring import prepare_view

    rec = record(setup["out"], f"demo_bag/{index}")
    stamps = rec["sample_stamps_ns"]
    first_stamp, rgb = first_frame_of_bag_episode(setup["bag"], index)
    assert stamps[0] == first_stamp
    assert rec["control"]["stamps_ns"] == rec["curve"]["stamps_ns"]
    assert rec["control"]["prefix_lengths"] == rec["curve"]["prefix_lengths"]
    # Independent forwards (no KV-cache reuse) of the repeated first frame.
    expected = scorer.curve([prepare_view(rgb, VIEW)] * len(stamps), stamps, rec["instruction"], use_cache=False)
    np.testing.assert_allclose(rec["control"]["log_prob_true"], expected.log_prob_true, atol=1e-3)
    np.testing.assert_allclose(rec["control"]["log_prob_false"], expected.log_prob_false, atol=1e-3)
    # ... which is not the episode itself.
    assert np.max(np.abs(np.subtract(rec["control"]["log_prob_true"], rec["curve"]["log_prob_true"]))) > 1e-3


def test_frame_folder_control_repeats_its_first_image(setup: dict[str, Any], scorer: Any) -> None:
    from topreward_ros.scoring import prepare_view

    rec = record(setup["out"], "clip_green")
    assert rec["kind"] == "frames" and rec["instruction"] == FRAMES_INSTRUCTION
    stamps = rec["sample_stamps_ns"]
    assert stamps[0] == 0 and stamps[1] == 500_000_000  # 2 fps out of 4 fps
    rgb = np.asarray(Image.open(setup["frames"] / "000.png").convert("RGB"))
    expected = scorer.curve([prepare_view(rgb, VIEW)] * len(stamps), stamps, FRAMES_INSTRUCTION, use_cache=False)
    np.testing.assert_allclose(rec["control"]["log_prob_true"], expected.log_prob_true, atol=1e-3)


def test_outputs_a_person_reads(setup: dict[str, Any]) -> None:
    out = setup["out"]
    report = (out / "report.md").read_text()
    assert "RANDOM WEIGHTS" in report
    for text in (
        "| all | 7 | 4 | 3 |",
        "| task: blue | 2 |",
        "Static-video control",
        "calibrated.yaml",
        "params_file:=RIG.yaml calibration_file:=calibrated.yaml",
        "![roc.png](roc.png)",
        "| demo_bag/5 | green | success |",
    ):
        assert text in report, text
    assert "Problems" not in report
    for png in ("roc.png", "voc_vs_control.png", "score_distributions.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
    header = (out / "episodes.csv").read_text().splitlines()[0]
    assert header == (
        "episode,input,kind,task,instruction,success,num_frames,num_samples,voc,control_voc,"
        "raw_success_score,two_way_success_score,control_raw_success_score,"
        "control_two_way_success_score,predicted_success,live_success,status,status_detail"
    )
    assert "RANDOMLY INITIALISED" in setup["second"][1]


def test_topreward_bag_takes_calibrated_yaml_as_its_params_file(setup: dict[str, Any]) -> None:
    out, root = setup["out"], setup["root"]
    params = yaml.safe_load((out / "calibrated.yaml").read_text())["/**"]["ros__parameters"]
    base = command_line(
        "{} --params-file {} --view-size {} --local-files-only --max-episodes 1 --no-plot -q",
        setup["bag"],
        out / "calibrated.yaml",
        VIEW,
    )
    code, stdout, stderr = run_cli("bag", *base, "-o", str(root / "bag_from_file"))
    assert code == 0, stderr
    settings = json.loads((root / "bag_from_file" / "manifest.json").read_text())["settings"]
    assert settings["model"] == params["model"]  # no --model given: the file's
    assert (settings["success_threshold"], settings["success_window"], settings["success_consecutive"]) == (
        params["success_threshold"],
        3,
        2,
    )
    curve = json.loads((root / "bag_from_file" / "episode_0000" / "curve.json").read_text())
    assert curve["success_threshold"] == params["success_threshold"]
    # An option on the command line wins over the file.
    code, _, stderr = run_cli("bag", *base, "--success-window", "2", "-o", str(root / "bag_override"))
    assert code == 0, stderr
    assert (
        f"topreward bag: note: --success-window 2 overrides success_window: 3 of {out / 'calibrated.yaml'}"
    ) in stderr, stderr
    settings = json.loads((root / "bag_override" / "manifest.json").read_text())["settings"]
    assert (settings["success_window"], settings["success_threshold"]) == (2, params["success_threshold"])
    bad = root / "bad.yaml"
    bad.write_text("/**:\n  ros__parameters:\n    success_window: three\n")
    code, _, stderr = run_cli("bag", *base, "--params-file", str(bad), "-o", str(root / "bag_bad"))
    assert code == 2 and "success_window must be a int, got 'three'" in stderr


def rerun_with_labels(setup: dict[str, Any], name: str, text: str, *extra: str) -> tuple[int, str, str, Path]:
    """The finished evaluation, copied, re-run with other labels (nothing is rescored)."""
    out = setup["root"] / name
    shutil.copytree(setup["out"], out)
    labels = setup["root"] / f"{name}.csv"
    labels.write_text(text)
    argv = [a for a in setup["common"]]
    argv[argv.index("-l") + 1] = str(labels)
    argv[argv.index("-o") + 1] = str(out)
    return (*run_cli("eval", *argv, *extra), out)


ALL_LABELS = "".join(f"demo_bag/{i},1,,\n" for i in range(6)) + f"clip_green,1,green,{FRAMES_INSTRUCTION}\n"


def test_one_class_says_auc_is_undefined_and_writes_no_threshold(setup: dict[str, Any]) -> None:
    code, stdout, stderr, out = rerun_with_labels(setup, "one_class", "episode,success,task,instruction\n" + ALL_LABELS)
    assert code == 1
    assert "scored   " not in stdout  # labels changed, nothing rescored
    assert "need both successes and failures" in stderr and "no calibrated.yaml written" in stderr
    assert not (out / "calibrated.yaml").exists()
    metrics = json.loads((out / "metrics.json").read_text())["overall"]
    assert metrics["auc_raw"] is None and metrics["threshold_raw"] is None
    assert "all 7 labelled episodes are successes" in (out / "report.md").read_text()
    assert not (out / "roc.png").exists()  # the ROC of the earlier labels is gone
    assert "![roc.png]" not in (out / "report.md").read_text()


def test_label_for_a_missing_bag_episode_and_unlabelled_episode(setup: dict[str, Any]) -> None:
    text = (
        "episode,success,task,instruction\n"
        + ALL_LABELS.replace("demo_bag/0,1", "demo_bag/0,0").replace("demo_bag/5,1,,\n", "")
        + "demo_bag/9,1,,\n"
    )
    code, _, stderr, out = rerun_with_labels(setup, "mismatch", text)
    assert code == 1
    assert "the labels name episode 'demo_bag/9' but bag demo_bag has 6 episode(s)" in stderr
    assert "demo_bag/5 was scored but has no label" in stderr
    rows = read_csv(out / "episodes.csv")
    assert [r["episode"] for r in rows] == [f"demo_bag/{i}" for i in range(5)] + ["demo_bag/9", "clip_green"]
    missing = rows[5]
    assert (missing["status"], missing["status_detail"]) == ("missing", "bag demo_bag has 6 episode(s)")
    assert missing["success"] == "1" and missing["voc"] == missing["predicted_success"] == ""
    assert json.loads((out / "metrics.json").read_text())["overall"]["episodes"] == 6
    report = (out / "report.md").read_text()
    assert "demo_bag/9" in report and "demo_bag/5: scored but not in the labels file" in report
    assert "6 labelled episodes (5 successes, 1 failures); 1 more labelled but not scored" in report


def test_failed_refused_and_missing_episodes_have_rows_without_scores(setup: dict[str, Any]) -> None:
    """A frame folder without images fails, a bag whose instruction holds a control token is refused."""
    root = setup["root"]
    empty = root / "clip_empty"
    empty.mkdir()
    refused_bag = write_demo_bag(
        root / "refused_bag",
        scenes=(SceneSpec("put the block <|im_end|> in the bowl", duration_s=1.0),),
        rate_hz=4.0,
        size=(96, 72),
    )
    text = (
        "episode,success,task,instruction\n"
        + ALL_LABELS.replace("demo_bag/0,1", "demo_bag/0,0")
        + "demo_bag/7,0,,\nclip_empty,1,,stack the cups\nrefused_bag/0,0,,\n"
    )
    out = root / "unscored"
    shutil.copytree(setup["out"], out)
    labels = root / "unscored.csv"
    labels.write_text(text)
    argv = [str(empty), str(refused_bag), *setup["common"]]
    argv[argv.index("-l") + 1] = str(labels)
    argv[argv.index("-o") + 1] = str(out)
    code, stdout, stderr = run_cli("eval", *argv)
    assert code == 1
    assert "scored   " not in stdout  # nothing new to score
    rows = {r["episode"]: r for r in read_csv(out / "episodes.csv")}
    assert list(rows) == [
        "clip_empty",
        "refused_bag/0",
        *(f"demo_bag/{i}" for i in (0, 1, 2, 3, 4, 5, 7)),
        "clip_green",
    ]  # input order, then episode order
    assert {n: r["status"] for n, r in rows.items() if r["status"] != "scored"} == {
        "demo_bag/7": "missing",
        "clip_empty": "failed",
        "refused_bag/0": "refused",
    }
    assert "holds no images" in rows["clip_empty"]["status_detail"]
    assert "instruction refused" in rows["refused_bag/0"]["status_detail"]
    assert rows["clip_empty"]["instruction"] == "stack the cups"
    for name in ("demo_bag/7", "clip_empty", "refused_bag/0"):
        row = rows[name]
        for key in (
            "num_frames",
            "num_samples",
            "voc",
            "control_voc",
            "raw_success_score",
            "two_way_success_score",
            "control_raw_success_score",
            "control_two_way_success_score",
            "predicted_success",
            "live_success",
        ):
            assert row[key] == "", (name, key)
    # The metrics are those of the 7 scored episodes alone, exactly as before the extra labels.
    metrics = json.loads((out / "metrics.json").read_text())["overall"]
    assert (metrics["episodes"], metrics["successes"], metrics["failures"]) == (7, 6, 1)
    scored = [r for r in rows.values() if r["status"] == "scored"]
    y = [int(r["success"]) for r in scored]
    assert metrics["auc_raw"] == pytest.approx(roc_auc_score(y, [float(r["raw_success_score"]) for r in scored]))
    report = (out / "report.md").read_text()
    assert "3 more labelled but not scored" in report
    assert "| **refused**: instruction refused" in report and "<\\|im_end\\|>" in report


def test_errors_before_scoring(setup: dict[str, Any]) -> None:
    code, _, stderr, _ = rerun_with_labels(setup, "unknown", "episode,success\nnobag/0,1\n")
    assert code == 2 and "no input holds: 'nobag/0'" in stderr
    code, _, stderr, _ = rerun_with_labels(setup, "missing", "episode,success\ndemo_bag/0,1\n")
    assert code == 2 and "no label for 'clip_green'" in stderr
    code, _, stderr, _ = rerun_with_labels(setup, "broken", "episode,success\ndemo_bag/0,perhaps\n")
    assert code == 2 and "success must be 1/0" in stderr
    code, _, stderr, out = rerun_with_labels(
        setup, "settings", "episode,success,task,instruction\n" + ALL_LABELS, "--num-prefixes", "5"
    )
    assert code == 2 and "other settings (num_prefixes: 15 -> 5)" in stderr
    code, _, stderr = run_cli(
        "eval", str(setup["bag"]), "-l", str(setup["root"] / "none.csv"), "-o", str(setup["root"] / "x")
    )
    assert code == 2 and "cannot read the labels file" in stderr


def test_calibrated_params_hold_the_four_keys_with_node_default_scoring(tmp_path: Path) -> None:
    from topreward_ros.evaluation.labels import Label
    from topreward_ros.evaluation.report import calibrated_params, evaluate

    records = [
        {
            "episode": f"e{i}",
            "kind": "video",
            "voc": 0.5,
            "control_voc": 0.9,
            "raw_success_score": -10.0 + i,
            "two_way_success_score": -0.5,
        }
        for i in range(4)
    ]
    labels = {f"e{i}": Label(f"e{i}", i >= 2) for i in range(4)}
    evaluation = evaluate(records, labels)
    assert evaluation.overall.threshold_raw.threshold == pytest.approx(-8.5)
    defaults = {
        "camera_topics": None,
        "rate_hz": 1.0,
        "sample_fps": 2.0,
        "max_frames": 256,
        "view_size": 244,
        "sync_tolerance_s": 0.05,
    }
    # Videos only (no topics): the scoring settings, defaults included.
    assert calibrated_params(evaluation, "Qwen/Qwen3-VL-8B-Instruct", 3, 2, defaults) == {
        "success_threshold": -8.5,
        "success_window": 3,
        "success_consecutive": 2,
        "model": "Qwen/Qwen3-VL-8B-Instruct",
        "rate_hz": 1.0,
        "sample_fps": 2.0,
        "max_frames": 256,
        "view_size": 244,
        "sync_tolerance_s": 0.05,
    }
    cameras = ["/front/image_raw", "/wrist/image_raw/compressed"]
    got = calibrated_params(evaluation, str(tmp_path), 4, 1, {**defaults, "sample_fps": 1.0, "camera_topics": cameras})
    assert got == {
        "success_threshold": -8.5,
        "success_window": 4,
        "success_consecutive": 1,
        "model": str(tmp_path.resolve()),
        "camera_topics": cameras,
        "rate_hz": 1.0,
        "sample_fps": 1.0,
        "max_frames": 256,
        "view_size": 244,
        "sync_tolerance_s": 0.05,
    }
    with pytest.raises(ValueError, match="not a scoring parameter"):
        calibrated_params(evaluation, "m", 3, 2, {"dtype": "float32"})
    one_class = evaluate(records, {k: Label(k, True) for k in labels})
    assert calibrated_params(one_class, "m", 3, 2, defaults) is None


def test_labelled_episodes_without_scores_get_a_row_and_stay_out_of_the_metrics() -> None:
    from topreward_ros.evaluation.labels import Label
    from topreward_ros.evaluation.report import evaluate

    records = [
        {
            "episode": f"e{i}",
            "kind": "video",
            "voc": 0.5,
            "control_voc": 0.9,
            "raw_success_score": -10.0 + i,
            "two_way_success_score": -0.5,
        }
        for i in range(4)
    ]
    labels = {
        name: Label(name, success)
        for name, success in (("e0", False), ("gone", True), ("e1", False), ("e2", True), ("e3", True), ("bad", False))
    }
    order = ["e0", "e1", "gone", "e2", "e3", "bad"]
    evaluation = evaluate(records, labels, unscored={"bad": ("refused", "control token")}, order=order.index)
    rows = {r["episode"]: r for r in evaluation.rows}
    assert list(rows) == order
    assert (rows["gone"]["status"], rows["bad"]["status"], rows["bad"]["status_detail"]) == (
        "missing",
        "refused",
        "control token",
    )
    assert [r["episode"] for r in evaluation.scored] == ["e0", "e1", "e2", "e3"]
    for name in ("gone", "bad"):
        assert rows[name]["voc"] is None and rows[name]["predicted_success"] == ""
    assert (evaluation.overall.episodes, evaluation.overall.successes) == (4, 2)
    assert evaluation.overall.threshold_raw.threshold == pytest.approx(-8.5)
    assert [rows[n]["predicted_success"] for n in ("e0", "e1", "e2", "e3")] == [0, 0, 1, 1]
    # An episode that failed in this run is not measured by an older record of it.
    again = evaluate(records, labels, unscored={"e3": ("failed", "out of memory")})
    assert {r["episode"]: r["status"] for r in again.rows}["e3"] == "failed"
    assert again.overall.episodes == 3


def test_params_file_sets_the_options_and_calibrated_yaml_carries_them(setup: dict[str, Any]) -> None:
    """`topreward eval --params-file RIG.yaml`: the file's values apply, options given win, and
    calibrated.yaml carries what the threshold depends on (camera order, rate, sampling, view, model)."""
    root = setup["root"]
    rig = root / "rig.yaml"
    rig.write_text(
        yaml.safe_dump(
            {
                "/**": {
                    "ros__parameters": {
                        "model": str(setup["model"]),
                        "local_files_only": True,
                        "device": "cpu",
                        "camera_topics": [
                            CAMERA_TOPIC.lstrip("/")
                        ],  # relative, as a rig file at the root namespace has it
                        "rate_hz": 3.0,
                        "sample_fps": 1.5,
                        "max_frames": 100,
                        "view_size": 48,
                        "success_threshold": -1.0,
                        "qos_overrides": {CAMERA_TOPIC: {"subscription": {"reliability": "reliable"}}},
                    }
                }
            }
        )
    )
    labels = root / "bag_labels.csv"
    labels.write_text("episode,success\n" + "".join(f"demo_bag/{i},{y}\n" for i, y in enumerate(BAG_LABELS)))
    out = root / "out_params_file"
    code, stdout, stderr = run_cli(
        *command_line(
            "eval {} -l {} -o {} --params-file {} --view-size {} --max-episodes 3 -q",
            setup["bag"],
            labels,
            out,
            rig,
            VIEW,
        )
    )
    assert code == 0, (stdout, stderr)
    metrics = json.loads((out / "metrics.json").read_text())
    params = yaml.safe_load((out / "calibrated.yaml").read_text())["/**"]["ros__parameters"]
    assert params == {
        "success_threshold": metrics["overall"]["threshold_raw"]["threshold"],  # fitted, not the file's
        "success_window": 3,
        "success_consecutive": 2,
        "model": str(setup["model"]),
        "camera_topics": [CAMERA_TOPIC],
        "instruction_topic": "/instruction",
        "rate_hz": 3.0,
        "sample_fps": 1.5,
        "max_frames": 100,
        "view_size": VIEW,  # the option wins over the file's 48, and the run says so
        "sync_tolerance_s": 0.05,
    }
    assert f"topreward eval: note: --view-size {VIEW} overrides view_size: 48 of {rig}" in stderr, stderr
    # The episodes were scored with the file's sampling: 1.5 samples per second of capture time.
    stamps = record(out, "demo_bag/0")["sample_stamps_ns"]
    assert np.mean(np.diff(stamps)) == pytest.approx(1e9 / 1.5, abs=0.05e9)  # 2 fps would give 0.5 s
    bad = root / "bad_rig.yaml"
    bad.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"view_size": "large"}}}))
    code, _, stderr = run_cli(
        "eval", str(setup["bag"]), "-l", str(labels), "-o", str(root / "out_bad"), "--params-file", str(bad), "-q"
    )
    assert code == 2 and "view_size must be a int" in stderr, stderr


def test_ctrl_c_keeps_finished_episodes_and_a_rerun_continues(setup: dict[str, Any]) -> None:
    """A real SIGINT to the command mid-run: exit 130, finished episodes kept, the re-run skips them."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = setup["root"] / "interrupted"
    argv = [a for a in setup["common"]]
    argv[argv.index("-o") + 1] = str(out)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # A shell that started this run in the background may have set SIGINT to "ignore",
    # which children inherit: give the command the default, as a terminal would.
    proc = subprocess.Popen(
        [sys.executable, "-m", "topreward_ros", "eval", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 600
        # Two records: the first episode is then complete in the bag manifest too.
        while len(list((out / "episodes").glob("*.json"))) < 2 and proc.poll() is None:
            assert time.monotonic() < deadline, "no episode finished"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stdout + stderr
    assert "INTERRUPTED" in stderr
    assert not (out / "episodes.csv").exists()
    first = (out / "episodes" / record_file_name("demo_bag/0")).read_bytes()
    code, stdout, stderr = run_cli("eval", *argv)
    assert code == 0, stderr
    assert "done     demo_bag/0 (earlier run)" in stdout and "scored   clip_green" in stdout
    assert (out / "episodes" / record_file_name("demo_bag/0")).read_bytes() == first
    assert read_csv(out / "episodes.csv") == read_csv(setup["out"] / "episodes.csv")
