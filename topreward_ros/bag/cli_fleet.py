"""`topreward bag` with many bags or ``--ray``: options, engine choice, summary, exit code.

Called by ``bag.cli.run_bag`` when the inputs are not a single bag or when
``--ray`` is given. The default engine runs in this process (no Ray import);
``--ray`` hands the same plan to ``topreward_ros.scale``. Both write each
bag's results exactly as a one-bag run does and, for several inputs, the
fleet summary (``runs.json``, combined tables; see ``bag.fleet``).

Exit codes as for one bag: 0 every bag done; 1 finished, but some bag or
episode failed, was left incomplete, or could not be used; 2 nothing could
start (bad option, no usable bag, model not loadable, Ray missing or the
cluster too small); 130 interrupted.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from topreward_ros.bag.cli import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_UNUSABLE,
    apply_params_file,
    bag_options,
    episode_settings,
    scorer_config,
)
from topreward_ros.bag.fleet import BagRun, FleetResult, plan_jobs, run_local, write_summary
from topreward_ros.bag.inputs import InputSet


def _fail(message: str) -> int:
    print(f"topreward bag: {message}", file=sys.stderr)
    return EXIT_UNUSABLE


def run_fleet(args: argparse.Namespace, inputs: InputSet, on_episode: Any = None) -> int:
    """Score every bag of ``inputs`` into ``args.output``; returns the exit code."""
    try:
        apply_params_file(args)  # idempotent: options already resolved stay as they are
        bag_options(args, ("/camera",))  # option errors before touching any bag
        settings = episode_settings(args)
        config = scorer_config(args)
        ray_options = None
        if args.ray is not None:
            from topreward_ros.scale.engine import RayOptions

            ray_options = RayOptions(address=args.ray or None, replicas=args.replicas,
                                     cpus_per_replica=args.cpus_per_replica,
                                     gpus_per_replica=args.gpus_per_replica,
                                     retries=args.retries)
    except ValueError as exc:
        return _fail(str(exc))
    jobs = plan_jobs(inputs, args.output, args.cameras, lambda cams: bag_options(args, cams))
    for dup in inputs.duplicates:
        print(f"topreward bag: note: {dup} is named more than once; scored once", file=sys.stderr)
    if all(job.error is not None for job in jobs):
        for job in jobs:
            print(f"topreward bag: {job.error}", file=sys.stderr)
        return _fail("no usable bag")
    raw_inputs = [str(a) for a in args.bag] + [f"@{f}" for f in (args.list or ())]

    def summarise(runs: list[Any], tables: bool) -> dict[str, Any]:
        if inputs.single:
            return {}
        return write_summary(args.output, runs, args.episode_offset, raw_inputs, tables=tables)

    finished: dict[int, Any] = {}

    def on_bag_done(run: Any) -> None:
        # runs.json stays current while a long run goes on (tables at the end); bags not
        # finished yet are listed as pending.
        finished[id(run.job)] = run
        if not inputs.single:
            summarise([finished.get(id(j)) or BagRun(j, started=False) for j in jobs],
                      tables=False)

    if ray_options is None:
        from topreward_ros.scoring import ModelLoadError, load_scorer

        try:
            scorer = load_scorer(config)
        except ModelLoadError as exc:
            return _fail(str(exc))
        runs = run_local(scorer, settings, jobs, force=args.force, progress=not args.quiet,
                         on_bag_done=on_bag_done)
    else:
        from topreward_ros.scale import RayUnavailableError
        from topreward_ros.scale.engine import RayEngine, ReplicaStartError

        try:
            engine = RayEngine(config, settings, ray_options, progress=not args.quiet)
        except RayUnavailableError as exc:
            return _fail(str(exc))
        try:
            engine.start()
            runs = engine.run(jobs, force=args.force, on_episode=on_episode,
                              on_bag_done=on_bag_done)
        except (ReplicaStartError, ConnectionError) as exc:
            return _fail(str(exc))
        finally:
            engine.close()
    result = FleetResult(runs, summarise(runs, tables=True))
    print(result.text())
    if not inputs.single:
        combined = result.summary.get("combined", {})
        print(f"summary: {args.output / 'runs.json'}; combined table: {combined.get('rows', 0)} "
              f"rows of {combined.get('bags', 0)}/{len(runs)} bags")
    if result.interrupted:
        return EXIT_INTERRUPTED
    if result.nothing_usable:
        return EXIT_UNUSABLE
    return EXIT_OK if result.ok else EXIT_PARTIAL
