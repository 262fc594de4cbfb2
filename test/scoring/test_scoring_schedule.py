"""The 2 fps prefix-stable schedule and the paper's prefix lengths."""

from __future__ import annotations

import numpy as np
import pytest

from topreward_ros.scoring import prefix_lengths, sample_indices


def camera_stamps(n: int, fps: float = 30.0, jitter_ns: int = 2_000_000, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    base = 5_000_000_000 + (np.arange(n) * 1e9 / fps).astype(np.int64)
    return (base + rng.integers(-jitter_ns, jitter_ns + 1, n)).tolist()


def test_two_fps_from_thirty_fps_keeps_every_fifteenth_frame() -> None:
    stamps = camera_stamps(300)
    kept = sample_indices(stamps, 2.0)
    assert kept[0] == 0
    assert np.all(np.isin(np.diff(kept), [14, 15, 16]))
    # 300 frames span 9.97 s: slots 0, 0.5, ..., 10.0 s; the last frame (9.967 s)
    # is within the slot slack of the 10 s slot.
    assert len(kept) == 21


def test_schedule_is_prefix_stable() -> None:
    stamps = camera_stamps(200, fps=24.0, jitter_ns=8_000_000, seed=3)
    full = sample_indices(stamps, 2.0)
    for k in range(1, 200, 7):
        assert sample_indices(stamps[:k], 2.0) == [i for i in full if i < k]


def test_prefix_lengths_are_the_papers_linspace() -> None:
    assert prefix_lengths(40, 15) == sorted({int(x) for x in np.rint(np.linspace(1, 40, 15))})
    assert prefix_lengths(40, 15)[0] == 1 and prefix_lengths(40, 15)[-1] == 40
    assert prefix_lengths(5, 15) == [1, 2, 3, 4, 5]
    assert prefix_lengths(1, 15) == [1]


def test_prefix_lengths_reject_bad_counts() -> None:
    with pytest.raises(ValueError, match="num_frames must be >= 1, got 0"):
        prefix_lengths(0, 15)
    with pytest.raises(ValueError, match="num_prefixes must be >= 1, got 0"):
        prefix_lengths(10, 0)
