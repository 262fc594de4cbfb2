"""Running `topreward` in-process from an eval test, reading what it wrote, and the node's success rule."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from topreward_ros.commands.cli import main as topreward
from topreward_ros.evaluation.runner import record_file_name


def run_cli(*argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of one `topreward` command run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = topreward(list(argv))
    return code, out.getvalue(), err.getvalue()


def rerun_with_labels(
    setup: dict[str, Any], name: str, text: str, *extra: str, suffix: str = ".csv"
) -> tuple[int, str, str, Path]:
    """A finished evaluation (``setup["out"]``), copied, re-run with other labels: nothing is rescored.

    ``setup`` holds the evaluation's ``out`` folder, its ``common`` argv (with
    ``-l`` and ``-o``) and a ``root`` for the copy; the labels file is
    ``NAME + suffix`` there.
    """
    out = setup["root"] / name
    shutil.copytree(setup["out"], out)
    labels = setup["root"] / f"{name}{suffix}"
    labels.write_text(text)
    argv = list(setup["common"])
    argv[argv.index("-l") + 1] = str(labels)
    argv[argv.index("-o") + 1] = str(out)
    return (*run_cli("eval", *argv, *extra), out)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def record(out: Path, name: str) -> dict[str, Any]:
    """The record `topreward eval` wrote for episode ``name`` under ``out``."""
    return json.loads((out / "episodes" / record_file_name(name)).read_text())


def node_would_fire(scores: list[float], threshold: float, window: int, consecutive: int) -> bool:
    """The node's rule, written out: mean of the last `window` scores > threshold, `consecutive` in a row."""
    streak = 0
    for i in range(window - 1, len(scores)):
        streak = streak + 1 if np.mean(scores[i - window + 1 : i + 1]) > threshold else 0
        if streak >= consecutive:
            return True
    return False
