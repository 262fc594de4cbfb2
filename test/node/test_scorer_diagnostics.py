"""The scoring entry of /diagnostics names every condition that holds, not only the first.

``scoring_status`` is a pure builder: it is given the counters and the primary
camera's record and returns the ``DiagnosticStatus``. A busy machine can skip
ticks while the primary camera stalls; an operator needs to read both.
"""

from __future__ import annotations

import pytest

pytest.importorskip("diagnostic_msgs")

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402

from topreward_ros.episode.cameras import RAW  # noqa: E402
from topreward_ros.node.diagnostics import CameraStats, ScoringStats, scoring_status  # noqa: E402

NOW = 1000.0
RATE_HZ = 2.0
STALL_WARN_S = 1.0


def values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def stalled_camera() -> CameraStats:
    """The primary camera: last frame 5 s ago, stamped 12.5 s."""
    camera = CameraStats(topic="/cam", camera_type=RAW, created_at=NOW - 60.0)
    camera.arrivals.extend([NOW - 6.0, NOW - 5.0])
    camera.last_stamp_ns = 12_500_000_000
    return camera


def receiving_camera() -> CameraStats:
    camera = CameraStats(topic="/cam", camera_type=RAW, created_at=NOW - 60.0)
    camera.arrivals.extend([NOW - 0.6, NOW - 0.1])
    camera.last_stamp_ns = 12_500_000_000
    return camera


def slow_stats() -> ScoringStats:
    """Ticks skipped, the last tick longer than 1 / rate_hz."""
    stats = ScoringStats(ticks=60, published=13, skipped_ticks=47)
    stats.latencies.append(1.2)
    return stats


def build(stats: ScoringStats, camera: CameraStats, **kwargs: object) -> DiagnosticStatus:
    return scoring_status(
        "scorer_node",
        NOW,
        stats,
        rate_hz=RATE_HZ,
        primary=camera,
        episode_active=True,
        stall_warn_s=STALL_WARN_S,
        **kwargs,
    )


def test_a_stall_and_skipped_ticks_are_both_named() -> None:
    status = build(slow_stats(), stalled_camera())
    assert status.level == DiagnosticStatus.WARN
    assert status.message == (
        "primary camera /cam stalled: no new frames since stamp 12.500 s, 5.0 s ago; scores are not updating; "
        "scoring slower than rate_hz: 47 ticks skipped"
    )
    assert values(status)["primary_camera_stalled"] == "True"
    assert values(status)["scoring_slower_than_rate"] == "True"


def test_each_condition_alone() -> None:
    stall = build(ScoringStats(ticks=5, published=5), stalled_camera())
    assert stall.level == DiagnosticStatus.WARN and "ticks skipped" not in stall.message
    assert stall.message.startswith("primary camera /cam stalled")
    assert values(stall)["scoring_slower_than_rate"] == "False"

    slow = build(slow_stats(), receiving_camera())
    assert slow.level == DiagnosticStatus.WARN
    assert slow.message == "scoring slower than rate_hz: 47 ticks skipped"
    assert values(slow)["primary_camera_stalled"] == "False"

    fine = build(ScoringStats(ticks=5, published=5), receiving_camera())
    assert (fine.level, fine.message) == (DiagnosticStatus.OK, "5 scores published")


def test_a_failed_tick_raises_the_level_and_keeps_the_other_conditions() -> None:
    stats = slow_stats()
    stats.error.record("CUDA out of memory while scoring 200 frames")
    stats.error.at = NOW - 1.0
    status = build(stats, stalled_camera())
    assert status.level == DiagnosticStatus.ERROR
    parts = status.message.split("; ")
    assert parts[0] == "CUDA out of memory while scoring 200 frames"
    assert any(p.startswith("primary camera /cam stalled") for p in parts), parts
    assert parts[-1] == "scoring slower than rate_hz: 47 ticks skipped"


def test_an_inactive_managed_node_reports_only_that_it_is_not_scoring() -> None:
    status = build(slow_stats(), stalled_camera(), lifecycle_state="inactive")
    assert (status.level, status.message) == (DiagnosticStatus.OK, "inactive: not scoring")
