"""EpisodeWindow: the schedule, camera pairing and memory bound shared by node and bags."""

from __future__ import annotations

import numpy as np
import pytest

from topreward_ros.episode.window import MISSING_VIEW_VALUE, AddResult, EpisodeWindow
from topreward_ros.scoring.schedule import FrameSampler, prefix_lengths, sample_indices

MS = 1_000_000
CAMERA_30HZ_NS = [i * 33_333_333 for i in range(300)]  # 10 s at 30 Hz


def view(value: int, size: int = 8) -> np.ndarray:
    return np.full((size, size, 3), value, dtype=np.uint8)


def test_schedule_keeps_2fps_from_30hz_stamps():
    kept = sample_indices(CAMERA_30HZ_NS, 2.0)
    stamps = np.array([CAMERA_30HZ_NS[i] for i in kept])
    assert len(kept) == 21  # slots 0.0 .. 10.0 s; the 9.97 s frame fills the last
    # One frame per 0.5 s slot, never more than a camera period late or
    # more than the slack early.
    slots = np.arange(21) * 500 * MS
    assert np.all(stamps >= slots - 50 * MS)
    assert np.all(stamps < slots + 34 * MS)


def test_schedule_is_prefix_stable_on_irregular_stamps():
    rng = np.random.default_rng(0)
    stamps = np.cumsum(rng.integers(5 * MS, 120 * MS, size=400))
    full = sample_indices(stamps, 2.0)
    for cut in (1, 7, 50, 123, 399):
        prefix = sample_indices(stamps[:cut], 2.0)
        assert prefix == [i for i in full if i < cut]


def test_schedule_leaves_a_gap_after_a_stall_instead_of_backfilling():
    stamps = [0, 500 * MS, 3_000 * MS, 3_033 * MS, 3_500 * MS]
    assert sample_indices(stamps, 2.0) == [0, 1, 2, 4]


def test_prefix_lengths_match_paper_linspace():
    assert prefix_lengths(100, 15) == sorted(set(np.rint(np.linspace(1, 100, 15)).astype(int)))
    assert prefix_lengths(5, 15) == [1, 2, 3, 4, 5]
    assert prefix_lengths(1, 15) == [1]
    with pytest.raises(ValueError, match="num_frames must be >= 1"):
        prefix_lengths(0, 15)


def test_sampler_rejects_nonpositive_rate():
    with pytest.raises(ValueError, match="sample_fps must be > 0, got 0"):
        FrameSampler(0)


def test_window_matches_offline_schedule_and_wants_is_exact():
    window = EpisodeWindow(sample_fps=2.0)
    for i, stamp in enumerate(CAMERA_30HZ_NS):
        wanted = window.wants(0, stamp)
        result = window.add(0, stamp, view(i % 250))
        assert wanted == (result is AddResult.KEPT)
    samples = window.finalize()
    assert [s.stamp_ns for s in samples] == [CAMERA_30HZ_NS[i] for i in sample_indices(CAMERA_30HZ_NS, 2.0)]
    assert window.finalize() == []


def test_clock_jumping_back_is_stale_not_kept():
    window = EpisodeWindow()
    assert window.add(0, 1_000 * MS, view(1)) is AddResult.KEPT
    assert not window.wants(0, 400 * MS)
    assert window.add(0, 400 * MS, view(2)) is AddResult.STALE
    assert [s.stamp_ns for s in window.finalize()] == [1_000 * MS]


def test_two_cameras_pair_nearest_frame_side_by_side():
    window = EpisodeWindow(num_cameras=2, sync_tolerance_ns=20 * MS)
    # Secondary camera runs 10 ms behind the primary, both at 30 Hz.
    for i, stamp in enumerate(CAMERA_30HZ_NS[:40]):
        if window.wants(0, stamp):
            window.add(0, stamp, view(10), frame_id="front")
        second = stamp + 10 * MS
        if window.wants(1, second):
            window.add(1, second, view(200))
    samples = window.finalize()
    assert len(samples) == 3
    for sample in samples:
        assert sample.image.shape == (8, 16, 3)
        assert (sample.image[:, :8] == 10).all() and (sample.image[:, 8:] == 200).all()
        assert sample.view_stamps_ns[1] - sample.view_stamps_ns[0] == 10 * MS
        assert sample.frame_id == "front"


