#!/usr/bin/env python3
"""Live and offline cost on a GPU, with random weights at the released Qwen3-VL sizes.

On the first CUDA GPU, for each model size (default 2B, 4B and 8B: random
weights built in memory from the released configs, bfloat16; nothing is
downloaded), it measures:

1. **Tick latency** p50 and p99 at 30 s, 2 min and 10 min of a live episode
   (2 fps samples, a tick per second of episode time, run back to back through
   the node's ``EpisodeRunner``, as ``bench_node.py``'s long episode does),
   with one and with two cameras, the default ``view_size`` and ``max_frames``.
   Each row: the scored ticks of the 30 s of episode time before the mark.
2. **Offline real-time factor**: episode seconds over wall seconds of the
   offline runner (``topreward bag``'s per-episode path: the same ticks, then
   the offline curve) over the first minutes of the same two-camera episode.
3. **Peak GPU memory** (``torch.cuda.max_memory_allocated``) per size.
4. **Cached vs independent**: the log-probability difference between the
   incremental (KV-cache) score and one independent forward over the same
   frames, in bfloat16 and, after casting the same weights, in float32.

The section goes to bench/results/gpu.md (``--output`` names another file);
``make bench-gpu`` then assembles BENCHMARKS.md. Without a CUDA GPU the
script says so and exits with status 2, writing nothing, unless ``--tiny``
is given: then the same code runs on the CPU with the tiny test model
(.cache/tiny-qwen3-vl) and short episodes, and the section is printed, or
written to ``--output`` if given.

    python bench/gpu.py [--sizes 2B,4B,8B] [--quick] [--tiny] [--output FILE]
"""

from __future__ import annotations

import argparse
import gc
import math
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from long_episode import INSTRUCTION, NS, run_ticks, ticks_before, view_pool  # bench/ is the script's directory
from machine import describe_machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TINY_DIR = ROOT / ".cache" / "tiny-qwen3-vl"
DEFAULT_SIZES = ("2B", "4B", "8B")
#: Exit status when no GPU is there (and --tiny was not given).
NO_GPU = 2


@dataclass(frozen=True)
class Plan:
    """How long each part runs."""

    marks_s: tuple[int, ...]  # episode times at which tick latency is reported
    span_s: int  # each mark's row: the ticks of this many seconds before it
    offline_s: int  # length of the offline runner's episode
    max_frames: int
    fidelity_samples: int  # frames of the cached-vs-independent comparison

    @property
    def seconds(self) -> int:
        return max(self.marks_s)


#: About 8 minutes for 2B, 4B and 8B on one H100-class GPU.
FULL = Plan(marks_s=(30, 120, 600), span_s=30, offline_s=120, max_frames=256, fidelity_samples=32)
QUICK = Plan(marks_s=(30, 120), span_s=30, offline_s=60, max_frames=256, fidelity_samples=16)
#: The CPU run of the suite: the same code, seconds instead of minutes.
TINY = Plan(marks_s=(10, 20, 40), span_s=10, offline_s=20, max_frames=32, fidelity_samples=8)


def mark_label(seconds: int) -> str:
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


# ----------------------------------------------------------------------------
# Models.
# ----------------------------------------------------------------------------
def random_model(size: str, device: str, dtype: Any) -> Any:
    """A random Qwen3-VL of a released size (``fit.BUILTIN_MODELS``), built on ``device`` in ``dtype``."""
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    from topreward_ros.scoring.fit import BUILTIN_MODELS

    spec = BUILTIN_MODELS[size]
    config = Qwen3VLConfig(
        text_config=spec["text_config"],
        vision_config=spec["vision_config"],
        image_token_id=151655,
        video_token_id=151656,
        vision_start_token_id=151652,
        vision_end_token_id=151653,
        tie_word_embeddings=spec["tie_word_embeddings"],
    )
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Qwen3VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def wrap(model: Any, name: str, device: str, dtype: Any) -> Any:
    """The project's scorer around an in-memory model (the processor is Qwen3-VL's, built locally)."""
    from topreward_ros.scoring import ScorerConfig, VideoScorer
    from topreward_ros.tools.tiny_model import build_processor

    dtype_name = str(dtype).replace("torch.", "")
    config = ScorerConfig(model=name, device=device, dtype=dtype_name)
    return VideoScorer(model, build_processor(), config, model_id=name, device=device, dtype=dtype, family="qwen3_vl")


