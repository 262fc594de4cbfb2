"""Message types for bag I/O without a ROS install: rosbags' type store.

rosbags (de)serialises CDR from message definitions it holds in a type store.
The standard ROS 2 messages ship with it; this package's own TaskProgress,
EpisodeSuccess and EpisodeResult are registered from the very ``.msg`` files the node is built
from, so a bag written here carries the same schema (embedded in the MCAP)
that the node publishes, and Foxglove or ``ros2 bag`` read it as such.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

PACKAGE = "topreward_ros"
#: Our message types, in the form bags and rosbags name them.
TASK_PROGRESS = f"{PACKAGE}/msg/TaskProgress"
EPISODE_SUCCESS = f"{PACKAGE}/msg/EpisodeSuccess"
EPISODE_RESULT = f"{PACKAGE}/msg/EpisodeResult"
OWN_MESSAGES = ("TaskProgress", "EpisodeSuccess", "EpisodeResult")

# The ROS 2 release whose standard message definitions the store starts from
# (the one this package's wheels and node are built against).
ROS_STORE = Stores.ROS2_KILTED


class MessageDefinitionError(RuntimeError):
    """The package's .msg files could not be found or parsed."""


def _candidate_msg_dirs() -> list[Path]:
    dirs: list[Path] = []
    try:
        from ament_index_python.packages import get_package_share_directory

        dirs.append(Path(get_package_share_directory(PACKAGE)) / "msg")
    except Exception:  # noqa: BLE001 - not built/sourced: fall back to the source tree
        pass
    # Source checkout (also where a --symlink-install tree points back to).
    dirs.append(Path(__file__).resolve().parents[2] / "msg")
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            dirs.append(Path(prefix) / "share" / PACKAGE / "msg")
    # A pip install (no ROS): setup.py installs them under the environment's share/.
    dirs.append(Path(sys.prefix) / "share" / PACKAGE / "msg")
    return dirs


def find_msg_dir() -> Path:
    """Directory holding the package's .msg files (``OWN_MESSAGES``)."""
    tried = _candidate_msg_dirs()
    for directory in tried:
        if all((directory / f"{name}.msg").is_file() for name in OWN_MESSAGES):
            return directory
    raise MessageDefinitionError(
        "cannot find topreward_ros/msg/{TaskProgress,EpisodeSuccess,EpisodeResult}.msg; looked in: "
        + ", ".join(str(d) for d in tried)
        + " (build the package with `make build` and `source tools/env.sh`)"
    )


@functools.lru_cache(maxsize=1)
def typestore() -> Typestore:
    """Kilted's standard messages plus the package's own (``OWN_MESSAGES``)."""
    store = get_typestore(ROS_STORE)
    msg_dir = find_msg_dir()
    types = {}
    for name in OWN_MESSAGES:
        path = msg_dir / f"{name}.msg"
        try:
            types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{name}"))
        except Exception as exc:  # noqa: BLE001 - any parse failure is fatal here
            raise MessageDefinitionError(f"cannot parse {path}: {exc}") from exc
    store.register(types)
    return store
