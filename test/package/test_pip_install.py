"""A pip-only install, no ROS: `pip install '.[model,bag,video,plot]'` into a clean virtualenv.

The LeRobot user's path: a fresh virtualenv (no system site packages, none of
the ROS wheels, no colcon install tree on any path) gets this package and its
extras from the package index with pip, exactly as docs/lerobot.md says. Then,
in that virtualenv only:

* ``import rclpy`` (and ``topreward_ros.msg``) fail: nothing of ROS is there;
* ``topreward lerobot --help`` works (the console script pip installed);
* ``topreward lerobot DATASET -o OUT`` scores a dataset written by
  ``topreward_ros.demo.synthetic_lerobot`` with the tiny model and writes the RA-BC
  parquet; neither parsing the arguments nor scoring imports the bag reader
  (parsing imports nothing of rosbags at all).

Installing torch takes minutes, so the dependencies are installed once per
set of pins (a stamp named after a hash of setup.py's requirements and the
constraint files, like the main virtualenv's) in ~/.cache/topreward_ros/venv-pip
(TOPREWARD_PIP_VENV names another); the package itself is reinstalled from
the working tree on every run.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.command_line import command_line

from topreward_ros.demo.synthetic_lerobot import DatasetCamera, write_lerobot_dataset

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
EXTRAS = "model,bag,video,plot"
#: The same pins as the main virtualenv: pip takes them from the local package cache.
CONSTRAINTS = (ROOT / "requirements" / "ml.txt", ROOT / "requirements" / "bag.txt")
#: What a pip install of the package is built from.
PACKAGE_FILES = ("setup.py", "setup.cfg", "package.xml", "resource", "msg", "topreward_ros")
#: Variables that would let the clean virtualenv see ROS or the main virtualenv.
LEAKING = (
    "PYTHONPATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
    "LD_LIBRARY_PATH",
    "AMENT_PREFIX_PATH",
    "CMAKE_PREFIX_PATH",
    "COLCON_PREFIX_PATH",
    "TOPREWARD_INSTALL",
    "TOPREWARD_VENV",
)
FRONT = "observation.images.front"


def venv_path() -> Path:
    named = os.environ.get("TOPREWARD_PIP_VENV", "").strip()
    return Path(named) if named else Path.home() / ".cache" / "topreward_ros" / "venv-pip"


def clean_env(venv: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in LEAKING and not k.startswith(("ROS_", "RMW_", "COLCON_", "AMENT_"))
    }
    env["PATH"] = os.pathsep.join([str(venv / "bin"), "/usr/local/bin", "/usr/bin", "/bin"])
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONNOUSERSITE"] = "1"
    return env


def run(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 1500) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def package_source(dest: Path) -> Path:
    """A copy of what `pip install .` reads (building in the checkout would write into colcon's build/)."""
    for name in PACKAGE_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def declared_requirements() -> str:
    """setup.py's install_requires and extras_require, as written (what the dependencies depend on)."""
    import ast

    tree = ast.parse((ROOT / "setup.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup"]
    assert len(calls) == 1, "setup.py must call setup() once"
    return "\n".join(ast.unparse(k.value) for k in calls[0].keywords if k.arg in ("install_requires", "extras_require"))


@pytest.fixture(scope="module")
def pip_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = venv_path()
    digest = hashlib.sha1(declared_requirements().encode())
    for path in CONSTRAINTS:
        digest.update(path.read_bytes())
    digest.update(sys.version.encode())
    stamp = venv / f".deps-{digest.hexdigest()[:12]}"
    source = package_source(tmp_path_factory.mktemp("pip_src"))
    env = clean_env(venv)
    base_python = getattr(sys, "_base_executable", None) or sys.executable
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs on one machine build it once
        if not stamp.exists():
            shutil.rmtree(venv, ignore_errors=True)
            started = time.monotonic()
            made = run([base_python, "-m", "venv", str(venv)], env, source)
            assert made.returncode == 0, made.stderr
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
            constraints = [a for c in CONSTRAINTS for a in ("-c", str(c))]
            installed = run([*pip, f".[{EXTRAS}]", *constraints], env, source)
            assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-5000:]
            checked = run([str(venv / "bin" / "python"), "-m", "pip", "check"], env, source)
            assert checked.returncode == 0, checked.stdout
            print(f"pip install '.[{EXTRAS}]' into a new virtualenv: {time.monotonic() - started:.0f} s")
            stamp.touch()
        # The package itself, from this working tree, every run.
        reinstalled = run(
            command_line(
                "{} -m pip install --disable-pip-version-check -q --no-deps --force-reinstall .",
                venv / "bin" / "python",
            ),
            env,
            source,
        )
        assert reinstalled.returncode == 0, reinstalled.stderr[-5000:]
    return venv


def test_the_pip_virtualenv_has_no_ros(pip_venv: Path, tmp_path: Path) -> None:
    env = clean_env(pip_venv)
    python = str(pip_venv / "bin" / "python")
    probe = run([python, "-c", "import sys; print(sys.prefix, sys.base_prefix); import rclpy"], env, tmp_path)
    assert probe.returncode != 0 and "No module named 'rclpy'" in probe.stderr, probe
    probe = run([python, "-c", "import topreward_ros.msg"], env, tmp_path)
    assert probe.returncode != 0 and "No module named 'topreward_ros.msg'" in probe.stderr, probe
    where = run([python, "-c", "import topreward_ros; print(topreward_ros.__file__)"], env, tmp_path)
    assert where.returncode == 0 and where.stdout.startswith(str(pip_venv)), where
    helped = run([str(pip_venv / "bin" / "topreward"), "lerobot", "--help"], env, tmp_path)
    assert helped.returncode == 0 and "RA-BC" in helped.stdout, helped


SCORE = """
import json, sys
from topreward_ros.commands.cli import build_parser, main
argv = sys.argv[1:]
build_parser().parse_args(argv)
parsed = sorted(m for m in sys.modules if m == "rosbags" or m.startswith(("rosbags.", "topreward_ros.bag.reader")))
code = main(argv)
print(json.dumps({"code": code, "after_parsing": parsed,
                  "bag_reader": "topreward_ros.bag.reader" in sys.modules, "rclpy": "rclpy" in sys.modules}))
"""


def test_topreward_lerobot_scores_a_dataset_without_ros(pip_venv: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    dataset = write_lerobot_dataset(tmp_path / "ds", cameras=(DatasetCamera(FRONT, 96, 72),), fps=10, duration_s=2.0)
    out = tmp_path / "out"
    argv = command_line(
        "lerobot {} -o {} --model {} --local-files-only --device cpu "
        "--dtype float32 --torch-threads 1 --view-size 64 "
        "--num-prefixes 4 -q",
        dataset.root,
        out,
        tiny_model_dir,
    )
    result = run([str(pip_venv / "bin" / "python"), "-c", SCORE, *argv], clean_env(pip_venv), tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"code": 0, "after_parsing": [], "bag_reader": False, "rclpy": False}, result.stdout
    table = pq.read_table(out / "topreward_progress.parquet").to_pydict()
    frames = sum(len(e.index) for e in dataset.episodes)
    assert len(table["index"]) == frames and sorted(table["index"]) == list(range(frames))
    assert "progress_sparse" in table
    assert all(0.0 <= p <= 1.0 for p in table["progress_sparse"])
    assert (out / "frames.parquet").is_file()