def weight_bytes(model: Any) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


# ----------------------------------------------------------------------------
# Parts.
# ----------------------------------------------------------------------------
def tick_rows(scorer: Any, cameras: int, plan: Plan, label: str) -> list[dict[str, Any]]:
    """Tick latency at each mark of one live episode of ``cameras`` cameras."""
    from topreward_ros.episode.records import EpisodeSettings
    from topreward_ros.episode.runner import EpisodeRunner

    settings = EpisodeSettings(max_frames=plan.max_frames, success_threshold=-1e9)
    runner = EpisodeRunner(scorer, settings, num_cameras=cameras)
    runner.start(INSTRUCTION)

    def progress(second: int, runner: Any, wall: float) -> None:
        print(
            f"  {label}, {cameras} camera(s): {second} s, {len(runner.window.samples)} samples, "
            f"tick {wall * 1e3:.0f} ms, rebuilds {runner.cache_rebuilds}",
            flush=True,
        )

    try:
        ticks = run_ticks(runner, plan.seconds, view_pool(settings.view_size, cameras), progress)
    finally:
        runner.stop()
        runner.discard_ended()
    rows = []
    for mark in plan.marks_s:
        window = ticks_before(ticks, mark, plan.span_s)
        walls = [t.wall_s * 1e3 for t in window]
        rows.append(
            {
                "model": label,
                "cameras": cameras,
                "mark": mark,
                "samples": window[-1].frames_used,
                "ticks": len(window),
                "p50": statistics.median(walls),
                "p99": float(np.percentile(walls, 99)),
                "rebuilds": window[-1].rebuilds,
                "prompt": window[-1].prompt_tokens,
                "new": statistics.median(t.new_tokens for t in window),
            }
        )
    return rows


def offline_frames(seconds: int, cameras: int, pool: list[tuple[np.ndarray, ...]]) -> Iterator[Any]:
    """A recording of ``seconds`` at 2 fps on every camera, as a source gives it to the offline runner."""
    from topreward_ros.offline.source import SourceFrame

    for k in range(2 * seconds):
        stamp = k * NS // 2
        for camera, view in enumerate(pool[k % len(pool)]):
            yield SourceFrame(
                camera=camera,
                stamp_ns=stamp,
                log_ns=stamp,
                label=f"/cam{camera} frame {k}",
                decode=lambda size, view=view, camera=camera: (view, f"cam{camera}"),
            )


def offline_rtf(scorer: Any, cameras: int, plan: Plan) -> dict[str, Any]:
    """Episode seconds per wall second of the offline runner over one episode."""
    from topreward_ros.episode.records import EpisodeSettings
    from topreward_ros.offline.runner import OfflineRunner, RunnerOptions
    from topreward_ros.offline.source import EpisodeSpec

    settings = EpisodeSettings(max_frames=plan.max_frames, success_threshold=-1e9)
    names = tuple(f"cam{c}" for c in range(cameras))
    runner = OfflineRunner(scorer, settings, RunnerOptions(tick_rate_hz=1.0), names)
    spec = EpisodeSpec(index=0, instruction=INSTRUCTION, start_ns=0, end_ns=plan.offline_s * NS, tick_phase_ns=0)
    pool = view_pool(settings.view_size, cameras)
    try:
        start = time.perf_counter()
        result = runner.score(spec, offline_frames(plan.offline_s, cameras, pool))
        wall = time.perf_counter() - start
    finally:
        runner.close()
    if result.status != "scored":
        raise RuntimeError(f"offline run: {result.status}: {result.message}")
    return {
        "cameras": cameras,
        "episode_s": plan.offline_s,
        "wall_s": wall,
        "ticks": len(result.ticks),
        "rtf": plan.offline_s / wall,
    }


