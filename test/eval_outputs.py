"""Running `topreward` in-process from an eval test, and reading what `topreward eval` wrote."""
from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path
from typing import Any

from topreward_ros.cli import main as topreward
from topreward_ros.evaluation.runner import record_file_name


def run_cli(*argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of one `topreward` command run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = topreward(list(argv))
    return code, out.getvalue(), err.getvalue()


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def record(out: Path, name: str) -> dict[str, Any]:
    """The record `topreward eval` wrote for episode ``name`` under ``out``."""
    return json.loads((out / "episodes" / record_file_name(name)).read_text())
