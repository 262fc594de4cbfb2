"""One model replica: loads the VLM once and scores the episodes handed to it, one per call.

The replica runs the very same ``score_episode`` as the in-process engine
(``offline.engine``): the source's ``frames(spec)`` read where the replica
runs, the shared ``OfflineRunner``, and the ``EpisodeWriter``, so the
numbers and files cannot drift apart. What differs is where the files go:
the output directory lives with the driver (a replica may be on another
machine), so the replica writes the episode into a private scratch
directory and returns the file bytes with the manifest entry; the driver
writes them atomically into the real output directory and only then
records the episode.

An episode is the unit of work: a replica that dies takes with it only the
episode it was scoring. This module does not import Ray: ``engine.py`` wraps
the class with ``ray.remote`` at run time, and it can be exercised
in-process as well.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from topreward_ros.offline.engine import EpisodeExtra, OfflineSettings, ScoredFiles, score_episode
from topreward_ros.offline.source import EpisodeSource, EpisodeSpec, SourceReadError
from topreward_ros.scoring.backends.protocol import ScoringBackend


@dataclass
class ReplicaResult:
    """What a replica hands back for one episode.

    kind: "done" (``done`` holds the outcome, ``files`` the bytes of every
    file of a scored episode by path relative to the output directory),
    "read_error" (the source broke while the episode was read) or "failed"
    (scoring or writing raised; ``message`` says what).
    """

    kind: str
    done: ScoredFiles | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    message: str = ""


class ScorerReplica:
    """The body of one Ray actor: a loaded model scoring one episode per call."""

    def __init__(self, config: Any) -> None:
        from topreward_ros.scoring import load_scorer

        self.scorer: ScoringBackend = load_scorer(config)

    def info(self) -> dict[str, Any]:
        """Who this replica is (also the driver's liveness probe)."""
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "model_id": self.scorer.model_id,
            "device": str(getattr(self.scorer, "device", "")),
            "cpu_s": time.process_time(),
        }

    def score(
        self,
        source: EpisodeSource,
        spec: EpisodeSpec,
        settings: OfflineSettings,
        record: dict[str, Any],
        extra: EpisodeExtra | None = None,
    ) -> ReplicaResult:
        """Score ``spec`` of ``source``; its files as bytes (see ``ReplicaResult``)."""
        runner = settings.episode_runner(self.scorer, source.cameras)
        scratch = Path(tempfile.mkdtemp(prefix="topreward-replica-"))
        try:
            writer = settings.episode_writer(scratch, record, source.cameras)
            try:
                done = score_episode(runner, writer, spec, source.frames(spec), extra)
            except SourceReadError as exc:
                return ReplicaResult("read_error", message=str(exc))
            except Exception as exc:  # noqa: BLE001 - one episode's failure stops no other
                return ReplicaResult("failed", message=f"scoring or writing failed: {type(exc).__name__}: {exc}")
            files = {}
            if done.entry is not None:
                files = {rel: (scratch / rel).read_bytes() for rel in done.entry["files"]}
            return ReplicaResult("done", done, files)
        finally:
            runner.close()
            shutil.rmtree(scratch, ignore_errors=True)