def cached_minus_independent(scorer: Any, plan: Plan) -> tuple[float, int, int]:
    """Largest |cached - independent| log-probability (nats) over one episode's frames.

    With the last score's prompt tokens taken from the cache, and the prompt's length.
    """
    frames = [views[0] for views in view_pool(244, 1, plan.fidelity_samples)]
    stamps = [k * NS // 2 for k in range(len(frames))]
    session = scorer.start_episode(INSTRUCTION, plan.max_frames)
    for k in range(0, len(frames), 2):  # two new samples per tick, as live
        session.extend(frames[k : k + 2], stamps[k : k + 2])
        cached = session.score()
    reference = scorer.score(frames, stamps, INSTRUCTION, plan.max_frames)
    diff = max(
        abs(cached.log_prob_true - reference.log_prob_true), abs(cached.log_prob_false - reference.log_prob_false)
    )
    return diff, session.last_reused_tokens, session.last_prompt_tokens


# ----------------------------------------------------------------------------
# One size.
# ----------------------------------------------------------------------------
def measure(size: str, device: str, plan: Plan, timings: list[tuple[str, float]]) -> dict[str, Any]:
    import torch

    def timed(part: str, started: float) -> None:
        timings.append((f"{size}: {part}", time.monotonic() - started))
        print(f"  {size}: {part} took {timings[-1][1]:.1f} s", flush=True)

    cuda = device == "cuda"
    if cuda:
        gc.collect()  # the previous size's model, if a cycle still holds it
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    started = time.monotonic()
    if size == "tiny":
        from topreward_ros.scoring import ScorerConfig, load_scorer

        scorer = load_scorer(ScorerConfig(model=str(TINY_DIR), device="cpu", dtype="bfloat16"))
        label = "tiny (CPU)"
    else:
        scorer = wrap(random_model(size, device, torch.bfloat16), f"random-qwen3-vl-{size}", device, torch.bfloat16)
        label = f"random Qwen3-VL-{size}"
    weights = weight_bytes(scorer.model)
    timed("build", started)
    rows = []
    for cameras in (1, 2):
        started = time.monotonic()
        rows += tick_rows(scorer, cameras, plan, label)
        timed(f"live ticks, {cameras} camera(s), {plan.seconds} s episode", started)
    started = time.monotonic()
    offline = offline_rtf(scorer, 2, plan)
    timed(f"offline runner, {plan.offline_s} s episode", started)
    peak = torch.cuda.max_memory_allocated() if cuda else None
    started = time.monotonic()
    diff_bf16, reused, prompt = cached_minus_independent(scorer, plan)
    if size == "tiny":
        del scorer
        scorer = load_scorer(ScorerConfig(model=str(TINY_DIR), device="cpu", dtype="float32"))
    else:
        model = scorer.model.float()  # the same weights, widened in place
        del scorer
        scorer = wrap(model, f"random-qwen3-vl-{size}", device, torch.float32)
    diff_fp32 = cached_minus_independent(scorer, plan)[0]
    timed("cached vs independent, bf16 and fp32", started)
    del scorer
    if cuda:
        torch.cuda.empty_cache()
    return {
        "label": label,
        "rows": rows,
        "offline": offline,
        "weights": weights,
        "peak": peak,
        "diff_bf16": diff_bf16,
        "diff_fp32": diff_fp32,
        "reused": reused,
        "prompt": prompt,
    }


# ----------------------------------------------------------------------------
# The section.
# ----------------------------------------------------------------------------
def gib(n: int | None) -> str:
    return "n/a (CPU)" if n is None else f"{n / 2**30:.2f}"


def section(
    results: list[dict[str, Any]],
    plan: Plan,
    command: str,
    setup: str,
    timings: list[tuple[str, float]],
    total_s: float,
) -> str:
    lines = [
        "## GPU",
        "",
        f"Machine: {describe_machine()}. {setup}",
        "",
        f"Command: `{command}`",
        "",
        "Random weights at the released Qwen3-VL sizes (the configs of `topreward check`'s built-in table), "
        "bfloat16, built in memory: the costs are real, the scores meaningless.",
        "",
        "### Tick latency",
        "",
        f"A live episode through `EpisodeRunner.tick` (the node's scoring step): samples at 2 fps on every "
        f"camera, one tick per second of episode time, run back to back; default `view_size` 244, `max_frames` "
        f"{plan.max_frames}. Each row: the scored ticks of the {plan.span_s} s of episode time before the mark "
        "(with that few ticks p99 is close to the maximum). Prompt tokens: the last of those ticks'; computed: "
        "those not taken from the KV cache.",
        "",
        "| Model | Cameras | Episode time | Samples | Prompt tokens | Computed tokens per tick (median) | Ticks "
        "| p50 (ms) | p99 (ms) | Cache rebuilds so far |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for row in result["rows"]:
            lines.append(
                f"| {row['model']} | {row['cameras']} | {mark_label(row['mark'])} | {row['samples']} | "
                f"{row['prompt']} | {row['new']:.0f} | {row['ticks']} | {row['p50']:.1f} | "
                f"{row['p99']:.1f} | {row['rebuilds']} |"
            )
    lines += [
        "",
        "### Offline real-time factor",
        "",
        "Episode seconds per wall second of the offline runner (`topreward bag`'s path for one episode: the "
        "same ticks at 1 Hz, then the offline curve) over the first part of the two-camera episode.",
        "",
        "| Model | Cameras | Episode (s) | Ticks | Wall (s) | Real-time factor |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        off = result["offline"]
        lines.append(
            f"| {result['label']} | {off['cameras']} | {off['episode_s']} | {off['ticks']} | "
            f"{off['wall_s']:.1f} | {off['rtf']:.2f} |"
        )
    lines += [
        "",
        "### Memory and cached-vs-independent difference",
        "",
        f"Peak: `torch.cuda.max_memory_allocated` over the live and offline runs of the size. Difference: the "
        f"largest |cached - independent| log-probability (nats) after a {plan.fidelity_samples}-sample episode "
        "extended two samples at a time, against one independent forward over the same frames at the same "
        "geometry; the same weights in bfloat16, then cast to float32.",
        "",
        "| Model | Weights (GiB) | Peak allocated (GiB) | Last prompt: tokens from the cache / all "
        "| Difference, bf16 (nats) | Difference, fp32 (nats) |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        lines.append(
            f"| {result['label']} | {gib(result['weights'])} | {gib(result['peak'])} | "
            f"{result['reused']} / {result['prompt']} | {result['diff_bf16']:.2e} | "
            f"{result['diff_fp32']:.2e} |"
        )
    lines += [
        "",
        "Elapsed per part: " + "; ".join(f"{name} {s:.0f} s" for name, s in timings) + f". Total: **{total_s:.0f} s**.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes",
        default=",".join(DEFAULT_SIZES),
        help="comma-separated model sizes of the built-in table (default: %(default)s)",
    )
    parser.add_argument("--quick", action="store_true", help="2-minute episodes, a 1-minute offline run")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="run on the CPU with the tiny test model and short episodes (what the suite runs)",
    )
    parser.add_argument(
        "--output", type=Path, help="write the section here (default: bench/results/gpu.md; with --tiny: print only)"
    )
    args = parser.parse_args()
    import torch

    from topreward_ros.scoring.fit import BUILTIN_MODELS

    command = ("python bench/gpu.py " + " ".join(sys.argv[1:])).strip()
    if args.tiny:
        sizes, plan, device = ["tiny"], TINY, "cpu"
        torch.set_num_threads(1)
        from topreward_ros.tools.tiny_model import build_tiny_model

        build_tiny_model(TINY_DIR)
        setup = "The tiny test model on the CPU: a smoke run of the GPU script, not a GPU measurement."
    else:
        sizes = [s.strip().upper() for s in args.sizes.split(",") if s.strip()]
        unknown = [s for s in sizes if s not in BUILTIN_MODELS]
        if not sizes or unknown:
            parser.error(
                f"--sizes: unknown size(s) {', '.join(unknown) or '(none)'}; known: {', '.join(BUILTIN_MODELS)}"
            )
        if not torch.cuda.is_available():
            print(
                f"No CUDA GPU is available here (torch {torch.__version__}, built for CUDA "
                f"{torch.version.cuda or 'none'}): nothing measured, nothing written. `topreward check` "
                "says why; `--tiny` runs the same code on the CPU with the tiny test model.",
                file=sys.stderr,
            )
            return NO_GPU
        plan, device = (QUICK if args.quick else FULL), "cuda"
        setup = (
            f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}, CUDA {torch.version.cuda}, "
            f"Python {platform.python_version()}."
        )
    output = args.output if args.output is not None else (None if args.tiny else RESULTS / "gpu.md")
    print(setup, flush=True)
    timings: list[tuple[str, float]] = []
    begin = time.monotonic()
    results = [measure(size, device, plan, timings) for size in sizes]
    total_s = time.monotonic() - begin
    text = section(results, plan, command, setup, timings, total_s)
    print(text, flush=True)
    for result in results:
        if not all(math.isfinite(result[k]) for k in ("diff_bf16", "diff_fp32")):
            print(f"{result['label']}: a cached-vs-independent difference is not finite", file=sys.stderr)
            return 1
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        print(f"wrote {output}")
    print(f"total {total_s:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
