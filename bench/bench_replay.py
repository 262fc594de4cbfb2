#!/usr/bin/env python3
"""What `/clock` from `topreward replay` costs a sim-time node, per `--clock-hz`.

Every `/clock` message wakes each node running with ``use_sim_time`` (its
executor re-evaluates its timers), so on a 2-core machine the replay's clock
rate takes CPU from the node's camera callbacks and scoring. This measures
that cost alone: the installed ``scorer_node`` (tiny model loaded, waiting
for an instruction, 1 Hz timer) is fed a bag that holds nothing but two
instruction messages ``--seconds`` apart of bag time, replayed at each
``--clock-hz``; the node's CPU time (user + system, from /proc) is read
before and after, and so is the replaying process's.

Results go to bench/results/replay.md with the machine and the command.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import describe_machine  # noqa: E402  (bench/ is the script's directory)

from topreward_ros.bag.writer import BagWriter, string_msg  # noqa: E402
from topreward_ros.demo.synthetic_bag import START_NS  # noqa: E402
from topreward_ros.node.bag_replay import DEFAULT_CLOCK_HZ, ReplayOptions, replay_bag  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "replay.md"
# The install tree make built for the ROS distro in use (tools/env.sh exports it).
INSTALL = ROOT / os.environ.get("TOPREWARD_INSTALL", "install")
EXECUTABLE = INSTALL / "topreward_ros" / "lib" / "topreward_ros" / "scorer_node"
TINY_DIR = ROOT / ".cache" / "tiny-qwen3-vl"
NS = 1_000_000_000
CAMERA = "/camera/image_raw"


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_bag(path: Path, seconds: float) -> Path:
    with BagWriter(path, "mcap") as writer:
        writer.declare(CAMERA, "sensor_msgs/msg/Image")
        writer.write("/instruction", string_msg("idle"), START_NS)
        writer.write("/instruction", string_msg("idle"), START_NS + int(seconds * NS))
    return path


def start_node(log: Path) -> subprocess.Popen:
    params = {
        "use_sim_time": "true",
        "model": str(TINY_DIR),
        "local_files_only": "true",
        "device": "cpu",
        "torch_threads": "1",
        "camera_topics": f"[{CAMERA}]",
        "rate_hz": "1.0",
    }
    args = [str(EXECUTABLE), "--ros-args"]
    for name, value in params.items():
        args += ["-p", f"{name}:={value}"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.Popen(args, stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env)


def wait_loaded(log: Path, node: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while " loaded in " not in log.read_text(errors="replace"):
        if node.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"scorer_node did not load the model:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)


def measure(bag: Path, clock_hz: float, workdir: Path) -> dict[str, float]:
    log = workdir / f"node-{clock_hz:g}.log"
    node = start_node(log)
    try:
        # Measure the idle node only: after its model load, never during it.
        wait_loaded(log, node)
        node_before = process_cpu_s(node.pid)
        own_before = time.process_time()
        t0 = time.monotonic()
        result = replay_bag(
            bag,
            ReplayOptions(clock_hz=clock_hz, linger_s=0.0, wait_for=("/clock",), wait_timeout_s=60.0),
            progress=False,
        )
        wall = time.monotonic() - t0
        node_cpu = process_cpu_s(node.pid) - node_before
        own_cpu = time.process_time() - own_before
    finally:
        node.send_signal(signal.SIGINT)
        try:
            node.wait(30)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait(10)
    return {
        "wall_s": wall,
        "clock_messages": result.clock_messages,
        "node_cpu_pct": 100.0 * node_cpu / wall,
        "replay_cpu_pct": 100.0 * own_cpu / wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="bag time replayed per rate")
    parser.add_argument("--quick", action="store_true", help="5 s per rate (smoke run)")
    args = parser.parse_args()
    seconds = 5.0 if args.quick else args.seconds
    if not EXECUTABLE.exists():
        print(f"{EXECUTABLE} missing: run `make build` first", file=sys.stderr)
        return 1
    from topreward_ros.tools.tiny_model import build_tiny_model

    build_tiny_model(TINY_DIR)
    rates = (100.0, DEFAULT_CLOCK_HZ)
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bag = write_bag(Path(tmp) / "bag", seconds)
        for hz in rates:
            r = measure(bag, hz, Path(tmp))
            rows.append((hz, r))
            print(f"clock {hz:g} Hz: {r}", flush=True)
    command = "python bench/bench_replay.py" + (" --quick" if args.quick else f" --seconds {seconds:g}")
    lines = [
        "## Replay: what /clock costs a sim-time node",
        "",
        f"Machine: {describe_machine()}. Command: `{command}` (also run by `make bench`).",
        "",
        f"`topreward replay` of {seconds:g} s of bag time holding no camera frame into the "
        "installed `scorer_node` (`use_sim_time`, tiny model loaded, no instruction yet, "
        "`rate_hz` 1): CPU the node and the replaying process use while only `/clock` flows "
        "(the node's idle baseline, such as `/diagnostics` every second, included), in % of "
        f"one core over the replay's wall time. Load average at the start: {load_before:.1f}.",
        "",
        "| `--clock-hz` | /clock messages | node CPU | replay CPU |",
        "|---|---|---|---|",
    ]
    for hz, r in rows:
        default = " (default)" if hz == DEFAULT_CLOCK_HZ else ""
        lines.append(
            f"| {hz:g}{default} | {r['clock_messages']} | {r['node_cpu_pct']:.1f} % | {r['replay_cpu_pct']:.1f} % |"
        )
    base, new = rows[0][1], rows[1][1]
    if new["node_cpu_pct"] > 0:
        lines += [
            "",
            f"Node CPU with /clock at 100 Hz is {base['node_cpu_pct'] / new['node_cpu_pct']:.1f}x "
            f"that at {DEFAULT_CLOCK_HZ:g} Hz (one run).",
        ]
    lines.append("")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
