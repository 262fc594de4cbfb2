"""The Ray driver of `topreward bag --ray`: replicas, bag queue, atomic writes, retries.

One long-lived actor per model replica (``replica.ScorerReplica``) loads the
model once; one GPU each where the cluster has GPUs (and the device is not
forced to the CPU), otherwise ``cpus_per_replica`` CPUs each. Bags are the
tasks: an idle replica gets the next bag and hands its episodes back one by
one. The driver alone touches the output directory: for each relayed episode
it writes the files atomically (temporary sibling + rename) and only then
enters the episode in the bag's ``manifest.json``, the same order the local
path follows, so the layout and manifest are the local path's.

What a failure costs:

* a replica dies (killed, out of memory, node lost): its bag goes back to
  the queue (up to ``retries`` times) with every episode already written
  marked done; Ray restarts the actor (loading the model again) up to
  ``retries`` times. A bag out of retries is reported incomplete and a
  re-run continues it;
* the driver dies: its actors die with it (they belong to its job); the
  output holds every episode written so far and a re-run resumes.

The bags must be readable under the same path on every node that runs a
replica (shared storage); the output directory only on the driver.
"""
from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from topreward_ros.bag.fleet import BagJob, BagRun
from topreward_ros.bag.manifest import Manifest, ManifestError, bag_fingerprint, write_atomic
from topreward_ros.bag.offline import BagRunReport, BagScorer, EpisodeOutcome, write_combined_tables
from topreward_ros.bag.reader import BagError
from topreward_ros.scale import import_ray
from topreward_ros.scale.replica import END, EPISODE, ERROR, FAILURE, ScorerReplica


class ReplicaStartError(RuntimeError):
    """No replica could be started (the model does not load, or the cluster is too small)."""


@dataclass(frozen=True)
class RayOptions:
    """Where the cluster is and how the replicas are shaped.

    address: None joins the cluster ``RAY_ADDRESS`` names or the one running
        on this machine, else starts a Ray instance for this run; "auto"
        joins a running cluster only; "local" always starts a new instance;
        anything else is a cluster address (``HOST:6379``, ``ray://HOST:10001``).
    replicas: model replicas (actors); None: one per GPU of the cluster, or 1
        without GPUs.
    cpus_per_replica: CPUs reserved per replica (torch uses that many threads
        unless --torch-threads says otherwise).
    gpus_per_replica: None: 1 where the cluster has GPUs and the device is
        not "cpu", else 0.
    retries: times a bag whose replica died is handed out again in this run
        (also the actor restarts Ray may make).
    """

    address: str | None = None
    replicas: int | None = None
    cpus_per_replica: float = 1.0
    gpus_per_replica: float | None = None
    retries: int = 1

    def __post_init__(self) -> None:
        if self.replicas is not None and self.replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {self.replicas!r}")
        if not self.cpus_per_replica > 0:
            raise ValueError(f"cpus_per_replica must be > 0, got {self.cpus_per_replica!r}")
        if self.gpus_per_replica is not None and self.gpus_per_replica < 0:
            raise ValueError(f"gpus_per_replica must be >= 0, got {self.gpus_per_replica!r}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries!r}")


@dataclass
class _Task:
    """A bag in the queue or in progress, with the driver's manifest of it."""

    job: BagJob
    manifest: Manifest | None = None
    attempts: int = 0
    written: list[EpisodeOutcome] = field(default_factory=list)


EpisodeHook = Callable[[BagJob, int, Any], None]


