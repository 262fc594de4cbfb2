"""Atomic output files and the per-output-directory manifest that makes runs resumable.

Scoring a long bag takes hours on a real model, so an interrupted run (Ctrl-C,
a killed job, a truncated bag) must keep what it finished and a re-run must
pick up where it stopped. Two rules give that:

* every output file is written to a temporary sibling and moved into place
  with ``os.replace``, so a file under its final name is always complete;
* ``manifest.json`` records each completed episode (with its files) only
  after those files are in place, so the manifest never claims work that a
  crash could have lost. It also records the input bag's fingerprint and the
  settings, so a re-run never silently mixes results of different bags or
  settings in one directory.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from topreward_ros.bag.base import storage_files

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1

# Fingerprint sampling: file sizes, plus this many evenly spaced blocks of
# each storage file. Hashing whole multi-gigabyte bags on every re-run would
# cost minutes; sizes and sampled blocks catch a different, re-recorded,
# truncated or repaired bag.
FINGERPRINT_BLOCKS = 64
FINGERPRINT_BLOCK_BYTES = 64 * 1024


class ManifestError(RuntimeError):
    """The output directory holds results that do not belong to this run."""


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


def bag_fingerprint(path: Path) -> str:
    """A cheap identity of a bag's content: sizes and sampled blocks of its files."""
    files = storage_files(path) if path.is_dir() else [path]
    if path.is_dir() and (path / "metadata.yaml").is_file():
        files = [path / "metadata.yaml", *files]
    return files_fingerprint(files, [file.name for file in files])


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


@dataclass
class Manifest:
    """What an output directory holds: input identity, settings, finished episodes."""

    path: Path
    input_path: str
    fingerprint: str
    settings: dict[str, Any]
    episodes: dict[int, dict[str, Any]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    # Episodes of this run without a single camera frame (nothing to score).
    empty: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def open(cls, out_dir: Path, input_path: Path, fingerprint: str,
             settings: dict[str, Any], force: bool = False) -> Manifest:
        """Load the directory's manifest, or start one; refuse a mismatching one.

        ``force`` discards a manifest of another bag or other settings (the
        episodes it lists are then redone and their files overwritten).
        """
        path = out_dir / MANIFEST_NAME
        fresh = cls(path, str(input_path), fingerprint, settings)
        if not path.exists() or force:
            return fresh
        try:
            data = json.loads(path.read_text())
            version = data["version"]
            old_fingerprint = data["input"]["fingerprint"]
            old_settings = data["settings"]
            episodes = {int(k): v for k, v in data["episodes"].items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ManifestError(
                f"{path} is unreadable ({exc}); remove it or pass --force to redo everything"
            ) from exc
        if version != MANIFEST_VERSION:
            raise ManifestError(
                f"{path} has manifest version {version}, this tool writes {MANIFEST_VERSION}; "
                f"pass --force to redo everything"
            )
        if old_fingerprint != fingerprint:
            raise ManifestError(
                f"{out_dir} holds results of another bag ({data['input'].get('path')}, "
                f"fingerprint {old_fingerprint}; this bag: {fingerprint}); use another "
                f"--output directory or pass --force to redo everything"
            )
        changed = {
            k: (old_settings.get(k), v) for k, v in settings.items() if old_settings.get(k) != v
        }
        changed.update({k: (v, None) for k, v in old_settings.items() if k not in settings})
        if changed:
            detail = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise ManifestError(
                f"{out_dir} was scored with other settings ({detail}); use another --output "
                f"directory or pass --force to redo everything"
            )
        fresh.episodes = episodes
        return fresh

    def completed(self, index: int, instruction: str, start_log_ns: int) -> bool:
        """Is this episode recorded as done, with all its files still present?"""
        entry = self.episodes.get(index)
        if entry is None:
            return False
        if entry.get("instruction") != instruction or entry.get("start_log_ns") != start_log_ns:
            return False
        return all((self.path.parent / f).is_file() for f in entry.get("files", []))

    def record_episode(self, index: int, entry: dict[str, Any]) -> None:
        self.episodes[index] = entry
        self.failures = [f for f in self.failures if f.get("episode_index") != index]
        self.save()

    def record_failure(self, failure: dict[str, Any]) -> None:
        self.failures.append(failure)
        self.save()

    def record_empty(self, entry: dict[str, Any]) -> None:
        self.empty.append(entry)
        self.save()

    def save(self) -> None:
        write_json_atomic(self.path, {
            "version": MANIFEST_VERSION,
            "input": {"path": self.input_path, "fingerprint": self.fingerprint},
            "settings": self.settings,
            "episodes": {str(k): self.episodes[k] for k in sorted(self.episodes)},
            "failures": self.failures,
            "empty": self.empty,
        })
