"""Which scored episodes to train on: the success verdict, as LeRobot's ``--dataset.episodes`` takes it.

RA-BC weights frames by the change of ``progress_sparse``, which is min-max
normalised per episode, so a failed episode looks like a success to it.
Failed episodes are left out of training by listing the episodes to train
on (``lerobot-train --dataset.episodes=[0,2,5]``), never by removing their
rows from the progress parquet: LeRobot's ``RABCWeights`` gives a frame
without a progress value its ``fallback_weight``, 1.0, its largest weight.

The verdict is the one ``topreward lerobot`` (and ``bag``) gave: the
episode's success score (mean raw log p(" True") of the last
``success_window`` prefixes of its offline curve) above the threshold. A
threshold (and window) other than the run's, e.g. from ``calibrated.yaml``,
recomputes it from the recorded per-prefix scores without the model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


class SelectionError(ValueError):
    """The output directory holds no scored episodes to choose from."""


@dataclass
class EpisodeVerdict:
    episode_index: int
    success_score: float
    success: bool


@dataclass
class Selection:
    threshold: float
    success_window: int
    verdicts: list[EpisodeVerdict] = field(default_factory=list)

    @property
    def train(self) -> list[int]:
        return [v.episode_index for v in self.verdicts if v.success]

    @property
    def excluded(self) -> list[int]:
        return [v.episode_index for v in self.verdicts if not v.success]

    def episodes_argument(self) -> str:
        """The value of ``--dataset.episodes``: ``[0,2,5]``."""
        return "[" + ",".join(str(i) for i in self.train) + "]"


def _curve_path(out_dir: Path, entry: dict[str, Any]) -> Path | None:
    for name in entry.get("files", []):
        if str(name).endswith("curve.json"):
            return out_dir / name
    return None


def select_episodes(out_dir: Path, threshold: float | None = None, success_window: int | None = None) -> Selection:
    """The verdict of every scored episode in ``out_dir`` (a ``topreward lerobot`` / ``bag`` output).

    ``threshold`` / ``success_window``: None keeps the run's own.
    """
    out_dir = Path(out_dir)
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text())
    except OSError as exc:
        raise SelectionError(
            f"{out_dir} holds no {MANIFEST}: give the output directory of topreward lerobot or bag ({exc})"
        ) from exc
    settings = manifest.get("settings", {})
    run_threshold = float(settings["success_threshold"])
    run_window = int(settings["success_window"])
    threshold = run_threshold if threshold is None else float(threshold)
    window = run_window if success_window is None else int(success_window)
    if not math.isfinite(threshold):
        raise SelectionError(f"the success threshold must be a finite number, got {threshold}")
    if window < 1:
        raise SelectionError(f"the success window must be >= 1, got {window}")
    selection = Selection(threshold, window)
    for key, entry in sorted(manifest.get("episodes", {}).items(), key=lambda kv: int(kv[0])):
        path = _curve_path(out_dir, entry)
        if path is None or not path.is_file():
            raise SelectionError(f"episode {key} of {out_dir}: its curve.json is missing; re-run the scoring")
        curve = json.loads(path.read_text())
        raw = curve["offline"]["log_prob_true"]
        score = (
            float(curve["offline"]["success_score"])
            if window == run_window
            else sum(raw[-window:]) / len(raw[-window:])
        )
        selection.verdicts.append(EpisodeVerdict(int(curve["episode_index"]), score, score > threshold))
    if not selection.verdicts:
        raise SelectionError(f"{out_dir} holds no scored episode")
    return selection
