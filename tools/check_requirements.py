#!/usr/bin/env python3
"""`pip check` that knows the ROS wheels' distribution names.

The ROS 2 wheels publish each ROS package under a prefixed distribution name
(``ament_index_python`` comes as ``ros-ament-index-python``), while the launch
sources the ros-extras step installs declare the plain name. Once those are in
the virtualenv, a plain ``pip check`` reports the plain name missing, and a
later requirements change would stop ``make`` although nothing is missing.
This runs ``pip check`` and drops exactly those lines: a requirement named
NAME counts as met when ``ros-NAME`` or ``ros-$ROS_DISTRO-NAME`` is installed.
Any other problem is printed and fails the check.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata

MISSING = re.compile(r"^(?P<who>\S+) \S+ requires (?P<name>[A-Za-z0-9_.-]+), which is not installed\.$")


def _installed() -> set[str]:
    return {_canonical(dist.metadata["Name"]) for dist in metadata.distributions() if dist.metadata["Name"]}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _met_by_ros_wheel(name: str, installed: set[str]) -> bool:
    name = _canonical(name)
    distro = os.environ.get("ROS_DISTRO", "jazzy")
    return f"ros-{name}" in installed or f"ros-{distro}-{name}" in installed


def main() -> int:
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    installed = _installed()
    problems = []
    for line in result.stdout.splitlines():
        missing = MISSING.match(line.strip())
        if missing and _met_by_ros_wheel(missing["name"], installed):
            continue
        if line.strip() and not line.startswith("No broken requirements"):
            problems.append(line)
    for line in problems:
        print(line, file=sys.stderr)
    if result.returncode != 0 and not problems and result.stderr.strip():
        print(result.stderr, file=sys.stderr)
        return 1
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
