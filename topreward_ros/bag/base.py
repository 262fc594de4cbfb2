"""What the bag modules share without importing the bag library (rosbags).

The errors every bag problem is reported with and the names of a bag's
storage files. Code that only handles those (the LeRobot dataset scorer, the
command-line parsers, the output manifests) imports this module and never
pays for, or needs, the bag reader.
"""

from __future__ import annotations

from pathlib import Path

from topreward_ros.files.atomic import files_fingerprint

STORAGE_SUFFIXES = {".mcap": "mcap", ".db3": "sqlite3"}

#: /clock messages per wall second (``topreward replay --clock-hz``). Every one wakes each
#: sim-time node's executor (timers are re-evaluated), which on a 2-core machine that also
#: runs the model takes CPU from scoring; 20 Hz still fires a 1 Hz scoring timer within
#: 50 ms of bag time. Defined here, not in bag.replay, so that building the parser does
#: not import the bag reader.
DEFAULT_CLOCK_HZ = 20.0


class BagError(Exception):
    """Base of every bag reading problem; the message says what and where."""


class BagOpenError(BagError):
    """The bag cannot be opened at all (missing, empty, not a bag, unreadable)."""


class BagReadError(BagError):
    """Reading stopped part-way; everything before ``last_log_time_ns`` was delivered."""

    def __init__(self, message: str, messages_read: int, last_log_time_ns: int | None) -> None:
        super().__init__(message)
        self.messages_read = messages_read
        self.last_log_time_ns = last_log_time_ns


class MessageDecodeError(BagError):
    """One message's bytes do not deserialise as its declared type."""


def storage_files(path: Path) -> list[Path]:
    """The storage files a bag path stands for (a file, or a directory's files)."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.iterdir() if p.suffix in STORAGE_SUFFIXES and p.is_file())


def bag_fingerprint(path: Path) -> str:
    """A cheap identity of a bag's content: sizes and sampled blocks of its files."""
    files = storage_files(path) if path.is_dir() else [path]
    if path.is_dir() and (path / "metadata.yaml").is_file():
        files = [path / "metadata.yaml", *files]
    return files_fingerprint(files, [file.name for file in files])
