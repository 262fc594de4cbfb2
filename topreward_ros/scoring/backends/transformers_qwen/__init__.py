"""The ``transformers`` backend: Qwen3-VL (and Qwen2/2.5-VL) run in-process through transformers.

* ``loader``: ``load(config)``, the registry's entry: finds, loads and places the model;
* ``runtime``: torch, device, dtype, hub location, and out-of-memory translation;
* ``scorer``: ``VideoScorer``, the reference forward and the prefix curve;
* ``session``: ``EpisodeSession``, incremental scoring with exact KV-cache reuse;
* ``sizing``: the frame size of a video and of a whole episode.
"""

from topreward_ros.scoring.backends.transformers_qwen.scorer import VideoScorer
from topreward_ros.scoring.backends.transformers_qwen.session import EpisodeSession

__all__ = ["EpisodeSession", "VideoScorer"]
