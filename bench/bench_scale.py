#!/usr/bin/env python3
"""Throughput of offline scoring: the local engine vs Ray with 1 and 2 replicas.

The same work is scored three ways on this machine, in one run, through the
real offline pipeline (episode source, shared ``OfflineRunner`` with live
ticks, offline curve, atomic writes, manifest):

* local: ``LocalEngine``, one process, the model loaded once, episodes one
  after another;
* Ray, 1 replica with the same single torch thread: the overhead of Ray
  (planning on the driver, the source handed to the replica, files shipped
  back and written by the driver);
* Ray, 2 replicas: what a second replica buys on this machine.

The work (``--source``):

* ``dataset`` (default): ONE LeRobot v3 dataset of ``--episodes`` episodes
  (one 320x240 AV1 camera at 15 fps, four episodes per file, as LeRobot
  packs them). This is the case the Ray engine was rebuilt for: it spreads
  the episodes of one input over the replicas, so one dataset uses them all;
* ``bags``: ``--episodes`` one-episode bags (one 320x240 JPEG camera at
  15 Hz), the fleet-of-recordings case measured before; each bag's episode
  is one task as well.

The model is a randomly initialised Qwen3-VL at "bench" dimensions (about
135 M parameters, real Qwen vocabulary and processor): large enough that the
model, not the plumbing, dominates each episode, small enough for two
replicas in memory. Model load and cluster start are timed separately and
excluded from the throughput. Each engine first scores a warm-up input of
the same kind (one episode per replica: first forwards pay one-off costs).
Rounds alternate the three engines so a change in the machine's load hits
all of them; the best round of each is reported, with the load average,
because the machine may be shared. CPU time counts what each engine really
costs: the local process; for Ray the driver, every replica and Ray's own
daemons.

Results go to bench/results/scale.md with the machine and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import describe_machine  # noqa: E402  (bench/ is the script's directory)
from workload import random_qwen3_vl  # noqa: E402

from topreward_ros.demo.scene import SceneSpec  # noqa: E402
from topreward_ros.demo.synthetic_bag import CameraSpec, write_episodes_bag  # noqa: E402
from topreward_ros.demo.synthetic_lerobot import DatasetCamera, write_lerobot_dataset  # noqa: E402
from topreward_ros.episode.records import EpisodeSettings  # noqa: E402
from topreward_ros.offline.engine import OfflineSettings  # noqa: E402
from topreward_ros.offline.fleet import InputJob, InputRun, LocalEngine  # noqa: E402
from topreward_ros.offline.outputs import OutputOptions  # noqa: E402
from topreward_ros.offline.runner import RunnerOptions  # noqa: E402
from topreward_ros.scoring import ScorerConfig, load_scorer  # noqa: E402
from topreward_ros.sources.bag import BagSource, BagSourceOptions  # noqa: E402
from topreward_ros.sources.lerobot import DatasetSource, DatasetSourceOptions  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "scale.md"
MODEL_DIR = ROOT / ".cache" / "bench-qwen3-vl"
MODEL_MARKER = {"builder": "bench_scale", "version": 1}
CAMERA_TOPIC = "/camera/image_raw/compressed"
CAMERA_KEY = "observation.images.front"
WIDTH, HEIGHT, FPS = 320, 240, 15
EPISODES_PER_FILE = 4  # LeRobot packs several episodes in one mp4 and parquet file
TARGET_OVERHEAD = 0.10  # Ray with 1 replica: at most 10% below local, in wall and CPU
TARGET_SPEEDUP = 1.8  # Ray with 2 replicas: at least 1.8x the local throughput
# Torch threads per model replica (and for the local process): one replica per core, so
# Ray with one replica does exactly the local path's compute and the difference is Ray's.
THREADS = 1

# Eight task setups: different instructions, block colours and positions, so the
# episodes are not copies of each other (the model sees different pictures and prompts).
SCENES: tuple[SceneSpec, ...] = (
    SceneSpec("put the red block in the bowl", (200, 40, 40), 0.25, 0.72),
    SceneSpec("put the blue block in the bowl", (40, 70, 210), 0.70, 0.28),
    SceneSpec("put the green block in the bowl", (40, 160, 60), 0.35, 0.80),
    SceneSpec("put the yellow block in the bowl", (220, 200, 40), 0.62, 0.20),
    SceneSpec("move the purple block into the bowl", (130, 50, 170), 0.20, 0.55),
    SceneSpec("drop the orange block into the bowl", (235, 130, 30), 0.80, 0.40),
    SceneSpec("place the cyan block in the bowl", (40, 190, 200), 0.45, 0.85),
    SceneSpec("put the grey block in the bowl", (120, 120, 120), 0.55, 0.15),
)


def build_bench_model(out_dir: Path) -> Path:
    """A random Qwen3-VL of ~135 M parameters with the real processor (reused when present)."""
    from topreward_ros.tools.tiny_model import QWEN_VOCAB_SIZE, build_processor

    marker = out_dir / "bench_model.json"
    if marker.is_file() and json.loads(marker.read_text()) == MODEL_MARKER:
        return out_dir
    model = random_qwen3_vl(
        text_config={
            "vocab_size": QWEN_VOCAB_SIZE,
            "hidden_size": 512,
            "intermediate_size": 2048,
            "num_hidden_layers": 8,
            "num_attention_heads": 8,
            "num_key_value_heads": 4,
            "head_dim": 64,
            "max_position_embeddings": 32768,
            "tie_word_embeddings": True,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5000000.0,
                "mrope_section": [12, 10, 10],
                "mrope_interleaved": True,
            },
        },
        vision_config={
            "depth": 6,
            "hidden_size": 384,
            "intermediate_size": 1536,
            "num_heads": 6,
            "out_hidden_size": 512,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 2304,
            "deepstack_visual_indexes": [1, 3],
        },
    )
    staging = Path(tempfile.mkdtemp(prefix=".bench-model.", dir=out_dir.parent))
    model.save_pretrained(staging)
    build_processor().save_pretrained(staging)
    (staging / "bench_model.json").write_text(json.dumps(MODEL_MARKER))
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    return out_dir


def scenes(count: int) -> tuple[SceneSpec, ...]:
    """``count`` scenes, the eight setups in turn."""
    return tuple(SCENES[i % len(SCENES)] for i in range(count))


class Work:
    """The inputs of one kind (a dataset, or one bag per episode) and their jobs.

    ``jobs(out, episodes)`` plans the first ``episodes`` episodes (None: all)
    into ``out``: a dataset selects them, bags are taken one per episode.
    """

    def __init__(self, kind: str, root: Path, episodes: int, seconds: float) -> None:
        self.kind = kind
        self.root = root
        self.episodes = episodes
        if kind == "dataset":
            write_lerobot_dataset(
                root,
                scenes(episodes),
                cameras=(DatasetCamera(CAMERA_KEY, WIDTH, HEIGHT),),
                fps=FPS,
                duration_s=seconds,
                episodes_per_file=EPISODES_PER_FILE,
            )
        else:
            for i, scene in enumerate(scenes(episodes)):
                write_episodes_bag(
                    root / f"bag{i:02d}",
                    "mcap",
                    (scene,),
                    (CameraSpec(CAMERA_TOPIC, "compressed", width=WIDTH, height=HEIGHT, rate_hz=float(FPS)),),
                    duration_s=seconds,
                )

    def jobs(self, out: Path, episodes: int | None = None) -> list[InputJob]:
        shutil.rmtree(out, ignore_errors=True)  # a fresh output: nothing skipped as done
        count = self.episodes if episodes is None else min(episodes, self.episodes)
        if self.kind == "dataset":
            options = DatasetSourceOptions(camera_keys=(CAMERA_KEY,), episodes=tuple(range(count)))
            return [InputJob(self.root.name, self.root, out, DatasetSource(self.root, options))]
        options = BagSourceOptions(camera_topics=(CAMERA_TOPIC,))
        bags = sorted(p for p in self.root.iterdir() if p.is_dir())[:count]
        return [InputJob(b.name, b, out / b.name, BagSource(b, options)) for b in bags]


def config(threads: int) -> ScorerConfig:
    return ScorerConfig(
        model=str(MODEL_DIR), device="cpu", dtype="float32", local_files_only=True, torch_threads=threads
    )


def samples_of(runs: list[InputRun], episodes: int) -> int:
    """Sampled frames scored; every input done and every episode scored, or the run is void."""
    total = scored = 0
    for run in runs:
        assert run.ok and run.report is not None, f"{run.job.name}: {run.status} {run.error}"
        scored += len(run.report.by_status("scored"))
        total += sum(e.num_samples for e in run.report.episodes)
    assert scored == episodes, f"{scored} of {episodes} episodes scored"
    return total


def measure_local(work: Work, warmup: Work, out: Path, settings: OfflineSettings) -> dict[str, Any]:
    t0 = time.perf_counter()
    scorer = load_scorer(config(THREADS))
    load_s = time.perf_counter() - t0
    engine = LocalEngine(scorer, progress=False)
    engine.run(warmup.jobs(out / "warm-local", 1), settings)
    jobs = work.jobs(out / "local")
    t0, c0 = time.perf_counter(), time.process_time()
    runs = engine.run(jobs, settings)
    run_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    del engine, scorer
    return {"run_s": run_s, "cpu_s": cpu_s, "startup_s": load_s, "samples": samples_of(runs, work.episodes)}


def measure_ray(work: Work, warmup: Work, out: Path, settings: OfflineSettings, replicas: int) -> dict[str, Any]:
    import ray

    from topreward_ros.scale.engine import RayEngine, RayOptions

    options = RayOptions(replicas=replicas, cpus_per_replica=THREADS, retries=0)
    t0 = time.perf_counter()
    with RayEngine(config(THREADS), options, progress=False) as engine:
        engine.start()
        startup_s = time.perf_counter() - t0
        # One warm-up episode per replica (first forwards pay one-off costs), as for local:
        # idle replicas take the queued episodes in turn, so each gets one.
        engine.run(warmup.jobs(out / f"warm-ray{replicas}", replicas), settings)
        jobs = work.jobs(out / f"ray{replicas}")
        before = ray.get([a.info.remote() for a in engine.actors])
        d0 = daemons_cpu_s()
        t0, c0 = time.perf_counter(), time.process_time()
        runs = engine.run(jobs, settings)
        run_s, driver_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        daemons_s = daemons_cpu_s() - d0
        after = ray.get([a.info.remote() for a in engine.actors])
    # Per replica: with two, both must have worked (the episodes of one input are spread).
    replica_cpu = [a["cpu_s"] - b["cpu_s"] for a, b in zip(after, before)]
    return {
        "run_s": run_s,
        "cpu_s": driver_cpu_s + sum(replica_cpu) + daemons_s,
        "driver_cpu_s": driver_cpu_s,
        "daemons_cpu_s": daemons_s,
        "replica_cpu_s": replica_cpu,
        "startup_s": startup_s,
        "samples": samples_of(runs, work.episodes),
    }


def daemons_cpu_s() -> float:
    """CPU seconds used so far by this process's direct children: Ray's GCS, raylet, monitors.

    (Replica processes are the raylet's children and are counted through the replicas.)
    """
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:  # ppid
            total += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return total


def loadavg() -> float:
    return os.getloadavg()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--source",
        choices=("dataset", "bags"),
        default="dataset",
        help="one LeRobot dataset of N episodes, or N one-episode bags",
    )
    parser.add_argument("--episodes", type=int, default=8, help="episodes in all (N)")
    parser.add_argument("--seconds", type=float, default=8.0, help="episode length")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="4 episodes of 3 s, 1 round (smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.episodes, args.seconds, args.rounds = 4, 3.0, 1
    if args.episodes < 2:
        parser.error("--episodes must be >= 2 (two replicas need an episode each)")
    import ray

    cores = os.cpu_count() or 2
    build_bench_model(MODEL_DIR)
    settings = OfflineSettings(
        episode=EpisodeSettings(success_threshold=-8.0),
        runner=RunnerOptions(tick_rate_hz=1.0),
        outputs=OutputOptions(plot=False),
    )
    load_start = loadavg()
    results: dict[str, list[dict[str, Any]]] = {"local": [], "ray1": [], "ray2": []}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        tmp_path = Path(tmp)
        work = Work(args.source, tmp_path / args.source, args.episodes, args.seconds)
        warmup = Work(args.source, tmp_path / "warmup", 2, 2.0)
        out = tmp_path / "out"
        # Ray starts its workers at nice 15 (they yield the CPU to everything else); on a
        # shared machine that, not Ray's overhead, would dominate, so compete as equals.
        os.environ.setdefault("RAY_worker_niceness", "0")
        t0 = time.perf_counter()
        ray.init(
            num_cpus=cores,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            object_store_memory=256 * 1024 * 1024,
        )
        ray_init_s = time.perf_counter() - t0
        try:
            for r in range(args.rounds):
                for name in results:
                    if name == "local":
                        m = measure_local(work, warmup, out, settings)
                    else:
                        m = measure_ray(work, warmup, out, settings, int(name[-1]))
                    m["load"] = loadavg()
                    results[name].append(m)
                    split = (
                        "; replicas " + " / ".join(f"{c:.1f}" for c in m["replica_cpu_s"]) + " s"
                        if "replica_cpu_s" in m
                        else ""
                    )
                    print(
                        f"round {r + 1} {name}: {m['samples']} samples in {m['run_s']:.2f} s, "
                        f"CPU {m['cpu_s']:.2f} s{split} (startup {m['startup_s']:.1f} s, "
                        f"load {m['load']:.2f})",
                        flush=True,
                    )
        finally:
            ray.shutdown()
    load_end = loadavg()
    best = {name: min(ms, key=lambda m: m["run_s"]) for name, ms in results.items()}
    samples = best["local"]["samples"]
    local_rate = samples / best["local"]["run_s"]
    local_cpu = best["local"]["cpu_s"] / samples
    rows = []
    labels = (
        ("local", f"local (1 process, {THREADS} torch thread)"),
        ("ray1", f"Ray, 1 replica x {THREADS} CPU"),
        ("ray2", f"Ray, 2 replicas x {THREADS} CPU"),
    )
    for name, label in labels:
        m = best[name]
        rate = m["samples"] / m["run_s"]
        cpu = m["cpu_s"] / m["samples"]
        runs = ", ".join(f"{x['run_s']:.1f}" for x in results[name])
        rows.append(
            f"| {label} | {m['run_s']:.2f} | {runs} | {rate:.3f} | {rate / local_rate:.3f} "
            f"| {cpu:.2f} | {cpu / local_cpu:.3f} | {m['startup_s']:.1f} |"
        )
    wall_overhead = 1 - (best["ray1"]["samples"] / best["ray1"]["run_s"]) / local_rate
    cpu_overhead = best["ray1"]["cpu_s"] / best["ray1"]["samples"] / local_cpu - 1
    speedup = (best["ray2"]["samples"] / best["ray2"]["run_s"]) / local_rate
    driver_share = best["ray1"]["driver_cpu_s"] / best["ray1"]["cpu_s"]
    daemons_share = best["ray1"]["daemons_cpu_s"] / best["ray1"]["cpu_s"]
    wall_ratios = [r["run_s"] / loc["run_s"] for r, loc in zip(results["ray1"], results["local"])]
    speedups = [loc["run_s"] / r["run_s"] for r, loc in zip(results["ray2"], results["local"])]

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    command = "python bench/bench_scale.py" + (
        " --quick"
        if args.quick
        else f" --source {args.source} --episodes {args.episodes} --seconds {args.seconds:g} --rounds {args.rounds}"
    )
    if args.quick and args.source != "dataset":
        command += f" --source {args.source}"
    per_episode = best["local"]["run_s"] / args.episodes
    shared = max(load_start, load_end) > cores
    if args.source == "dataset":
        work_text = (
            f"one LeRobot v3 dataset of {args.episodes} episodes of {args.seconds:g} s (one "
            f"{WIDTH}x{HEIGHT} AV1 camera at {FPS} fps, {EPISODES_PER_FILE} episodes per mp4 "
            f"and parquet file; {len(SCENES)} task setups: instruction, block colour and "
            f"positions), as `topreward lerobot` scores it; Ray spreads the episodes of the "
            f"one dataset over the replicas"
        )
    else:
        work_text = (
            f"{args.episodes} bags, one {args.seconds:g} s episode each (one {WIDTH}x{HEIGHT} "
            f"JPEG camera at {FPS} Hz), as `topreward bag` scores them; Ray hands each bag's "
            f"episode to an idle replica"
        )
    text = f"""## Scaling out: local engine vs Ray replicas

Command: `{command}` (also run by `make bench`).
Machine: {describe_machine()}.
Load average (1 min) at start / end: {load_start:.2f} / {load_end:.2f} on {cores} cores
({
        "shared with other work: wall times include waiting for cores; CPU time is the work itself"
        if shared
        else "otherwise idle"
    }).

Work: {work_text}. {samples} sampled frames in all; live ticks at 1 Hz (incremental scores)
and the K=15 offline curve per episode, outputs and manifest written. Model: random
Qwen3-VL at bench dimensions (~135 M parameters: text 8 layers x 512, vision 6 x 384; real
vocabulary and processor), fp32 on CPU, {THREADS} torch thread per replica, so one replica does
the local path's compute exactly and the difference is what Ray adds; about {per_episode:.1f} s
of model-dominated work per episode here. Throughput excludes model load and cluster start
(last column; `ray.init` took {ray_init_s:.1f} s once) and a warm-up episode per replica.
Best of {args.rounds} alternating round(s), every round listed. CPU time: the local process;
for Ray the driver, every replica process and Ray's own daemons (GCS, raylet, monitors).

| engine | best wall [s] | all rounds [s] | sampled frames / s | vs local | CPU s / frame | vs local | startup [s] |
|---|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

Two replicas: {speedup:.2f}x the local throughput (target >= {TARGET_SPEEDUP:g}x:
{verdict(speedup >= TARGET_SPEEDUP)}); round by round {", ".join(f"{s:.2f}x" for s in speedups)}.
Ray overhead at 1 replica: {wall_overhead * 100:.1f}% of the local throughput (wall; target
<= {TARGET_OVERHEAD * 100:g}%: {verdict(wall_overhead <= TARGET_OVERHEAD)}), {cpu_overhead * 100:.1f}%
more CPU per frame, Ray's daemons included (target <= {TARGET_OVERHEAD * 100:g}%:
{verdict(cpu_overhead <= TARGET_OVERHEAD)}); of Ray's CPU the driver used
{driver_share * 100:.1f}% and Ray's daemons {daemons_share * 100:.1f}%; CPU seconds of the two
replicas in the best 2-replica round: {" / ".join(f"{c:.1f}" for c in best["ray2"]["replica_cpu_s"])}
(how the work was shared). Wall time of Ray
(1 replica) / local, round by round: {", ".join(f"{r:.3f}" for r in wall_ratios)}; on a shared
machine the wall ratio moves with the load of the moment, the CPU ratio does not.
Two replicas need two free cores to double the rate; on a shared machine they get what is left.
On a cluster with one GPU per replica the replicas share nothing and throughput adds up
(docs/offline.md: On a Ray cluster).
"""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
