"""`topreward eval`'s numbers recomputed independently: metrics, the live check, VOCs and scores, the control.

The demo evaluation (support.demo_eval: the demo bag and a frame folder,
labels, a tiny random model) is run once per test run, interrupted and
then completed. Every metric is recomputed here with scipy / scikit-learn
from the files the command wrote; the static-video control is recomputed
from the bag's own frames through the scoring core. Scores of the random
model are meaningless: the tests compare the command's numbers with
independent computations, never with fixed values.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image
from scipy.special import logsumexp
from scipy.stats import spearmanr
from sklearn.metrics import balanced_accuracy_score, roc_auc_score, roc_curve
from support.demo_eval import (
    BAG_LABELS,
    FRAMES_INSTRUCTION,
    VIEW,
    demo_evaluation,  # noqa: F401 (setup: the module's demo evaluation)
)
from support.eval_outputs import node_would_fire, read_csv, record

from topreward_ros.demo.run import CAMERA_TOPIC

pytestmark = pytest.mark.timeout(900)


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
