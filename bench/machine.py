"""One description of the machine a benchmark ran on, shared by every bench script.

Absolute times mean something only next to the hardware that produced them,
so every section of BENCHMARKS.md names it the same way.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def describe_machine() -> str:
    """CPU model, cores, memory, Python and (if importable) torch, and whether a GPU was used."""
    cpu = platform.processor() or platform.machine() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    parts = [cpu, f"{os.cpu_count()} cores", f"{mem_gib:.0f} GiB RAM"]
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU used"
        parts += [gpu, f"Python {platform.python_version()}", f"torch {torch.__version__}"]
    except ImportError:
        parts += [f"Python {platform.python_version()}"]
    return ", ".join(parts)
