"""One model replica: loads the VLM once and scores bags handed to it, episode by episode.

The replica runs the very same ``BagScorer`` as the local path, so the
numbers cannot drift apart. What differs is where results go: the output
directory lives with the driver (a replica may be on another machine), so
the replica writes each episode into a private scratch directory and, at the
moment the local path would enter the episode in ``manifest.json``, reads the
files back and hands them with their manifest entry to the driver, which
writes them into the real output directory. Episodes the driver already has
(from an earlier run or an earlier attempt) are passed in and skipped exactly
as a local re-run skips them.

Hand-over is pull-based: the replica's scoring thread blocks after each
finished episode until the driver takes it (``next``). A replica that dies
therefore takes with it at most the episode it was scoring and one finished
one the driver had not pulled yet; everything pulled is on disk.

This module does not import Ray: ``engine.py`` wraps the class with
``ray.remote`` at run time, and it can be exercised in-process as well.
"""
from __future__ import annotations

import os
import queue
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from topreward_ros.bag.manifest import MANIFEST_NAME, Manifest
from topreward_ros.bag.offline import BagScorer, BagScoringOptions

# Items a replica hands to the driver, as (kind, payload) tuples:
EPISODE = "episode"  # (index, manifest entry, {relative path: file bytes})
FAILURE = "failure"  # manifest failure record
END = "end"  # the BagRunReport of the finished walk
ERROR = "error"  # the bag could not be scored at all: message


@dataclass
class RelayManifest(Manifest):
    """A manifest that relays what it is told to record instead of saving it."""

    done: dict[int, tuple[str, int]] = field(default_factory=dict)
    relay: Any = None  # queue.Queue of items for the driver

    def completed(self, index: int, instruction: str, start_log_ns: int) -> bool:
        return self.done.get(index) == (instruction, start_log_ns)

    def record_episode(self, index: int, entry: dict[str, Any]) -> None:
        root = self.path.parent
        files = {}
        for rel in entry.get("files", []):
            path = root / rel
            files[rel] = path.read_bytes()
            path.unlink()
        self.relay.put((EPISODE, (index, entry, files)))

    def record_failure(self, failure: dict[str, Any]) -> None:
        self.relay.put((FAILURE, failure))

    def save(self) -> None:
        """The driver saves the real manifest."""


class RelayBagScorer(BagScorer):
    """``BagScorer`` whose manifest relays episodes to the driver."""

    def __init__(self, scorer: Any, settings: Any, options: BagScoringOptions,
                 done: dict[int, tuple[str, int]], relay: queue.Queue[Any]) -> None:
        super().__init__(scorer, settings, options)
        self._done = done
        self._relay = relay

    def open_manifest(self, out_dir: Path, bag_path: Path, force: bool) -> Manifest:
        return RelayManifest(out_dir / MANIFEST_NAME, str(bag_path), "", {},
                             done=self._done, relay=self._relay)


class ScorerReplica:
    """The body of one Ray actor: a loaded model and at most one bag in progress."""

    def __init__(self, config: Any, settings: Any) -> None:
        from topreward_ros.scoring import load_scorer

        self.scorer = load_scorer(config)
        self.settings = settings
        self._queue: queue.Queue[Any] | None = None
        self._thread: threading.Thread | None = None

    def info(self) -> dict[str, Any]:
        """Who this replica is (also the driver's liveness probe)."""
        return {"pid": os.getpid(), "host": socket.gethostname(),
                "model_id": self.scorer.model_id, "device": str(getattr(self.scorer, "device", "")),
                "cpu_s": time.process_time()}

    def start(self, bag_path: str, options: BagScoringOptions,
              done: dict[int, tuple[str, int]]) -> None:
        """Begin scoring ``bag_path`` in a thread; results come out of ``next``."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("this replica is already scoring a bag")
        relay: queue.Queue[Any] = queue.Queue(maxsize=1)
        scorer = RelayBagScorer(self.scorer, self.settings, options,
                                {int(k): (v[0], int(v[1])) for k, v in done.items()}, relay)

        def work() -> None:
            scratch = Path(tempfile.mkdtemp(prefix="topreward-replica-"))
            try:
                report = scorer.run(Path(bag_path), scratch, progress=False)
                relay.put((END, report))
            except Exception as exc:  # noqa: BLE001 - reported to the driver, which decides
                relay.put((ERROR, f"{type(exc).__name__}: {exc}"))
            finally:
                shutil.rmtree(scratch, ignore_errors=True)

        self._queue = relay
        self._thread = threading.Thread(target=work, name="topreward-bag", daemon=True)
        self._thread.start()

    def next(self) -> tuple[str, Any]:
        """The next item of the bag in progress (blocks until there is one)."""
        if self._queue is None:
            raise RuntimeError("no bag in progress on this replica")
        kind, payload = self._queue.get()
        if kind in (END, ERROR):
            assert self._thread is not None
            self._thread.join()
            self._queue = self._thread = None
        return kind, payload
