"""``bench/gpu.py`` at tiny size on the CPU: the GPU benchmark's code path runs and writes a sane section.

The script runs as its own process (as ``make bench-gpu`` runs it), with the
tiny test model and short episodes, writing to a temporary file; the
section's numbers are read back and checked against what the episode must
give (samples at 2 fps, no cache rebuild before the window fills, one tick
per second offline), never against times.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from support.command_line import command_line

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu.py"
# The tiny plan of bench/gpu.py: marks at 10, 20 and 40 s, rows of the 10 s before each,
# max_frames 32, a 20 s offline episode.
MARKS = {"10 s": 10, "20 s": 20, "40 s": 40}
MAX_FRAMES = 32
OFFLINE_S = 20
# What the script must never touch when it writes elsewhere.
GUARDED = (ROOT / "BENCHMARKS.md", ROOT / "bench" / "results" / "gpu.md")


def table(text: str, header_start: str) -> list[dict[str, str]]:
    """The rows of the markdown table whose header begins with ``header_start``, by column name."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    names = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(names, (c.strip() for c in line.strip("|").split("|")))))
    return rows


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dir) -> tuple[subprocess.CompletedProcess, str, dict[Path, bytes | None]]:
    before = {p: (p.read_bytes() if p.exists() else None) for p in GUARDED}
    out = tmp_path_factory.mktemp("bench_gpu") / "gpu.md"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, out.read_text(), before


def test_tick_latency_rows_for_each_length_and_camera_count(run):
    _, text, _ = run
    rows = table(text, "| Model | Cameras | Episode time")
    assert sorted((r["Cameras"], r["Episode time"]) for r in rows) == sorted(
        (cams, mark) for cams in ("1", "2") for mark in MARKS
    )
    for row in rows:
        p50, p99 = float(row["p50 (ms)"]), float(row["p99 (ms)"])
        assert p99 >= p50 > 0, row
        assert int(row["Ticks"]) > 0, row
        if MARKS[row["Episode time"]] * 2 <= MAX_FRAMES:
            # Before the window fills: every 2 fps sample is there, and the cache was never rebuilt.
            assert int(row["Samples"]) == 2 * MARKS[row["Episode time"]], row
            assert row["Cache rebuilds so far"] == "0", row
        else:
            assert 0 < int(row["Samples"]) <= MAX_FRAMES, row
        # Incremental ticks: most of the prompt comes from the cache.
        assert 0 < float(row["Computed tokens per tick (median)"]) < int(row["Prompt tokens"]) / 2, row
    by_key = {(r["Cameras"], r["Episode time"]): r for r in rows}
    for mark in MARKS:
        one, two = by_key["1", mark], by_key["2", mark]
        if one["Samples"] == two["Samples"]:
            # Two cameras side by side: more tokens per sample than one camera's view.
            assert int(two["Prompt tokens"]) > int(one["Prompt tokens"]), (one, two)


def test_offline_real_time_factor(run):
    _, text, _ = run
    (row,) = table(text, "| Model | Cameras | Episode (s)")
    assert row["Cameras"] == "2" and int(row["Episode (s)"]) == OFFLINE_S
    assert int(row["Ticks"]) == OFFLINE_S  # one tick per second of the episode
    wall, rtf = float(row["Wall (s)"]), float(row["Real-time factor"])
    assert wall > 0 and rtf > 0
    assert rtf == pytest.approx(OFFLINE_S / wall, rel=0.05, abs=0.01)


def test_memory_and_cached_vs_independent_difference(run):
    _, text, _ = run
    (row,) = table(text, "| Model | Weights (GiB)")
    assert float(row["Weights (GiB)"]) > 0
    assert row["Peak allocated (GiB)"] == "n/a (CPU)"
    reused, prompt = (int(n) for n in row["Last prompt: tokens from the cache / all"].split(" / "))
    assert 0 < reused < prompt  # the compared score did come from the cache
    bf16, fp32 = float(row["Difference, bf16 (nats)"]), float(row["Difference, fp32 (nats)"])
    assert math.isfinite(bf16) and bf16 >= 0, row
    assert math.isfinite(fp32) and 0 <= fp32 < 1e-3, row  # the project's float32 bar


def test_section_names_the_run_and_leaves_the_repository_alone(run):
    proc, text, before = run
    assert text.startswith("## GPU\n")
    assert "Command: `python bench/gpu.py --tiny --output " in text
    assert "not a GPU measurement" in text
    assert "Elapsed per part: tiny: build" in text and "Total: **" in text
    assert text in proc.stdout  # also printed
    assert {p: (p.read_bytes() if p.exists() else None) for p in GUARDED} == before


def test_without_a_gpu_it_refuses_and_writes_nothing(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: the script would measure it")
    out = tmp_path / "gpu.md"
    proc = subprocess.run(
        command_line("{} {} --sizes 2B --output {}", sys.executable, SCRIPT, out),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "No CUDA GPU is available here" in proc.stderr
    assert not out.exists()
