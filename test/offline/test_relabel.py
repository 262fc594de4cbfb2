"""`topreward relabel` equals a fresh re-score at the new threshold, file for file.

A bag of three episodes is scored by `topreward bag` at one threshold and
relabelled to another; the same bag scored afresh at that other threshold
must leave the same outputs (curve.json, frames tables, progress.mcap with
its EpisodeSuccess and EpisodeResult messages, the combined tables, the
manifest's entries and settings). The new threshold is chosen between the
episodes' observed success scores, so verdicts change. A relabel broken off
after its first episode goes on where it stopped when run again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.command_line import command_line
from support.output_compare import assert_close, assert_same_outputs

from topreward_ros.commands.cli import main as topreward_main
from topreward_ros.demo.scene import DEMO_SCENES, SceneSpec
from topreward_ros.demo.synthetic_bag import write_episodes_bag
from topreward_ros.offline.relabel import RelabelError, relabel
from topreward_ros.scoring.thresholds import SuccessThresholds

SCENES = (*DEMO_SCENES, SceneSpec("push the green block to the left", (40, 160, 60), 0.6, 0.3))[:3]


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("relabel")
    write_episodes_bag(root / "bag", "mcap", SCENES, duration_s=3.0)
    return root / "bag"


def score(bag: Path, out: Path, model: Path, *extra: str) -> None:
    argv = [
        *command_line(
            "bag {} -o {} --model {} --device cpu --dtype float32 "
            "--local-files-only --torch-threads 1 --view-size 64 --rate 2.0 "
            "--no-plot -q",
            bag,
            out,
            model,
        ),
        *extra,
    ]
    assert topreward_main(argv) == 0


def curves(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("episode_*/curve.json"))]


def manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest.json").read_text())


def threshold_between_episodes(scored: list[dict[str, Any]]) -> float:
    """A threshold two consecutive success scores of one episode exceed and no other episode's do."""
    best = []
    for curve in scored:
        scores = [t["success_score"] for t in curve["live"]][curve["settings"]["success_window"] - 1 :]
        best.append(max(min(a, b) for a, b in zip(scores, scores[1:])))
    top, second = sorted(best)[-1], sorted(best)[-2]
    assert top > second, f"episodes' best success scores do not differ: {best}"
    return (top + second) / 2


def assert_equal_outputs(relabelled: Path, fresh: Path) -> None:
    assert_same_outputs(relabelled, fresh, skip=("manifest.json",))
    a, b = manifest(relabelled), manifest(fresh)
    assert a.pop("relabel")["in_progress"] is False
    a["input"].pop("path"), b["input"].pop("path")
    assert_close(a, b, "manifest.json")


def test_relabel_equals_a_fresh_rescore_and_resumes(bag: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    first = tmp_path / "first"
    score(bag, first, tiny_model_dir, "--success-threshold", "-8.0")
    before = curves(first)
    assert not any(c["result"]["success"] for c in before)  # the tiny model never reaches -8
    new = threshold_between_episodes(before)

    # Relabel to another threshold first, then to the new one, broken off after one episode.
    assert topreward_main(["relabel", str(first), "--success-threshold", "-1.0", "-q"]) == 0
    assert manifest(first)["settings"]["success_threshold"] == -1.0

    def stop_after_first(index: int, entry: dict[str, Any]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        relabel(first, SuccessThresholds(new), on_episode=stop_after_first)
    state = manifest(first)["relabel"]
    assert state["in_progress"] and state["done"] == [0] and state["to"]["success_threshold"] == new
    report = relabel(first, SuccessThresholds(new))
    assert (report.skipped, report.episodes) == (1, len(SCENES) - 1)

    fresh = tmp_path / "fresh"
    score(bag, fresh, tiny_model_dir, "--success-threshold", repr(new))
    verdicts = [c["result"]["success"] for c in curves(fresh)]
    assert True in verdicts and False in verdicts, verdicts
    assert manifest(first)["relabel"]["from"]["success_threshold"] == -1.0
    assert_equal_outputs(first, fresh)


def test_bad_input_is_refused_and_changes_nothing(bag: Path, tmp_path: Path, capsys) -> None:
    assert topreward_main(["relabel", str(tmp_path)]) == 2
    assert "give the threshold" in capsys.readouterr().err
    assert topreward_main(["relabel", str(tmp_path), "--success-threshold", "-3"]) == 2
    assert "holds no manifest.json" in capsys.readouterr().err
    assert topreward_main(["relabel", str(tmp_path), "--success-threshold", "3"]) == 2
    assert "must be <= 0" in capsys.readouterr().err
    with pytest.raises(RelabelError, match="unreadable"):
        (tmp_path / "manifest.json").write_text("{")
        relabel(tmp_path, SuccessThresholds(-3.0))
    assert (tmp_path / "manifest.json").read_text() == "{"


def test_relabel_with_per_task_thresholds_equals_bag_with_the_same_file(
    bag: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from topreward_ros.files.params_file import params_file_text

    calibration = tmp_path / "calibrated.yaml"
    # The first instruction passes at its own threshold; the others fall back to the global one.
    calibration.write_text(
        params_file_text(
            {
                "success_threshold": -0.5,
                "task_instructions": [SCENES[0].instruction],
                "task_success_thresholds": [-200.0],
            }
        )
    )
    relabelled, fresh = tmp_path / "relabelled", tmp_path / "fresh"
    score(bag, relabelled, tiny_model_dir, "--success-threshold", "-8.0")
    assert topreward_main(["relabel", str(relabelled), "--params-file", str(calibration), "-q"]) == 0
    score(bag, fresh, tiny_model_dir, "--params-file", str(calibration))
    results = {c["instruction"]: c["result"] for c in curves(fresh)}
    assert results[SCENES[0].instruction]["threshold"] == -200.0 and results[SCENES[0].instruction]["success"]
    assert all(r["threshold"] == -0.5 and not r["success"] for i, r in results.items() if i != SCENES[0].instruction)
    assert manifest(relabelled)["relabel"]["to"]["task_thresholds"] == {SCENES[0].instruction: -200.0}
    assert_equal_outputs(relabelled, fresh)