class RayEngine:
    """Runs a plan of bags on Ray replicas and writes their outputs (see the module doc)."""

    def __init__(self, config: Any, settings: Any, options: RayOptions,
                 progress: bool = True) -> None:
        self.config = config
        self.settings = settings
        self.options = options
        self.progress = progress
        self.ray = import_ray()
        self._started_ray = False
        self.actors: list[Any] = []
        self.replica_info: list[dict[str, Any]] = []
        self.model_id = ""

    # -- cluster and replicas ------------------------------------------------------------
    def start(self) -> None:
        ray = self.ray
        if not ray.is_initialized():
            if self.options.address in (None, "local"):
                # Should this start a Ray instance for this run only, its workers would
                # otherwise run at nice 15 and yield the CPU to everything else on a busy
                # workstation (no effect when an existing cluster is joined).
                os.environ.setdefault("RAY_worker_niceness", "0")
            ray.init(address=self.options.address, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
            self._started_ray = True
        resources = ray.cluster_resources()
        cluster_gpus = float(resources.get("GPU", 0))
        cluster_cpus = float(resources.get("CPU", 0))
        gpus = self.options.gpus_per_replica
        if gpus is None:
            gpus = 1.0 if cluster_gpus >= 1 and self.config.device != "cpu" else 0.0
        replicas = self.options.replicas or (int(cluster_gpus // gpus) if gpus else 1) or 1
        cpus = self.options.cpus_per_replica
        if replicas * cpus > cluster_cpus or replicas * gpus > cluster_gpus:
            raise ReplicaStartError(
                f"{replicas} replicas x ({cpus:g} CPU, {gpus:g} GPU) do not fit the cluster "
                f"({cluster_cpus:g} CPUs, {cluster_gpus:g} GPUs); lower --replicas or "
                f"--cpus-per-replica"
            )
        actor_class = ray.remote(ScorerReplica).options(
            num_cpus=cpus, num_gpus=gpus, max_restarts=self.options.retries,
            max_task_retries=0)
        self.actors = [actor_class.remote(self.config, self.settings) for _ in range(replicas)]
        errors = []
        alive = []
        for actor in self.actors:
            try:
                self.replica_info.append(ray.get(actor.info.remote()))
                alive.append(actor)
            except ray.exceptions.RayError as exc:
                errors.append(_cause(exc))
        self.actors = alive
        if not alive:
            raise ReplicaStartError(f"no model replica started: {errors[0]}")
        self.model_id = self.replica_info[0]["model_id"]
        self._log(f"ray: {len(alive)} replica(s) of {self.model_id} "
                  f"({cpus:g} CPU, {gpus:g} GPU each)"
                  + (f"; {len(errors)} failed to start: {errors[0]}" if errors else ""))

    def close(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors = []
        if self._started_ray:
            self.ray.shutdown()
            self._started_ray = False

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the run -------------------------------------------------------------------------
    def run(self, jobs: Sequence[BagJob], force: bool = False,
            on_episode: EpisodeHook | None = None,
            on_bag_done: Callable[[BagRun], None] | None = None) -> list[BagRun]:
        """Score every job; returns one ``BagRun`` per job, in job order."""
        ray = self.ray
        results: dict[int, BagRun] = {}
        pending: deque[tuple[int, _Task]] = deque()
        for position, job in enumerate(jobs):
            if job.error is not None:
                results[position] = BagRun(job, error=job.error)
            else:
                pending.append((position, _Task(job)))
        idle = list(self.actors)
        inflight: dict[Any, tuple[str, Any, int, _Task | None]] = {}

        def finish(position: int, run: BagRun) -> None:
            results[position] = run
            self._log(f"ray: bag {run.job.bag.name}: {run.status}")
            if on_bag_done is not None:
                on_bag_done(run)

        try:
            while pending or inflight:
                while idle and pending:
                    position, task = pending.popleft()
                    actor = idle.pop(0)
                    try:
                        self._begin(task, force)
                    except (ManifestError, BagError, OSError) as exc:
                        idle.append(actor)
                        finish(position, BagRun(task.job, error=str(exc)))
                        continue
                    done = {i: (e["instruction"], e["start_log_ns"])
                            for i, e in task.manifest.episodes.items()
                            if task.manifest.completed(i, e["instruction"], e["start_log_ns"])}
                    actor.start.remote(str(task.job.bag.path), task.job.options, done)
                    inflight[actor.next.remote()] = ("item", actor, position, task)
                if not inflight:
                    break
                ready, _ = ray.wait(list(inflight), num_returns=1)
                kind, actor, position, task = inflight.pop(ready[0])
                try:
                    value = ray.get(ready[0])
                except ray.exceptions.RayActorError as exc:
                    if kind == "probe":
                        self.actors = [a for a in self.actors if a is not actor]
                    else:
                        assert task is not None
                        task.attempts += 1
                        reason = f"the replica scoring it died: {_cause(exc)}"
                        if task.attempts <= self.options.retries:
                            self._log(f"ray: bag {task.job.bag.name}: {reason}; handing it out "
                                      f"again")
                            pending.appendleft((position, task))
                        else:
                            finish(position, self._partial(task, reason))
                        # Alive again once Ray restarted it (retried while it restarts),
                        # an error if it is dead for good.
                        probe = actor.info.options(max_task_retries=-1).remote()
                        inflight[probe] = ("probe", actor, -1, None)
                    if not self.actors and pending:
                        while pending:
                            position, task = pending.popleft()
                            finish(position, self._partial(task, "no model replica left"))
                    continue
                except ray.exceptions.RayError as exc:
                    # The replica is alive but a call failed: this bag is lost for this run.
                    if task is not None:
                        idle.append(actor)
                        finish(position, self._partial(task, f"replica error: {_cause(exc)}"))
                    continue
                if kind == "probe":
                    idle.append(actor)
                    continue
                assert task is not None
                item_kind, payload = value
                if item_kind == EPISODE:
                    index, entry, files = payload
                    self._write_episode(task, index, entry, files)
                    if on_episode is not None:
                        on_episode(task.job, index, actor)
                    inflight[actor.next.remote()] = ("item", actor, position, task)
                elif item_kind == FAILURE:
                    assert task.manifest is not None
                    task.manifest.record_failure(payload)
                    inflight[actor.next.remote()] = ("item", actor, position, task)
                elif item_kind == END:
                    report: BagRunReport = payload
                    report.output = str(task.job.out_dir)
                    assert task.manifest is not None
                    write_combined_tables(task.manifest, task.job.out_dir)
                    idle.append(actor)
                    finish(position, BagRun(task.job, report))
                elif item_kind == ERROR:
                    idle.append(actor)
                    finish(position, self._partial(task, str(payload)) if task.written
                           else BagRun(task.job, error=str(payload)))
        except KeyboardInterrupt:
            for _, _, position, task in inflight.values():
                if task is not None and position not in results:
                    run = self._partial(task, "interrupted")
                    assert run.report is not None
                    run.report.interrupted = True
                    results[position] = run
            for position, task in pending:
                results[position] = BagRun(task.job, started=False)
        for position, job in enumerate(jobs):
            results.setdefault(position, BagRun(job, started=False))
        return [results[i] for i in range(len(jobs))]

    def _begin(self, task: _Task, force: bool) -> None:
        """Open the bag's manifest on the first attempt, exactly as the local path does."""
        if task.manifest is not None:
            return
        job = task.job
        assert job.options is not None
        record = BagScorer(SimpleNamespace(model_id=self.model_id), self.settings,
                           job.options).settings_record()
        job.out_dir.mkdir(parents=True, exist_ok=True)
        task.manifest = Manifest.open(job.out_dir, job.bag.path, bag_fingerprint(job.bag.path),
                                      record, force=force)

    def _write_episode(self, task: _Task, index: int, entry: dict[str, Any],
                       files: dict[str, bytes]) -> None:
        assert task.manifest is not None
        root = task.job.out_dir
        for rel, data in files.items():
            write_atomic(root / rel, lambda f, data=data: f.write(data))
        task.manifest.record_episode(index, entry)
        directory = str(Path(entry["files"][0]).parent) if entry.get("files") else ""
        task.written.append(EpisodeOutcome(
            index, entry.get("instruction", ""), "scored", directory=directory,
            num_frames=entry.get("num_frames", 0), num_samples=entry.get("num_samples", 0),
            num_ticks=entry.get("num_ticks", 0)))

    def _partial(self, task: _Task, reason: str) -> BagRun:
        """A bag left unfinished: what was written is kept, the rest waits for a re-run."""
        report = BagRunReport(str(task.job.bag.path), str(task.job.out_dir),
                              episodes=list(task.written))
        report.notes.append(f"{reason}; {len(task.written)} episode(s) written in this run, "
                            f"re-run to continue")
        if task.manifest is not None:
            write_combined_tables(task.manifest, task.job.out_dir)
        return BagRun(task.job, report, error=reason)

    def _log(self, message: str) -> None:
        if self.progress:
            print(message, file=sys.stderr, flush=True)


def _cause(exc: BaseException) -> str:
    """The root error of a Ray failure, in one line."""
    cause = getattr(exc, "cause", None) or exc.__cause__ or exc
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}"
