"""Re-running `topreward eval` on its output folder: resuming a stopped run, other labels, unscored episodes.

The demo evaluation (support.demo_eval: the demo bag and a frame folder,
labels, a tiny random model) is run once per test run: first with
``--max-episodes 3`` (an interrupted evaluation), then completed by a
re-run. The tests here check what the re-runs keep, what they rescore (only
what is new), and the rows and messages of labelled episodes that have no
scores (missing, failed, refused) or labels that cannot be used.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest
from sklearn.metrics import roc_auc_score
from support.demo_eval import (
    ALL_LABELS,
    EPISODES_CSV_HEADER,
    demo_evaluation,  # noqa: F401 (setup: the module's demo evaluation)
    video_records,
)
from support.eval_outputs import read_csv, rerun_with_labels, run_cli

from topreward_ros.demo.run import write_demo_bag
from topreward_ros.demo.scene import SceneSpec
from topreward_ros.evaluation.runner import record_file_name

pytestmark = pytest.mark.timeout(900)


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
    # Every column between the label and the status (num_frames ... live_success) is empty.
    columns = EPISODES_CSV_HEADER.split(",")
    for name in ("demo_bag/7", "clip_empty", "refused_bag/0"):
        row = rows[name]
        for key in columns[columns.index("success") + 1 : columns.index("status")]:
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


def test_labelled_episodes_without_scores_get_a_row_and_stay_out_of_the_metrics() -> None:
    from topreward_ros.evaluation.labels import Label
    from topreward_ros.evaluation.report import evaluate

    records = video_records(4)
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
