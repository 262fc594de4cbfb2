"""The ROS-free TOPReward scoring core.

Plain Python (numpy; torch and transformers imported lazily by the backends),
no ROS import anywhere in this package, so it serves the ROS node, the bag
tools and the command line alike.
"""

from topreward_ros.scoring.backends.factory import load_scorer
from topreward_ros.scoring.backends.protocol import EpisodeScoring, ScoringBackend
from topreward_ros.scoring.backends.registry import BACKEND_NAMES
from topreward_ros.scoring.backends.transformers_qwen import EpisodeSession, VideoScorer
from topreward_ros.scoring.config import DEFAULT_MODEL, DEFAULT_SUCCESS_THRESHOLD, ScorerConfig
from topreward_ros.scoring.curve import ProgressCurve, dense_rewards, normalize_minmax, success_score
from topreward_ros.scoring.errors import (
    BackendUnavailableError,
    FrameError,
    InstructionError,
    ModelLoadError,
    ModelOutOfMemoryError,
    ScoringError,
)
from topreward_ros.scoring.frames import compose_views, prepare_view
from topreward_ros.scoring.metrics import best_threshold, success_roc_auc, voc
from topreward_ros.scoring.progress import CausalProgress, SuccessDetector, SuccessVerdict
from topreward_ros.scoring.prompt import build_prompt
from topreward_ros.scoring.schedule import FrameSampler, prefix_lengths, sample_indices
from topreward_ros.scoring.score import Score

__all__ = [
    "BACKEND_NAMES",
    "DEFAULT_MODEL",
    "DEFAULT_SUCCESS_THRESHOLD",
    "BackendUnavailableError",
    "CausalProgress",
    "EpisodeScoring",
    "EpisodeSession",
    "FrameError",
    "FrameSampler",
    "InstructionError",
    "ModelLoadError",
    "ModelOutOfMemoryError",
    "ProgressCurve",
    "Score",
    "ScorerConfig",
    "ScoringBackend",
    "ScoringError",
    "SuccessDetector",
    "SuccessVerdict",
    "VideoScorer",
    "best_threshold",
    "build_prompt",
    "compose_views",
    "dense_rewards",
    "load_scorer",
    "normalize_minmax",
    "prefix_lengths",
    "prepare_view",
    "sample_indices",
    "success_roc_auc",
    "success_score",
    "voc",
]
