"""Output files that are complete or absent, and cheap identities of input files.

Scoring a long recording takes hours on a real model, so an interrupted run
(Ctrl-C, a killed job) must never leave a half-written file under its final
name: every output is written to a temporary sibling and moved into place
with ``os.replace``. Every writer of results (offline outputs, evaluation
reports, the RA-BC parquet, videos) goes through here.

The fingerprint is what a resumed run checks its input against: file sizes
and evenly spaced sampled blocks, because hashing whole multi-gigabyte
recordings on every re-run would cost minutes, while sizes and samples
still catch a different, re-recorded, truncated or repaired input.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

FINGERPRINT_BLOCKS = 64
FINGERPRINT_BLOCK_BYTES = 64 * 1024


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Create ``path`` by calling ``write(file)`` on a temporary sibling, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: Path, text: str) -> Path:
    return write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def write_json_atomic(path: Path, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def files_fingerprint(files: list[Path], names: list[str]) -> str:
    """Sizes and sampled blocks of ``files``, each hashed under its name in ``names``."""
    digest = hashlib.sha256()
    for file, name in zip(files, names):
        size = file.stat().st_size
        digest.update(f"{name}\0{size}\0".encode())
        with open(file, "rb") as handle:
            if size <= FINGERPRINT_BLOCKS * FINGERPRINT_BLOCK_BYTES:
                digest.update(handle.read())
                continue
            stride = (size - FINGERPRINT_BLOCK_BYTES) // (FINGERPRINT_BLOCKS - 1)
            for i in range(FINGERPRINT_BLOCKS):
                handle.seek(i * stride)
                digest.update(handle.read(FINGERPRINT_BLOCK_BYTES))
    return digest.hexdigest()[:32]
