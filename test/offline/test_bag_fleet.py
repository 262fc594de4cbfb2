"""`topreward bag` with many bags, in one local process: layout, summary, resume.

Real bags written with rosbags, the real tiny Qwen3-VL, the real command
parser. Each bag of a fleet run must carry exactly what a one-bag run of
that bag gives; the combined table must number episodes on across bags.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from support.command_line import command_line
from support.output_compare import assert_close

from topreward_ros.commands.bag import EXIT_OK, EXIT_PARTIAL, EXIT_UNUSABLE, register
from topreward_ros.demo.scene import DEMO_SCENES, SceneSpec
from topreward_ros.demo.synthetic_bag import write_episodes_bag

SCENES = (*DEMO_SCENES, SceneSpec("push the green block to the left", (40, 160, 60), 0.6, 0.3))


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fleet")
    write_episodes_bag(root / "bags" / "a", "mcap", SCENES[:2], duration_s=1.5)
    write_episodes_bag(root / "bags" / "b", "sqlite3", SCENES[2:], duration_s=1.5)
    return root


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="topreward")
    register(parser.add_subparsers())
    args = parser.parse_args(["bag", *argv])
    return args.func(args)


def common(model: Path) -> list[str]:
    return command_line("--model {} --local-files-only --view-size 64 --no-plot --torch-threads 1 --rate 2 -q", model)


def episode_files(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("episode_*/*") if p.is_file()}


def test_each_bag_scores_as_alone_and_the_combined_table_numbers_episodes_on(bags, tiny_model_dir, tmp_path):
    out = tmp_path / "fleet"
    assert run_cli(str(bags / "bags"), "-o", str(out), "--episode-offset", "5", *common(tiny_model_dir)) == EXIT_OK
    top = sorted(p.name for p in out.iterdir())
    assert top == ["a", "b", "frames.csv", "frames.parquet", "runs.json"]
    # Bag a alone, the single-bag layout of today, gives the same files and values.
    alone = tmp_path / "alone"
    assert (
        run_cli(str(bags / "bags" / "a"), "-o", str(alone), "--episode-offset", "5", *common(tiny_model_dir)) == EXIT_OK
    )
    assert (alone / "manifest.json").is_file() and not (alone / "runs.json").exists()
    assert json.loads((out / "a" / "manifest.json").read_text()) == json.loads((alone / "manifest.json").read_text())
    for index in (0, 1):
        ep = f"episode_{index:04d}"
        fleet_curve = json.loads((out / "a" / ep / "curve.json").read_text())
        alone_curve = json.loads((alone / ep / "curve.json").read_text())
        assert_close(fleet_curve, alone_curve, ep)
    assert pq.read_table(out / "a" / "frames.parquet").equals(pq.read_table(alone / "frames.parquet"))

    runs = json.loads((out / "runs.json").read_text())
    assert [(b["name"], b["status"], b["episodes"], b["episode_offset"]) for b in runs["bags"]] == [
        ("a", "done", 2, 5),
        ("b", "done", 1, 7),
    ]
    assert runs["combined"] == {"bags": 2, "complete": True, "rows": 45, "episodes": 3}
    combined = pq.read_table(out / "frames.parquet").to_pydict()
    per_bag = {name: pq.read_table(out / name / "frames.parquet").to_pydict() for name in "ab"}
    assert sorted(set(combined["episode_index"])) == [5, 6, 7]
    for name, offset in (("a", 5), ("b", 7)):
        rows = [i for i, bag in enumerate(combined["bag"]) if bag == name]
        table = per_bag[name]
        assert [combined["bag_episode_index"][i] for i in rows] == [e - 5 for e in table["episode_index"]]
        assert [combined["episode_index"][i] for i in rows] == [offset + e - 5 for e in table["episode_index"]]
        assert np.allclose([combined["progress"][i] for i in rows], table["progress"])
        assert [combined["stamp_ns"][i] for i in rows] == table["stamp_ns"]
    keys = list(zip(combined["episode_index"], combined["frame_index"]))
    assert len(keys) == len(set(keys))

    # A re-run redoes nothing and leaves every episode file untouched.
    before = episode_files(out)
    assert run_cli(str(bags / "bags"), "-o", str(out), "--episode-offset", "5", *common(tiny_model_dir)) == EXIT_OK
    assert episode_files(out) == before
    again = json.loads((out / "runs.json").read_text())
    assert [b["this_run"] for b in again["bags"]] == [
        {"scored": 0, "skipped": 2, "empty": 0, "failed": 0},
        {"scored": 0, "skipped": 1, "empty": 0, "failed": 0},
    ]


def test_an_unusable_bag_is_reported_and_the_others_are_scored(bags, tiny_model_dir, tmp_path):
    no_instruction = tmp_path / "c"
    write_episodes_bag(no_instruction, "mcap", SCENES[:1], duration_s=1.0, instruction_topic=None)
    listing = tmp_path / "list.txt"
    listing.write_text(f"# two bags\n{no_instruction}\n{bags / 'bags' / 'b'}\n")
    out = tmp_path / "out"
    assert run_cli(f"@{listing}", "-o", str(out), *common(tiny_model_dir)) == EXIT_PARTIAL
    runs = json.loads((out / "runs.json").read_text())
    first, second = runs["bags"]
    assert first["status"] == "unusable" and "missing instruction" in first["error"]
    assert first["episodes"] == 0 and not (out / "c").exists()
    assert second["status"] == "done" and second["episode_offset"] == 0
    assert runs["combined"]["complete"] and runs["combined"]["episodes"] == 1
    # Nothing usable at all: nothing starts.
    assert (
        run_cli(
            *command_line(
                "{} {} --list {} -o {} --instruction-topic /nope",
                no_instruction,
                no_instruction,
                listing,
                tmp_path / "none",
            ),
            *common(tiny_model_dir),
        )
        == EXIT_UNUSABLE
    )


def test_the_default_path_never_imports_ray_and_ray_missing_names_the_extra(bags, tiny_model_dir, tmp_path):
    script = f"""
