"""Where the tests find the package's colcon install tree.

``make`` builds one install tree per ROS 2 distro (install/ for the default,
install-DISTRO/ for another) and tools/env.sh exports its path as
TOPREWARD_INSTALL; without it the default tree REPO/install is used.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def install_root() -> Path:
    """The colcon install tree (``--install-base``) the tests run against."""
    named = os.environ.get("TOPREWARD_INSTALL", "").strip()
    if not named:
        return REPO_ROOT / "install"
    path = Path(named)
    return path if path.is_absolute() else REPO_ROOT / path


INSTALL_ROOT = install_root()
#: The package's own prefix inside the install tree.
PACKAGE_PREFIX = INSTALL_ROOT / "topreward_ros"
#: Where `ros2 run topreward_ros NAME` finds the package's executables.
LIB_DIR = PACKAGE_PREFIX / "lib" / "topreward_ros"
SHARE_DIR = PACKAGE_PREFIX / "share" / "topreward_ros"
