#!/usr/bin/env python3
"""Run every benchmark and assemble BENCHMARKS.md from their sections.

Each bench script measures one concern and writes a markdown section (with
the exact command and the machine) to bench/results/<name>.md. This script
runs them one after another (never in parallel: they share the CPU) and
concatenates the sections under a common header, with the GPU section that
bench/gpu.py writes (``make bench-gpu``). Pass --only NAME to run a subset,
--assemble-only to rebuild BENCHMARKS.md from existing sections.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BENCHES = ("core", "node", "sources", "replay", "scale", "relabel", "bag_long")
#: Sections written by scripts `make bench` does not run (bench/gpu.py needs a CUDA
#: GPU: `make bench-gpu`), assembled after the others.
OTHER_SECTIONS = ("gpu",)

HEADER = """# Benchmarks

Measured with `make bench` (or the per-section command shown). Models are
randomly initialised at the stated sizes: the timings are real compute cost,
the scores are meaningless. Ratios are taken within one run on one machine;
absolute times hold only for the hardware named in each section.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=BENCHES, action="append")
    parser.add_argument("--assemble-only", action="store_true")
    parser.add_argument("--quick", action="store_true", help="small sizes, smoke run")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    failed = []
    if args.quick:
        # A smoke run prints its numbers but must not replace measured sections.
        saved = {path: path.read_bytes() for path in RESULTS.rglob("*.md")}
    if not args.assemble_only:
        for name in args.only or BENCHES:
            cmd = [sys.executable, str(ROOT / "bench" / f"bench_{name}.py")]
            if args.quick:
                cmd.append("--quick")
            print(f"== {' '.join(cmd)}", flush=True)
            if subprocess.call(cmd, cwd=ROOT) != 0:
                failed.append(name)
    if args.quick:
        for path in RESULTS.rglob("*.md"):
            if path not in saved:
                path.unlink()
        for path, data in saved.items():
            path.write_bytes(data)
        print("smoke run: bench/results and BENCHMARKS.md left as they were")
        return 1 if failed else 0
    sections = [HEADER, f"_Assembled {dt.date.today().isoformat()}._\n"]
    for name in BENCHES + OTHER_SECTIONS:
        path = RESULTS / f"{name}.md"
        if path.exists():
            sections.append(path.read_text().strip() + "\n")
    (ROOT / "BENCHMARKS.md").write_text("\n".join(sections))
    print(f"wrote {ROOT / 'BENCHMARKS.md'}")
    if failed:
        print(f"benchmarks failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
