"""The demo evaluation the `topreward eval` test modules share: a bag of six episodes and a frame folder, labelled.

``interrupted_then_finished`` runs `topreward eval` over them twice, as a user
does who stopped it: first with ``--max-episodes 3`` (an interrupted
evaluation), then completed by a re-run. ``demo_evaluation`` is the
module-scoped fixture ``setup`` of the modules that import it: the first of
them in a test run does the evaluation, in a folder the run's workers share,
and the others read its result, so it runs once per run rather than once per
module. The evaluated inputs and output are read-only to the tests; each
module gets a ``root`` of its own for what it writes (where
``support.eval_outputs.rerun_with_labels`` re-runs a copy of the finished
output with other labels). Scores of the tiny random model are meaningless: the
tests compare the command's numbers with independent computations, never with
fixed values.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from support.command_line import command_line
from support.eval_outputs import read_csv, run_cli
from topreward_ros.demo.run import write_demo_bag
from topreward_ros.demo.scene import SceneSpec, render_episode
from topreward_ros.evaluation.runner import record_file_name

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
#: Label rows (no header) calling every episode of the demo evaluation a success.
ALL_LABELS = "".join(f"demo_bag/{i},1,,\n" for i in range(6)) + f"clip_green,1,green,{FRAMES_INSTRUCTION}\n"
#: The header episodes.csv must have, written out by hand.
EPISODES_CSV_HEADER = (
    "episode,input,kind,task,instruction,success,num_frames,num_samples,voc,control_voc,"
    "raw_success_score,two_way_success_score,control_raw_success_score,"
    "control_two_way_success_score,predicted_success,live_success,status,status_detail"
)


def interrupted_then_finished(root: Path, model: Path) -> dict[str, Any]:
    """The demo inputs written under ``root``, evaluated with ``--max-episodes 3``, then to the end.

    Returns the paths (root, bag, frames, labels, out, model), the shared
    command line (``common``), what the first run left (``first``: its CSV
    rows, the inode and bytes of its three records, its stdout) and the
    second run's (exit code, stdout, stderr).
    """
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
        model,
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
        "model": model,
    }


def run_shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every worker of this test run sees: pytest-xdist gives each worker a subfolder of it."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="module", name="setup")
def demo_evaluation(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Any]:
    """``setup``: the demo evaluation of ``interrupted_then_finished``, done once per test run.

    The first module to ask runs it under a lock; the result (paths, the
    first run's snapshot, the second run's output) is saved beside it, and
    later modules, in this worker or another, load it. ``root`` is the
    module's own folder.
    """
    shared = run_shared_dir(tmp_path_factory)
    done = shared / "demo-eval.pickle"
    with open(shared / "demo-eval.lock", "ab") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            result = pickle.loads(done.read_bytes())
        else:
            work = shared / "demo-eval"
            shutil.rmtree(work, ignore_errors=True)  # a module before this one failed half-way
            work.mkdir()
            result = interrupted_then_finished(work, tiny_model_dir)
            done.write_bytes(pickle.dumps(result))
    return {**result, "root": tmp_path_factory.mktemp("eval")}


def video_records(count: int = 4) -> list[dict[str, Any]]:
    """Records of ``count`` scored videos e0, e1, ...: raw success scores -10, -9, ... (one up per episode)."""
    return [
        {
            "episode": f"e{i}",
            "kind": "video",
            "voc": 0.5,
            "control_voc": 0.9,
            "raw_success_score": -10.0 + i,
            "two_way_success_score": -0.5,
        }
        for i in range(count)
    ]
