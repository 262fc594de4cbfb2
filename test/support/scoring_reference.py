"""The independent reference a scoring backend is checked against, and test episodes.

``reference_log_probs`` is the TOPReward computation written out with plain
transformers calls and nothing of the package: the paper's prompt typed in
full, the processor given the frames with their real stamps as frame
"indices" at 1e9 fps, one forward, log-softmax over the whole vocabulary at
the position before the answer token " True". A backend's ``score`` must
equal it (the LeRobot-equivalent number), whatever the backend does inside.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

INSTRUCTION = "put the red block in the bowl"
#: Qwen's token id of the answer " True".
TRUE_TOKEN_ID = 3007


def make_episode(n: int, seed: int = 0, size: tuple[int, int] = (64, 64)) -> tuple[list[np.ndarray], list[int]]:
    """Random frames with non-uniform stamps (0.3..0.9 s apart, arbitrary origin)."""
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n)]
    gaps = rng.integers(300_000_000, 900_000_000, n)
    stamps = (1_700_000_000_000_000_000 + np.cumsum(gaps)).tolist()
    return frames, [int(s) for s in stamps]


class ReferenceModel:
    """A Qwen3-VL model and processor loaded with transformers alone, to score the reference way."""

    def __init__(self, model_dir: str | Path, device: str = "cpu", dtype: str = "float32") -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(model_dir)
        self.model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=getattr(torch, dtype)).to(device)
        self.model.eval()
        self.device = device
        tokenizer = self.processor.tokenizer
        self.false_token_id = tokenizer.encode(" False", add_special_tokens=False)[0]

    def log_probs(self, frames: list[np.ndarray], stamps_ns: list[int], instruction: str) -> tuple[float, float]:
        """(log p(" True"), log p(" False")) of the prefix ``frames``, one plain forward."""
        import torch

        text = (
            "<|im_start|>user\n<|video_pad|>The above video shows a robot manipulation trajectory that "
            f"completes the following task: {instruction} Decide whether the above statement is True or not. "
            "The answer is: True"
        )
        if len(frames) == 1:  # Qwen needs two temporal steps: the frame twice
            frames, stamps_ns = frames * 2, stamps_ns * 2
        offsets = [s - stamps_ns[0] for s in stamps_ns]
        inputs = self.processor(
            text=[text],
            videos=[np.stack(frames)],
            video_metadata=[{"fps": 1e9, "frames_indices": offsets, "total_num_frames": len(frames)}],
            do_sample_frames=False,
            cap_pixels_per_frame=False,
            return_tensors="pt",
        )
        inputs.pop("video_metadata", None)
        assert int(inputs["input_ids"][0, -1]) == TRUE_TOKEN_ID
        inputs = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in inputs.items()}
        with torch.no_grad():
            logits = self.model(**inputs).logits
        log_probs = torch.log_softmax(logits[0, -2].float(), dim=-1)
        return float(log_probs[TRUE_TOKEN_ID]), float(log_probs[self.false_token_id])
