"""The Ray engine of `--ray`: replicas, one episode per task, atomic writes, retries.

One long-lived actor per model replica (``replica.ScorerReplica``) loads the
model once; one GPU each where the cluster has GPUs (and the device is not
forced to the CPU), otherwise ``cpus_per_replica`` CPUs each. Episodes are
the tasks: the driver plans every input (``EpisodeSource.plan``: a bag's
instruction, reset and primary camera topics, nothing decoded; a dataset's
tables), skips the episodes an
earlier run finished, and hands the others to idle replicas in input order,
so one dataset or one long bag uses every replica. A replica reads its
episode itself (``frames(spec)``: a bag by its log-time range) and hands
back the episode's files; the driver alone touches the output directories:
it writes each file atomically and only then enters the episode in the
input's ``manifest.json`` (``offline.engine.SourceOutput``, the local
engine's own bookkeeping), so the layout and manifest are the local
engine's.

What a failure costs:

* a replica dies (killed, out of memory, node lost): Ray restarts it
  (loading the model again) and runs its episode again, up to ``retries``
  times; past that the episode is left for a re-run, the input is reported
  incomplete, and a replica that is gone for good is dropped;
* the driver dies: its actors die with it (they belong to its job); the
  output holds every episode written so far and a re-run resumes.

The inputs must be readable under the same path on every node that runs a
replica (shared storage); the output directories only on the driver.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from topreward_ros.files.atomic import write_atomic
from topreward_ros.offline.engine import EpisodeExtra, EpisodeHook, OfflineSettings, SourceOutput
from topreward_ros.offline.fleet import InputJob, InputRun
from topreward_ros.offline.manifest import ManifestError
from topreward_ros.offline.source import EpisodeSpec, SourceError, SourceNotes
from topreward_ros.scale import import_ray
from topreward_ros.scale.replica import ReplicaResult, ScorerReplica


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
    retries: times Ray restarts a replica that died and runs its episode
        again in this run.
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
class _Input:
    """One input as the driver follows it: its output, plan notes and episodes in flight."""

    job: InputJob
    output: SourceOutput | None = None
    notes: SourceNotes | None = None
    source_ref: Any = None
    pending: int = 0  # episodes queued or in flight
    lost_reason: str | None = None
    run: InputRun | None = None
    reported: bool = False

    def lost(self, spec: EpisodeSpec, reason: str) -> None:
        """An episode not scored in this run (a re-run does it): the input is incomplete."""
        self.pending -= 1
        self.lost_reason = self.lost_reason or reason


#: Called on the driver after each episode a replica scored was written: (job, spec, actor).
ReplicaHook = Callable[[InputJob, EpisodeSpec, Any], None]


def auth_hint(address: str | None) -> str:
    """What to set when joining a running cluster failed and token authentication may be why."""
    if address == "local" or os.environ.get("RAY_AUTH_MODE"):
        return ""
    return (
        "; if the cluster was started with `ray start` (Ray 2.60 and later turn token authentication on, "
        "and a driver without it is refused: InvalidAuthToken), set RAY_AUTH_MODE=token in this shell; "
        "the token is read from ~/.ray/auth_token on the machine that ran `ray start`, elsewhere give it "
        "in RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH"
    )


class RayEngine:
    """Runs the episodes of many inputs on Ray replicas and writes their outputs (see the module doc)."""

    def __init__(
        self, config: Any, options: RayOptions, progress: bool = True, on_replica_episode: ReplicaHook | None = None
    ) -> None:
        self.config = config
        self.options = options
        self.progress = progress
        self.on_replica_episode = on_replica_episode
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
            try:
                ray.init(
                    address=self.options.address, include_dashboard=False, log_to_driver=False, configure_logging=False
                )
            except ConnectionError as exc:
                raise ConnectionError(f"{exc}{auth_hint(self.options.address)}") from exc
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
            num_cpus=cpus, num_gpus=gpus, max_restarts=self.options.retries, max_task_retries=self.options.retries
        )
        self.actors = [actor_class.remote(self.config) for _ in range(replicas)]
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
        self._log(
            f"ray: {len(alive)} replica(s) of {self.model_id} "
            f"({cpus:g} CPU, {gpus:g} GPU each)" + (f"; {len(errors)} failed to start: {errors[0]}" if errors else "")
        )

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
    def run(
        self,
        jobs: Sequence[InputJob],
        settings: OfflineSettings,
        force: bool = False,
        extra: EpisodeExtra | None = None,
        on_episode: EpisodeHook | None = None,
        on_input_done: Callable[[InputRun], None] | None = None,
    ) -> list[InputRun]:
        """Score every job's episodes on the replicas; one ``InputRun`` per job, in job order."""
        ray = self.ray
        inputs: list[_Input] = []
        queue: deque[tuple[_Input, EpisodeSpec]] = deque()
        for job in jobs:
            item = _Input(job)
            inputs.append(item)
            if job.error is not None:
                item.run = InputRun(job, error=job.error)
                continue
            try:
                self._plan(item, settings, force, queue)
            except (SourceError, ManifestError, OSError) as exc:
                item.run = InputRun(job, error=str(exc))
        for item in inputs:
            self._maybe_close(item, on_input_done)
        idle = list(self.actors)
        inflight: dict[Any, tuple[str, Any, _Input | None, EpisodeSpec | None]] = {}
        try:
            while queue or inflight:
                while idle and queue:
                    item, spec = queue.popleft()
                    actor = idle.pop(0)
                    assert item.output is not None
                    ref = actor.score.remote(item.source_ref, spec, settings, item.output.record, extra)
                    inflight[ref] = ("episode", actor, item, spec)
                if not inflight:
                    break
                ready, _ = ray.wait(list(inflight), num_returns=1)
                kind, actor, item, spec = inflight.pop(ready[0])
                try:
                    value = ray.get(ready[0])
                except ray.exceptions.RayActorError as exc:
                    if kind == "probe":
                        self.actors = [a for a in self.actors if a is not actor]
                    else:
                        assert item is not None and spec is not None
                        item.lost(spec, f"the replica scoring episode {spec.index} died: {_cause(exc)}")
                        self._log(f"ray: {item.job.name}: {item.lost_reason}")
                        # Alive again once Ray restarted it (waited for while it restarts),
                        # an error if it is gone for good.
                        probe = actor.info.options(max_task_retries=-1).remote()
                        inflight[probe] = ("probe", actor, None, None)
                        self._maybe_close(item, on_input_done)
                    if not self.actors:
                        while queue:
                            item, spec = queue.popleft()
                            item.lost(spec, "no model replica left")
                        for other in inputs:
                            self._maybe_close(other, on_input_done)
                    continue
                except ray.exceptions.RayError as exc:
                    # The replica is alive but the call failed: this episode is lost for this run.
                    idle.append(actor)
                    if item is not None and spec is not None:
                        item.lost(spec, f"replica error: {_cause(exc)}")
                        self._maybe_close(item, on_input_done)
                    continue
                idle.append(actor)
                if kind == "probe":
                    continue
                assert item is not None and spec is not None
                self._finished(item, spec, value, on_episode)
                if self.on_replica_episode is not None:
                    self.on_replica_episode(item.job, spec, actor)
                self._maybe_close(item, on_input_done)
        except KeyboardInterrupt:
            for item in inputs:
                if item.run is None and item.output is not None:
                    item.output.report.interrupted = True
                    item.pending = 0
                    self._maybe_close(item, on_input_done)
        runs = []
        for item in inputs:
            runs.append(item.run if item.run is not None else InputRun(item.job, started=False))
        return runs

    def _plan(
        self, item: _Input, settings: OfflineSettings, force: bool, queue: deque[tuple[_Input, EpisodeSpec]]
    ) -> None:
        """Open the input's output directory and queue its episodes not done yet."""
        job = item.job
        assert job.source is not None
        output = SourceOutput(job.source, job.out_dir, self.model_id, settings, force=force)
        item.output = output
        specs, item.notes = job.source.plan()
        item.source_ref = self.ray.put(job.source)
        budget = settings.max_episodes
        for spec in specs:
            if output.done(spec):
                output.skipped(spec, spec.num_frames or 0)
            elif budget is not None and budget <= 0:
                output.report.stopped_early = True
                break
            elif spec.error is not None:
                output.failed(spec, spec.error)
            else:
                queue.append((item, spec))
                item.pending += 1
                if budget is not None:
                    budget -= 1

    def _finished(self, item: _Input, spec: EpisodeSpec, value: ReplicaResult, on_episode: EpisodeHook | None) -> None:
        output = item.output
        assert output is not None
        item.pending -= 1
        if value.kind == "read_error":
            output.report.read_error = output.report.read_error or value.message
            kind = item.job.source.kind if item.job.source is not None else "input"
            output.failed(spec, f"{kind} unreadable before the episode ended: {value.message}")
            return
        if value.kind == "failed":
            output.failed(spec, value.message)
            return
        done = value.done
        assert done is not None
        for rel, data in value.files.items():
            write_atomic(output.out_dir / rel, lambda f, data=data: f.write(data))
        output.finished(done, on_episode)
        self._log(f"ray: {item.job.name}: episode {spec.index} {done.status}")

    def _maybe_close(self, item: _Input, on_input_done: Callable[[InputRun], None] | None) -> None:
        """Once nothing of the input is queued or in flight: its manifest, tables and record."""
        if item.run is not None or item.output is None or item.pending > 0:
            if item.run is not None and not item.reported and on_input_done is not None:
                item.reported = True
                on_input_done(item.run)
            return
        report = item.output.close(item.notes)
        report.episodes.sort(key=lambda e: e.index)
        if item.lost_reason:
            report.notes.append(
                f"{item.lost_reason}; {len(report.by_status('scored'))} episode(s) "
                f"written in this run, re-run to continue"
            )
        item.run = InputRun(item.job, report, error=item.lost_reason)
        self._log(f"ray: {item.job.name}: {item.run.status}")
        if on_input_done is not None:
            item.reported = True
            on_input_done(item.run)

    def _log(self, message: str) -> None:
        if self.progress:
            print(message, file=sys.stderr, flush=True)


def _cause(exc: BaseException) -> str:
    """The root error of a Ray failure, in one line."""
    cause = getattr(exc, "cause", None) or exc.__cause__ or exc
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}"