def test_sample_waits_for_the_secondary_camera():
    window = EpisodeWindow(num_cameras=2, sync_tolerance_ns=50 * MS)
    window.add(0, 0, view(1))
    assert window.finalize() == []  # the second camera may still deliver
    window.add(1, 5 * MS, view(2))
    (sample,) = window.finalize()
    assert sample.view_stamps_ns == (0, 5 * MS)


def test_silent_secondary_camera_counts_a_sync_miss_and_uses_grey():
    window = EpisodeWindow(num_cameras=2, sync_tolerance_ns=50 * MS)
    window.add(0, 0, view(1))
    window.add(0, 500 * MS, view(1))
    (first,) = window.finalize()
    assert window.sync_misses == 1
    assert (first.image[:, 8:] == MISSING_VIEW_VALUE).all()
    assert first.view_stamps_ns == (0, None)
    (second,) = window.flush()
    assert second.stamp_ns == 500 * MS


def test_stalled_secondary_camera_gives_grey_not_its_last_frame():
    """A secondary that stops must not lend its old frame to later samples."""
    tol = 50 * MS
    window = EpisodeWindow(num_cameras=3, sync_tolerance_ns=tol)
    # Camera 1 delivers for the first 0.7 s only; camera 2 keeps delivering.
    for stamp in CAMERA_30HZ_NS[:90]:
        if window.wants(0, stamp):
            window.add(0, stamp, view(10))
        if stamp < 700 * MS and window.wants(1, stamp + 5 * MS):
            window.add(1, stamp + 5 * MS, view(100))
        if window.wants(2, stamp + 7 * MS):
            window.add(2, stamp + 7 * MS, view(200))
    samples = window.flush()
    assert len(samples) == len(sample_indices(CAMERA_30HZ_NS[:90], 2.0)) == 7
    live = [s for s in samples if s.stamp_ns < 700 * MS]
    stalled = [s for s in samples if s.stamp_ns >= 700 * MS]
    assert len(live) == 2 and len(stalled) == 5
    for sample in live:
        assert (sample.image[:, 8:16] == 100).all()
        assert abs(sample.view_stamps_ns[1] - sample.stamp_ns) <= tol
    for sample in stalled:
        assert (sample.image[:, 8:16] == MISSING_VIEW_VALUE).all()
        assert sample.view_stamps_ns[1] is None
    for sample in samples:
        assert (sample.image[:, 16:] == 200).all()
        assert sample.view_stamps_ns[2] - sample.stamp_ns == 7 * MS
    assert window.sync_misses_by_camera == [0, 5, 0]
    assert window.sync_misses == 5


def test_secondary_frame_just_outside_the_tolerance_is_a_miss():
    window = EpisodeWindow(num_cameras=2, sync_tolerance_ns=20 * MS)
    window.add(1, 0, view(50))
    window.add(0, 21 * MS, view(1))
    window.add(0, 600 * MS, view(1))
    first = window.finalize()[0]
    assert first.view_stamps_ns == (21 * MS, None)
    assert (first.image[:, 8:] == MISSING_VIEW_VALUE).all()
    assert window.sync_misses_by_camera == [0, 1]


def test_memory_bound_thins_history_but_keeps_the_episode_start():
    window = EpisodeWindow(sample_fps=2.0, max_frames=4)
    generation = window.generation
    for k in range(5):
        window.add(0, k * 500 * MS, view(k))
    window.finalize()
    assert [s.stamp_ns for s in window.samples] == [0, 1_000 * MS, 2_000 * MS]
    assert window.generation == generation + 1
    # Sampling continues at the halved rate: 2.5 s is skipped, 3.0 s is kept.
    assert window.add(0, 2_500 * MS, view(5)) is AddResult.SKIPPED
    assert window.add(0, 3_000 * MS, view(6)) is AddResult.KEPT
    assert len(window.samples) <= 4


def test_reset_starts_a_fresh_episode():
    window = EpisodeWindow()
    window.add(0, 5_000 * MS, view(1))
    window.finalize()
    window.reset()
    assert window.samples == []
    assert window.add(0, 1_000 * MS, view(1)) is AddResult.KEPT


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_cameras": 0}, "num_cameras must be >= 1, got 0"),
        ({"max_frames": 1}, "max_frames must be >= 2, got 1"),
        ({"sync_tolerance_ns": -1}, "sync_tolerance_ns must be >= 0, got -1"),
    ],
)
def test_window_validates_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EpisodeWindow(**kwargs)
