"""RA-BC done right: the episodes to train on by verdict, and LeRobot's own RABCWeights reading our parquet.

A synthetic LeRobot v3 dataset (three episodes) is scored by ``topreward
lerobot`` with the tiny model. Then:

* ``topreward lerobot-episodes`` lists, in the form ``lerobot-train
  --dataset.episodes`` takes, the episodes whose success score passes the
  threshold (the run's, an option's, or calibrated.yaml's), and no other;
* LeRobot's ``RABCWeights`` (``lerobot/utils/rabc.py`` of the lerobot 0.4.4
  wheel, unpacked beside the pandas wheel in a side directory: LeRobot pins
  torch and av below this package's pins, so it cannot share the
  environment) reads ``topreward_progress.parquet`` unchanged, in a child
  process; its weights equal the paper's Eq. 8-9 computed here from the
  parquet, and a frame with no row gets its fallback weight 1.0, the
  largest: removing a failed episode's rows would give its frames full
  weight, which is why failures are excluded by episode list instead.

The wheels come from the package index with ``pip download --no-deps``;
where the index cannot be reached the RABCWeights test skips and says so.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from support.command_line import command_line

from topreward_ros.commands.cli import main as topreward
from topreward_ros.demo.scene import DEMO_SCENES, SceneSpec
from topreward_ros.demo.synthetic_lerobot import DatasetCamera, write_lerobot_dataset
from topreward_ros.lerobot.progress import PROGRESS_FILE

pytestmark = [pytest.mark.timeout(600)]

SCENES = (*DEMO_SCENES, SceneSpec("push the green block to the left", (40, 160, 60), 0.6, 0.3))
LEROBOT = "lerobot==0.4.4"
PANDAS = "pandas"  # pandas 3 needs no pytz; python-dateutil and tzdata are in the environment
CHUNK = 3


def run_cli(*argv: str) -> tuple[int, str, str]:
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
        code = topreward(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("rabc")
    written = write_lerobot_dataset(
        root / "ds",
        SCENES,
        (DatasetCamera("observation.images.front", 64, 48),),
        fps=10,
        duration_s=3.0,
        episodes_per_file=2,
    )
    out = root / "out"
    code, stdout, stderr = run_cli(
        *command_line(
            "lerobot {} -o {} --model {} --device cpu --dtype float32 "
            "--local-files-only --view-size 64 --num-prefixes 6 -q "
            "--no-plot",
            written.root,
            out,
            tiny_model_dir,
        )
    )
    assert code == 0, stdout + stderr
    return out


def scores(out: Path) -> dict[int, tuple[float, list[float]]]:
    """Episode index -> (the recorded success score, the raw per-prefix scores), read from curve.json."""
    found = {}
    for path in sorted(out.glob("episode_*/curve.json")):
        curve = json.loads(path.read_text())
        found[curve["episode_index"]] = (curve["offline"]["success_score"], curve["offline"]["log_prob_true"])
    return found


def test_lerobot_episodes_lists_those_that_pass_the_threshold(scored: Path, tmp_path: Path) -> None:
    found = scores(scored)
    assert sorted(found) == [0, 1, 2]
    ordered = sorted(s for s, _ in found.values())
    assert ordered[0] < ordered[1] < ordered[2]
    threshold = (ordered[0] + ordered[1]) / 2  # one episode fails, two pass
    code, stdout, stderr = run_cli("lerobot-episodes", str(scored), "--success-threshold", repr(threshold))
    assert code == 0, stderr
    expected = [i for i in sorted(found) if found[i][0] > threshold]
    assert len(expected) == 2
    assert stdout == "[" + ",".join(map(str, expected)) + "]\n"
    (failed,) = set(found) - set(expected)
    assert f"left out: {failed} ({found[failed][0]:.3f})" in stderr
    # calibrated.yaml's threshold and window: the score is recomputed from the recorded prefixes.
    calibrated = tmp_path / "calibrated.yaml"
    window_scores = {i: float(np.mean(raw[-1:])) for i, (_, raw) in found.items()}
    middle = sorted(window_scores.values())[1]
    calibrated.write_text(f"/**:\n  ros__parameters:\n    success_threshold: {middle!r}\n    success_window: 1\n")
    code, stdout, stderr = run_cli("lerobot-episodes", str(scored), "--params-file", str(calibrated))
    assert code == 0, stderr
    assert stdout == "[" + ",".join(str(i) for i in sorted(found) if window_scores[i] > middle) + "]\n"
    # The run's own threshold by default (-8.0 here: the tiny model's scores all lie above it).
    code, stdout, _ = run_cli("lerobot-episodes", str(scored))
    assert (code, stdout) == (0, "[" + ",".join(str(i) for i in sorted(found) if found[i][0] > -8.0) + "]\n")
    code, _, stderr = run_cli("lerobot-episodes", str(tmp_path))
    assert code == 2 and "holds no manifest.json" in stderr


@pytest.fixture(scope="module")
def rabc_side_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pandas and lerobot/utils/rabc.py from their wheels, unpacked in a directory of their own."""
    wheels = tmp_path_factory.mktemp("wheels")
    run = subprocess.run(
        command_line(
            "{} -m pip download --no-deps --only-binary=:all: --disable-pip-version-check -q -d {} {} {}",
            sys.executable,
            wheels,
            LEROBOT,
            PANDAS,
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if run.returncode != 0:
        pytest.skip(
            f"`pip download {LEROBOT} {PANDAS}` failed (no package index reachable?): {run.stderr.strip()[-500:]}"
        )
    side = tmp_path_factory.mktemp("side")
    for wheel in wheels.glob("*.whl"):
        with zipfile.ZipFile(wheel) as z:
            if wheel.name.startswith("lerobot-"):
                z.extract("lerobot/utils/rabc.py", side)
            else:
                z.extractall(side)
    return side


CHILD = textwrap.dedent("""
    import importlib.util, json, sys
    side, parquet, indices, chunk = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
    sys.path.insert(0, side)
    spec = importlib.util.spec_from_file_location("rabc", side + "/lerobot/utils/rabc.py")
    rabc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rabc)
    import torch
    weights = rabc.RABCWeights(parquet, chunk_size=chunk, head_mode="sparse", device=torch.device("cpu"))
    w, stats = weights.compute_batch_weights({"index": torch.tensor(indices)})
    print(json.dumps({"weights": w.tolist(), "stats": stats, "frames": weights.get_stats()["num_frames"]}))
""")


def expected_weights(
    table: dict[str, Any], indices: list[int], chunk: int, kappa: float = 0.01, epsilon: float = 1e-6
) -> np.ndarray:
    """The paper's Eq. 8-9 over the parquet's rows, written here from the file alone."""
    progress = dict(zip(table["index"], table["progress_sparse"]))
    episode = dict(zip(table["index"], table["episode_index"]))
    ends = {e: max(i for i in table["index"] if episode[i] == e) for e in set(table["episode_index"])}

    def delta(i: int) -> float:
        if i not in progress:
            return float("nan")
        return progress[min(i + chunk, ends[episode[i]])] - progress[i]

    every = np.array([delta(i) for i in table["index"]], np.float64)
    mean, std = max(every.mean(), 0.0), max(every.std(), epsilon)
    d = np.array([delta(i) for i in indices], np.float64)
    soft = np.clip((d - (mean - 2 * std)) / (4 * std + epsilon), 0.0, 1.0)
    raw = np.where(d > kappa, 1.0, np.where((d >= 0) & (d <= kappa), soft, 0.0))
    raw[np.isnan(d)] = 1.0  # no row: the fallback weight
    return raw * len(raw) / (raw.sum() + epsilon)


def test_lerobots_rabc_weights_read_our_parquet(scored: Path, rabc_side_dir: Path) -> None:
    parquet = scored / PROGRESS_FILE
    table = pq.read_table(parquet).to_pydict()
    present = list(table["index"])
    absent = max(present) + 1000  # a frame of an episode whose rows are not in the file
    indices = [*present, absent]
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(rabc_side_dir), str(parquet), json.dumps(indices), str(CHUNK)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    got = json.loads(child.stdout.strip().splitlines()[-1])
    assert got["frames"] == len(present)
    want = expected_weights(table, indices, CHUNK)
    np.testing.assert_allclose(got["weights"], want, rtol=1e-5, atol=1e-6)
    # The absent frame gets the fallback weight, as large as any frame's: full weight.
    assert got["weights"][-1] == pytest.approx(max(got["weights"]))
    assert got["weights"][-1] > min(got["weights"])  # and the weights do differ between frames


def test_ray_without_an_address_before_the_dataset_takes_it_as_the_dataset(tmp_path: Path) -> None:
    """`topreward lerobot --ray DATASET ...` (as `bag` and `eval` allow): the path is the dataset,
    not a cluster address; a bad option is then reported, before Ray or the model start."""
    code, _, stderr = run_cli(*command_line("lerobot --ray {} -o {} --success-window 0", tmp_path, tmp_path / "out"))
    assert code == 2 and "success_window must be >= 1, got 0" in stderr, stderr
