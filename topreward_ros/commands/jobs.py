"""Running planned inputs on the chosen engine, summarising them, and the exit code.

Shared by ``topreward bag``, ``lerobot`` and ``eval``: the commands build
their sources (``sources``) and jobs; this module loads the model (local
engine) or starts the replicas (``--ray``), runs every job, keeps
``runs.json`` current when there are several inputs, prints the summary and
maps the outcome to the exit code of ``commands.options``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from topreward_ros.commands.options import EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, EXIT_UNUSABLE, ray_options
from topreward_ros.offline.engine import EpisodeExtra, EpisodeHook, OfflineSettings
from topreward_ros.offline.fleet import FleetResult, InputJob, InputRun, write_summary


def run_jobs(
    prog: str,
    args: argparse.Namespace,
    jobs: Sequence[InputJob],
    settings: OfflineSettings,
    config: Any,
    single: bool,
    raw_inputs: Sequence[str],
    kind: str = "bag",
    episode_offset: int = 0,
    extra: EpisodeExtra | None = None,
    on_episode: EpisodeHook | None = None,
    on_replica_episode: Any = None,
) -> tuple[int, list[InputRun]]:
    """Score ``jobs`` into their output directories; (exit code, runs).

    ``on_replica_episode(job, spec, actor)``: with ``--ray``, called on the
    driver after each episode a replica scored is written. The commands take
    it from ``args.on_replica_episode`` when a program embedding them sets it
    (the tests kill a replica there); the command line never does.
    """

    def fail(message: str) -> tuple[int, list[InputRun]]:
        print(f"{prog}: {message}", file=sys.stderr)
        return EXIT_UNUSABLE, []

    try:
        ray = ray_options(args)
    except ValueError as exc:
        return fail(str(exc))
    if all(job.error is not None for job in jobs):
        for job in jobs:
            print(f"{prog}: {job.error}", file=sys.stderr)
        return fail(f"no usable {kind}" if not single else "nothing to score")
    out: Path = args.output

    def summarise(runs: list[InputRun], tables: bool) -> dict[str, Any]:
        if single:
            return {}
        return write_summary(out, runs, episode_offset, list(raw_inputs), tables=tables)

    finished: dict[int, InputRun] = {}

    def on_input_done(run: InputRun) -> None:
        # runs.json stays current while a long run goes on (tables at the end); inputs not
        # finished yet are listed as pending.
        finished[id(run.job)] = run
        if not single:
            summarise([finished.get(id(j)) or InputRun(j, started=False) for j in jobs], tables=False)

    try:
        with open_engine(config, ray, progress=not args.quiet, on_replica_episode=on_replica_episode) as engine:
            runs = engine.run(
                jobs, settings, force=args.force, extra=extra, on_episode=on_episode, on_input_done=on_input_done
            )
    except EngineStartError as exc:
        return fail(str(exc))
    result = FleetResult(runs, summarise(runs, tables=True), kind=kind)
    if single and runs and runs[0].status == "unusable":
        return fail(str(runs[0].error or runs[0].job.error))[0], runs
    print(result.text())
    if not single:
        combined = result.summary.get("combined", {})
        print(
            f"summary: {out / 'runs.json'}; combined table: {combined.get('rows', 0)} "
            f"rows of {combined.get('bags', 0)}/{len(runs)} {kind}s"
        )
    if result.interrupted:
        return EXIT_INTERRUPTED, runs
    if result.nothing_usable:
        return EXIT_UNUSABLE, runs
    return (EXIT_OK if result.ok else EXIT_PARTIAL), runs


class EngineStartError(RuntimeError):
    """No engine could start: the model does not load, Ray is missing, the cluster is too small."""


@contextmanager
def open_engine(config: Any, ray: Any, progress: bool = True, on_replica_episode: Any = None) -> Iterator[Any]:
    """The local engine (the model loaded here) or, with Ray options, a started ``RayEngine``.

    ``on_replica_episode`` is the Ray engine's hook (see ``run_jobs``); the
    local engine has no replica to call it for.
    """
    if ray is None:
        from topreward_ros.offline.fleet import LocalEngine
        from topreward_ros.scoring import ModelLoadError, load_scorer

        try:
            scorer = load_scorer(config)
        except ModelLoadError as exc:
            raise EngineStartError(str(exc)) from exc
        yield LocalEngine(scorer, progress=progress)
        return
    from topreward_ros.scale import RayUnavailableError
    from topreward_ros.scale.engine import RayEngine, ReplicaStartError

    try:
        engine = RayEngine(config, ray, progress=progress, on_replica_episode=on_replica_episode)
    except RayUnavailableError as exc:
        raise EngineStartError(str(exc)) from exc
    try:
        try:
            engine.start()
        except (ReplicaStartError, ConnectionError) as exc:
            raise EngineStartError(str(exc)) from exc
        yield engine
    finally:
        engine.close()


def input_job(name: str, path: Path, out_dir: Path, make_source: Callable[[], Any]) -> InputJob:
    """A job whose source is built and checked now, before any model loads."""
    from topreward_ros.bag.base import BagError
    from topreward_ros.offline.source import SourceError

    try:
        source = make_source()
        source.check()
    except (SourceError, BagError, ValueError) as exc:
        return InputJob(name, path, out_dir, None, str(exc))
    return InputJob(name, path, out_dir, source)