import sys
from topreward_ros.commands.cli import main
common = {common(tiny_model_dir)!r}
code = main(["bag", {str(bags / "bags")!r}, "-o", {str(tmp_path / "local")!r}, *common])
assert code == 0, code
assert "ray" not in sys.modules, "the embedded path imported ray"
sys.modules["ray"] = None  # as on a machine without the scale extra
code = main(["bag", {str(bags / "bags")!r}, "-o", {str(tmp_path / "ray")!r}, "--ray", *common])
print("EXIT", code)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=dict(os.environ), timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "EXIT 2" in result.stdout
    assert "'scale' extra" in result.stderr and "requirements/scale.txt" in result.stderr


def test_the_combined_table_waits_for_a_bag_stopped_early(bags, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    assert run_cli(str(bags / "bags"), "-o", str(out), "--max-episodes", "1", *common(tiny_model_dir)) == EXIT_OK
    runs = json.loads((out / "runs.json").read_text())
    assert [(b["status"], b["episodes"], b["episode_offset"]) for b in runs["bags"]] == [
        ("incomplete", None, None),
        ("done", 1, None),
    ]
    assert runs["combined"] == {"bags": 0, "complete": False, "rows": 0, "episodes": 0, "waiting_for": "a"}
    assert pq.read_table(out / "frames.parquet").num_rows == 0
    assert run_cli(str(bags / "bags"), "-o", str(out), *common(tiny_model_dir)) == EXIT_OK
    runs = json.loads((out / "runs.json").read_text())
    assert [(b["status"], b["episodes"], b["episode_offset"]) for b in runs["bags"]] == [("done", 2, 0), ("done", 1, 2)]
    assert sorted(set(pq.read_table(out / "frames.parquet").column("episode_index").to_pylist())) == [0, 1, 2]
