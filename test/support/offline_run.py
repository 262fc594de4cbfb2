"""Running the offline engine on one bag or dataset from a test, with flat keyword options.

The tests name options as the command line does, all in one place
(``camera_topics=..., tick_rate_hz=..., plot=False``); this splits them
into the source, runner and output options and runs the real in-process
engine (``offline.engine.run_local``).
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from topreward_ros.episode.records import EpisodeSettings
from topreward_ros.offline.engine import OfflineSettings, run_local
from topreward_ros.offline.outputs import OutputOptions
from topreward_ros.offline.report import RunReport
from topreward_ros.offline.runner import RunnerOptions
from topreward_ros.scoring import ScorerConfig, load_scorer
from topreward_ros.sources.bag import BagSource, BagSourceOptions
from topreward_ros.sources.lerobot import DatasetSource, DatasetSourceOptions


def tiny_scorer(model_dir: Path, view_size: int, torch_threads: int = 2, **config: Any) -> Any:
    """The tiny model loaded as the offline tests score with it: CPU, float32, no hub.

    ``config`` holds further ``ScorerConfig`` fields (e.g. ``num_prefixes``).
    """
    return load_scorer(
        ScorerConfig(
            model=str(model_dir),
            device="cpu",
            dtype="float32",
            local_files_only=True,
            view_size=view_size,
            torch_threads=torch_threads,
            **config,
        )
    )


def bag_options(camera: str, **kw: Any) -> dict[str, Any]:
    """Options of a one-camera bag run, the timer at 2 Hz and no plots unless ``kw`` says otherwise."""
    return {"camera_topics": (camera,), "tick_rate_hz": 2.0, "plot": False, **kw}


def _split(kw: dict[str, Any], source_type: type) -> tuple[dict[str, Any], OfflineSettings, Any]:
    kw = dict(kw)
    parts = []
    for cls in (source_type, RunnerOptions, OutputOptions):
        names = {f.name for f in fields(cls)}
        parts.append(cls(**{k: kw.pop(k) for k in list(kw) if k in names}))
    max_episodes = kw.pop("max_episodes", None)
    if kw:
        raise TypeError(f"unknown options {sorted(kw)}")
    return kw, parts[0], (parts[1], parts[2], max_episodes)


def offline_settings(
    settings: EpisodeSettings, runner: RunnerOptions, outputs: OutputOptions, max_episodes: int | None
) -> OfflineSettings:
    return OfflineSettings(episode=settings, runner=runner, outputs=outputs, max_episodes=max_episodes)


def _score(
    source: type,
    options_type: type,
    scorer: Any,
    settings: EpisodeSettings,
    options: dict[str, Any],
    path: Path,
    out: Path,
    force: bool = False,
    progress: bool = False,
) -> RunReport:
    _, source_options, rest = _split(options, options_type)
    return run_local(
        scorer,
        offline_settings(settings, *rest),
        source(path, source_options),
        Path(out),
        force=force,
        progress=progress,
    )


def score_bag(
    scorer: Any, settings: EpisodeSettings, options: dict[str, Any], bag: Path, out: Path, **kw: Any
) -> RunReport:
    """Score the bag at ``bag`` into ``out`` as ``topreward bag`` does, in this process."""
    return _score(BagSource, BagSourceOptions, scorer, settings, options, bag, out, **kw)


def score_dataset(
    scorer: Any, settings: EpisodeSettings, options: dict[str, Any], root: Path, out: Path, **kw: Any
) -> RunReport:
    """Score the LeRobot dataset at ``root`` into ``out`` as ``topreward lerobot`` does, in this process."""
    return _score(DatasetSource, DatasetSourceOptions, scorer, settings, options, root, out, **kw)
