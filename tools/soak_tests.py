#!/usr/bin/env python3
"""Run test modules many times, alone or beside CPU burners, and count how often each fails.

A test that fails at random fails rarely when run once: this loop is how such
tests are found and how a fix is shown to hold. Each run is a fresh pytest
process on one module (as a developer runs it alone); runs go round-robin
over the modules, so a soak cut short still gives every module about the same
count. ``--burners N`` keeps N busy-looping processes running for the whole
soak: the graph tests must also pass on a loaded machine, where discovery,
timers and model forwards all slow down. ``--jobs N`` runs N modules at once,
each in its own process and DDS domain, as the full suite's workers do: the
modules then load the machine for each other.

    make test-soak                                  # every graph module, 20 runs, one at a time
    make test-soak MODULES="test/node/graph/test_ros2_cli.py" RUNS=50 BURNERS=2
    make test-soak SOAK_JOBS=3                      # three modules at once, as in `make test`

The output of every failed run is kept under ``--log-dir``; the last lines
printed are a Markdown table (module, runs, failures, burners) for
docs/verification.md. Exit status 1 when any run failed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from threading import Lock

ROOT = Path(__file__).resolve().parents[1]


def graph_modules() -> list[str]:
    """The test modules holding tests marked ``graph`` (what pytest collects with ``-m graph``)."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "graph", "--collect-only", "-q", "test"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    modules = sorted({line.split("::")[0] for line in out.stdout.splitlines() if "::" in line})
    if not modules:
        raise SystemExit(f"no test marked graph was collected:\n{out.stdout}{out.stderr}")
    return modules


@contextmanager
def burners(count: int) -> Iterator[None]:
    """``count`` processes that keep one core each busy until the block ends."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def run_once(module: str, log_dir: Path, index: int, pytest_args: Sequence[str]) -> tuple[bool, float]:
    """One fresh pytest process on ``module``; a failed run keeps its output and its tmp_path trees (node logs)."""
    name = f"{Path(module).stem}-run{index:03d}"
    basetemp = log_dir / f"{name}-tmp"
    started = time.monotonic()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            module,
            "-q",
            "-p",
            "no:cacheprovider",
            f"--basetemp={basetemp}",
            *pytest_args,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    seconds = time.monotonic() - started
    # Exit 5: every test skipped or deselected; the module ran nothing, which is not a failure here.
    passed = out.returncode in (0, 5)
    if passed:
        shutil.rmtree(basetemp, ignore_errors=True)
    else:
        (log_dir / f"{name}.txt").write_text(out.stdout + out.stderr)
    return passed, seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="test modules (default: every module with graph tests)")
    parser.add_argument("--runs", type=int, default=20, help="runs per module (default 20)")
    parser.add_argument("--burners", type=int, default=0, help="busy processes beside the tests (default 0)")
    parser.add_argument("--jobs", type=int, default=1, help="modules run at once (default 1)")
    parser.add_argument("--log-dir", type=Path, default=ROOT / "log" / "soak", help="where failed runs' output goes")
    parser.add_argument("--pytest-args", default="", help="extra pytest arguments, one string")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.burners < 0 or args.jobs < 1:
        parser.error("--runs and --jobs must be >= 1 and --burners >= 0")
    modules = args.modules or graph_modules()
    args.log_dir.mkdir(parents=True, exist_ok=True)
    counts = {m: [0, 0, 0.0] for m in modules}  # runs, failures, seconds
    print(
        f"soak: {len(modules)} module(s) x {args.runs} run(s), {args.jobs} at once, {args.burners} burner(s)",
        flush=True,
    )
    # Round-robin order: a soak cut short still gives every module about the same count.
    counted = Lock()
    plan = [(index, module) for index in range(1, args.runs + 1) for module in modules]

    def run(task: tuple[int, str]) -> None:
        index, module = task
        passed, seconds = run_once(module, args.log_dir, index, args.pytest_args.split())
        with counted:
            record = counts[module]
            record[0] += 1
            record[1] += 0 if passed else 1
            record[2] += seconds
        print(f"run {index}/{args.runs} {module}: {'passed' if passed else 'FAILED'} in {seconds:.0f} s", flush=True)

    with burners(args.burners), ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for _ in pool.map(run, plan):
            pass
    print("\n| module | runs | failed | at once | burners | mean s |\n|---|---|---|---|---|---|")
    for module, (runs, failed, seconds) in counts.items():
        print(f"| {Path(module).name} | {runs} | {failed} | {args.jobs} | {args.burners} | {seconds / runs:.0f} |")
    failed_total = sum(record[1] for record in counts.values())
    if failed_total:
        print(f"\n{failed_total} failed run(s); their output is in {args.log_dir}")
    return 1 if failed_total else 0


if __name__ == "__main__":
    sys.exit(main())
