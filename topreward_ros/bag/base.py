"""What the bag modules share without importing the bag library (rosbags).

The errors every bag problem is reported with and the names of a bag's
storage files. Code that only handles those (the LeRobot dataset scorer, the
command-line parsers, the output manifests) imports this module and never
pays for, or needs, the bag reader.
"""
from __future__ import annotations

from pathlib import Path

STORAGE_SUFFIXES = {".mcap": "mcap", ".db3": "sqlite3"}


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
