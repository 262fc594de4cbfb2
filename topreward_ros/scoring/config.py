"""Configuration of the scorer, validated when it is built.

Every tunable is a typed field with a default; ``__post_init__`` rejects a bad
value with an error that names the field and the value, so a typo in a launch
file or on the command line fails at start-up, not in the middle of an episode.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from topreward_ros.scoring.backends.registry import BACKEND_NAMES, DEFAULT_BACKEND

DEFAULT_MODEL = "Qwen/Qwen3-VL-8B-Instruct"

DEVICE_CHOICES = ("auto", "cpu", "cuda")
DTYPE_CHOICES = ("auto", "bfloat16", "float16", "float32")
ATTN_CHOICES = ("sdpa", "eager", "flash_attention_2")

#: Default success threshold in nats (mean raw log p(" True") of the last
#: prefixes). It is a placeholder, NOT a calibrated value: the paper reports
#: threshold-free ROC-AUC only, raw scores on real data span roughly -19..-6
#: nats and shift with model, camera and prompt. Calibrate it per setup with
#: ``topreward_ros.scoring.metrics.best_threshold`` on labelled episodes.
DEFAULT_SUCCESS_THRESHOLD = -8.0

_CUDA_DEVICE = re.compile(r"^cuda:\d+$")


@dataclass(frozen=True)
class ScorerConfig:
    """How to load the VLM and how to turn its outputs into progress.

    Attributes:
        model: Hub id (``"Qwen/Qwen3-VL-8B-Instruct"``) or a local directory
            saved with ``save_pretrained``.
        revision: Hub branch, tag or commit; ``None`` = default branch.
        cache_dir: Hugging Face cache directory; ``None`` = the standard one
            (``HF_HUB_CACHE`` / ``HF_HOME``).
        local_files_only: never contact the hub (also on when the environment
            sets ``HF_HUB_OFFLINE=1``).
        device: ``"auto"`` (first CUDA GPU if any, else CPU), ``"cpu"``,
            ``"cuda"`` or ``"cuda:N"``.
        dtype: ``"auto"`` (bfloat16 on CUDA, float32 on CPU, where bfloat16
            is slow), ``"bfloat16"``, ``"float16"`` or ``"float32"``.
        attn_implementation: ``"sdpa"``, ``"eager"`` or
            ``"flash_attention_2"`` (CUDA only, needs the flash-attn package).
        sample_fps: rate at which frames are sampled from their real stamps.
        num_prefixes: K, number of prefixes of an offline progress curve.
        view_size: side of the square view each camera image is resized to.
        success_window: number of last raw scores averaged for success.
        success_threshold: success when that mean exceeds this (nats); see
            ``DEFAULT_SUCCESS_THRESHOLD`` (must be calibrated).
        torch_threads: CPU threads for torch; ``None`` leaves torch's default.
        backend: the scoring backend that runs the model, one of
            ``backends.registry.BACKEND_NAMES`` (``"transformers"``: in
            process, through transformers).
    """

    model: str = DEFAULT_MODEL
    revision: str | None = None
    cache_dir: str | None = None
    local_files_only: bool = False
    device: str = "auto"
    dtype: str = "auto"
    attn_implementation: str = "sdpa"
    sample_fps: float = 2.0
    num_prefixes: int = 15
    view_size: int = 244
    success_window: int = 3
    success_threshold: float = DEFAULT_SUCCESS_THRESHOLD
    torch_threads: int | None = None
    backend: str = DEFAULT_BACKEND

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError(f"model must be a hub id or a directory, got {self.model!r}")
        if self.backend not in BACKEND_NAMES:
            raise ValueError(f"backend must be one of {', '.join(BACKEND_NAMES)}, got {self.backend!r}")
        if self.revision is not None and (not isinstance(self.revision, str) or not self.revision.strip()):
            raise ValueError(f"revision must be a non-empty string or None, got {self.revision!r}")
        if self.cache_dir is not None and (not isinstance(self.cache_dir, str) or not self.cache_dir.strip()):
            raise ValueError(f"cache_dir must be a non-empty path or None, got {self.cache_dir!r}")
        if not isinstance(self.local_files_only, bool):
            raise ValueError(f"local_files_only must be a bool, got {self.local_files_only!r}")
        if self.device not in DEVICE_CHOICES and not (isinstance(self.device, str) and _CUDA_DEVICE.match(self.device)):
            raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)} or 'cuda:N', got {self.device!r}")
        if self.dtype not in DTYPE_CHOICES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPE_CHOICES)}, got {self.dtype!r}")
        if self.attn_implementation not in ATTN_CHOICES:
            raise ValueError(
                f"attn_implementation must be one of {', '.join(ATTN_CHOICES)}, got {self.attn_implementation!r}"
            )
        if self.attn_implementation == "flash_attention_2" and self.device == "cpu":
            raise ValueError("attn_implementation 'flash_attention_2' needs a CUDA device, got device 'cpu'")
        if (
            isinstance(self.sample_fps, bool)
            or not isinstance(self.sample_fps, (int, float))
            or not math.isfinite(self.sample_fps)
            or self.sample_fps <= 0
        ):
            raise ValueError(f"sample_fps must be a finite number > 0, got {self.sample_fps!r}")
        if isinstance(self.num_prefixes, bool) or not isinstance(self.num_prefixes, int) or self.num_prefixes < 2:
            raise ValueError(f"num_prefixes must be an integer >= 2, got {self.num_prefixes!r}")
        if isinstance(self.view_size, bool) or not isinstance(self.view_size, int) or self.view_size < 32:
            raise ValueError(
                f"view_size must be an integer >= 32 (the model's 32-pixel patch grid), got {self.view_size!r}"
            )
        if isinstance(self.success_window, bool) or not isinstance(self.success_window, int) or self.success_window < 1:
            raise ValueError(f"success_window must be an integer >= 1, got {self.success_window!r}")
        if (
            isinstance(self.success_threshold, bool)
            or not isinstance(self.success_threshold, (int, float))
            or not math.isfinite(self.success_threshold)
        ):
            raise ValueError(f"success_threshold must be a finite number (nats), got {self.success_threshold!r}")
        if self.torch_threads is not None and (
            isinstance(self.torch_threads, bool) or not isinstance(self.torch_threads, int) or self.torch_threads < 1
        ):
            raise ValueError(f"torch_threads must be an integer >= 1 or None, got {self.torch_threads!r}")
