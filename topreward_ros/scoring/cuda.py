"""The torch build's CUDA, the NVIDIA driver and the GPUs: can CUDA be used here, and if not, why.

Read without initialising anything heavy: the driver version comes from
``/proc/driver/nvidia/version`` (or ``nvidia-smi``), the build's CUDA version
from ``torch.version.cuda``. The scorer names the result when ``device:
cuda`` cannot be honoured; ``topreward check`` prints it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

#: Oldest NVIDIA driver (Linux) for a torch build's CUDA major version
#: (12.x builds run on 525+ through CUDA's minor-version compatibility).
MIN_DRIVER = {11: 450, 12: 525, 13: 580}
#: Torch wheel CUDA variants, newest first, with the oldest driver each needs.
WHEELS = (("cu130", 580), ("cu128", 570), ("cu126", 525))


@dataclass
class Setup:
    """The torch build, the driver and the GPUs this machine has."""

    torch_version: str = ""
    torch_cuda: str | None = None  # CUDA version the torch wheel was built for (None: a CPU build)
    driver: str | None = None  # NVIDIA driver version (None: none found)
    cuda_available: bool = False
    gpus: list[tuple[str, int, int]] = field(default_factory=list)  # (name, free bytes, total bytes)

    def driver_major(self) -> int | None:
        match = re.match(r"(\d+)", self.driver or "")
        return int(match.group(1)) if match else None

    def needed_driver(self) -> int | None:
        """Oldest driver the torch build's CUDA needs (None when not known or a CPU build)."""
        match = re.match(r"(\d+)", self.torch_cuda or "")
        return MIN_DRIVER.get(int(match.group(1))) if match else None

    def cuda_problem(self) -> str | None:
        """Why CUDA cannot be used here, with the fix; None when it can."""
        if self.cuda_available:
            return None
        if self.torch_cuda is None:
            return (
                f"torch {self.torch_version} is a CPU-only build; install a CUDA wheel of the same torch "
                "version (docs/install.md)"
            )
        if self.driver is None:
            return (
                f"no NVIDIA driver found (torch {self.torch_version} is built for CUDA {self.torch_cuda}); "
                "install the NVIDIA driver"
            )
        needed = self.needed_driver()
        major = self.driver_major()
        if needed is not None and major is not None and major < needed:
            wheel = next((name for name, floor in WHEELS if major >= floor), None)
            fix = f"install the {wheel} torch wheel of the same torch version" if wheel else "update the NVIDIA driver"
            return (
                f"NVIDIA driver {self.driver} is too old for this torch build (CUDA {self.torch_cuda} needs "
                f"driver {needed} or newer): {fix}, or update the driver (docs/install.md)"
            )
        return (
            f"CUDA is not usable (driver {self.driver}, torch built for CUDA {self.torch_cuda}); "
            "check `nvidia-smi` and the GPU's visibility (CUDA_VISIBLE_DEVICES)"
        )


def _driver_version() -> str | None:
    path = Path("/proc/driver/nvidia/version")
    try:
        match = re.search(r"Kernel Module\s+(?:for \S+\s+)?(\d+\.\d+(?:\.\d+)?)", path.read_text())
        if match:
            return match.group(1)
    except OSError:
        pass
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
            )
            first = out.stdout.strip().splitlines()
            if out.returncode == 0 and first:
                return first[0].strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    return None


def inspect_setup() -> Setup:
    """The torch build, the NVIDIA driver and the visible GPUs (free memory from the driver)."""
    import torch

    setup = Setup(torch_version=torch.__version__, torch_cuda=torch.version.cuda, driver=_driver_version())
    setup.cuda_available = bool(torch.cuda.is_available())
    if setup.cuda_available:
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            setup.gpus.append((torch.cuda.get_device_name(index), int(free), int(total)))
    return setup


def cuda_unavailable_message(device: str) -> str:
    """What ``device: cuda`` without a usable CUDA says: driver, the wheel's CUDA, the fix."""
    problem = inspect_setup().cuda_problem() or "CUDA is not available"
    return (
        f"device {device!r} requested but CUDA cannot be used: {problem}; "
        "or set device 'cpu' ('auto' also falls back to the CPU)"
    )
