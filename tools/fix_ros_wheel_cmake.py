#!/usr/bin/env python3
"""Point the ROS wheels' CMake export files at this interpreter.

The ROS 2 wheels are built in a manylinux container and their exported CMake
targets name that container's Python include directory and numpy include
directory. CMake refuses imported targets whose include paths do not exist, so
message generation fails until those two paths name the local ones. The
rewrite is idempotent: running it again changes nothing.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

BUILD_PYTHON_INCLUDE = "/opt/python/cp311-cp311/include/python3.11"
BUILD_NUMPY_INCLUDE = "/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include"


def main(prefix: str) -> int:
    import numpy

    replacements = {BUILD_NUMPY_INCLUDE: numpy.get_include(), BUILD_PYTHON_INCLUDE: sysconfig.get_paths()["include"]}
    changed = 0
    for path in Path(prefix, "share").glob("*/cmake/*.cmake"):
        text = path.read_text()
        new = text
        for old, local in replacements.items():
            new = new.replace(old, local)
        if new != text:
            path.write_text(new)
            changed += 1
    print(f"fix_ros_wheel_cmake: rewrote {changed} CMake file(s) under {prefix}/share")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else sys.prefix))
