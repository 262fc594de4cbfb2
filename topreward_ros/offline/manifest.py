"""The per-output-directory manifest that makes offline runs resumable.

``manifest.json`` records each completed episode (with its files) only after
those files are in place (written atomically, ``topreward_ros.files.atomic``), so
the manifest never claims work that a crash could have lost. It also
records the input's fingerprint and the settings, so a re-run never
silently mixes results of different inputs or settings in one directory.
Every episode source (bags, LeRobot datasets, videos) is recorded the same
way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from topreward_ros.files.atomic import write_json_atomic

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


class ManifestError(RuntimeError):
    """The output directory holds results that do not belong to this run."""


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
    # What `topreward relabel` last applied (kept as is by the scoring commands).
    relabel: dict[str, Any] | None = None

    @classmethod
    def open(
        cls, out_dir: Path, input_path: Path, fingerprint: str, settings: dict[str, Any], force: bool = False
    ) -> Manifest:
        """Load the directory's manifest, or start one; refuse a mismatching one.

        ``force`` discards a manifest of another input or other settings (the
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
            raise ManifestError(f"{path} is unreadable ({exc}); remove it or pass --force to redo everything") from exc
        if version != MANIFEST_VERSION:
            raise ManifestError(
                f"{path} has manifest version {version}, this tool writes {MANIFEST_VERSION}; "
                f"pass --force to redo everything"
            )
        if old_fingerprint != fingerprint:
            raise ManifestError(
                f"{out_dir} holds results of another input ({data['input'].get('path')}, "
                f"fingerprint {old_fingerprint}; this input: {fingerprint}); use another "
                f"--output directory or pass --force to redo everything"
            )
        changed = {k: (old_settings.get(k), v) for k, v in settings.items() if old_settings.get(k) != v}
        changed.update({k: (v, None) for k, v in old_settings.items() if k not in settings})
        if changed:
            detail = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise ManifestError(
                f"{out_dir} was scored with other settings ({detail}); use another --output "
                f"directory or pass --force to redo everything"
            )
        fresh.episodes = episodes
        fresh.relabel = data.get("relabel")
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
        write_json_atomic(
            self.path,
            {
                "version": MANIFEST_VERSION,
                "input": {"path": self.input_path, "fingerprint": self.fingerprint},
                "settings": self.settings,
                "episodes": {str(k): self.episodes[k] for k in sorted(self.episodes)},
                "failures": self.failures,
                "empty": self.empty,
                **({"relabel": self.relabel} if self.relabel is not None else {}),
            },
        )
