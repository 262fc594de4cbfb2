"""What `topreward eval` writes for a person and for a rig: report.md, plots, the CSV, calibrated.yaml.

The demo evaluation (support.demo_eval: the demo bag and a frame folder,
labels, a tiny random model) is run once per test run, interrupted and
then completed. The tests here read its report and plots, give its
calibrated.yaml to `topreward bag`, run it with a rig's ``--params-file``,
and check the parameters it writes (``calibrated_params``) on hand-made records.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from support.command_line import command_line
from support.demo_eval import (
    BAG_LABELS,
    EPISODES_CSV_HEADER,
    VIEW,
    demo_evaluation,  # noqa: F401 (setup: the module's demo evaluation)
    video_records,
)
from support.eval_outputs import record, run_cli

from topreward_ros.demo.run import CAMERA_TOPIC

pytestmark = pytest.mark.timeout(900)


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
    assert header == EPISODES_CSV_HEADER
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


def test_calibrated_params_hold_the_four_keys_with_node_default_scoring(tmp_path: Path) -> None:
    from topreward_ros.evaluation.labels import Label
    from topreward_ros.evaluation.report import calibrated_params, evaluate

    records = video_records(4)
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
