"""The scorer node's /diagnostics: a snapshot of its health records, published on a steady timer.

A mixin of ``ScorerNodeBase``. The timer runs on the steady clock, so reports
keep coming when simulated time stops; it is also where a failed model load is
retried when due. What each status says is decided by the builders in
``topreward_ros.node.diagnostics``; this part only gathers their inputs.
"""

from __future__ import annotations

import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

from topreward_ros.node.diagnostics import (
    CameraStats,
    camera_status,
    episode_status,
    model_status,
    qos_status,
    scoring_status,
)


class NodeHealth:
    """The diagnostics timer's work for ``ScorerNodeBase``."""

    _cameras: list[Any]

    def _on_diagnostics(self) -> None:
        if self._model.retry_due(time.monotonic()):
            self._model.start("periodic retry")
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = self.diagnostic_statuses()
        self._diag_pub.publish(array)

    def diagnostic_statuses(self) -> list[DiagnosticStatus]:
        """The node's health as DiagnosticStatus entries (model, cameras, episode, scoring)."""
        now = time.monotonic()
        prefix = self.get_name()
        return [
            self._model_status(prefix, now),
            *(self._camera_status(prefix, i, s, now) for i, s in enumerate(self._cameras)),
            self._episode_status(prefix, now),
            self._scoring_status(prefix, now),
            qos_status(prefix, self._qos.counts(), self._qos.last_policies()),
        ]

    def _model_status(self, prefix: str, now: float) -> DiagnosticStatus:
        return model_status(prefix, str(self.get_parameter("model").value), self._model.view(now))

    def _camera_status(self, prefix: str, index: int, stats: CameraStats, now: float) -> DiagnosticStatus:
        return camera_status(
            prefix,
            index,
            stats,
            now,
            resolved_topic=self.resolve_topic_name(stats.topic),
            stall_warn_s=float(self.get_parameter("camera_stall_warn_s").value),
            stall_error_s=float(self.get_parameter("camera_stall_error_s").value),
            ros_now_ns=self.get_clock().now().nanoseconds,
        )

    def _episode_status(self, prefix: str, now: float) -> DiagnosticStatus:
        runner = self._runner
        with self._lock:
            result, last_ended = self._last_result, self._last_summary
        return episode_status(
            prefix,
            now,
            episode_id=runner.episode_id,
            instruction=runner.instruction,
            window=runner.window,
            max_frames=self._settings.max_frames,
            event=self._episode_event,
            error=self._episode_error,
            last_result=result,
            secondary_topics=[c.topic for c in self._cameras[1:]],
            refused_since=self._refused_since,
            refused_instructions=self._refused_instructions,
            threshold=self._settings.threshold_for(runner.instruction),
            per_task_threshold=self._settings.thresholds.is_per_task(runner.instruction),
            last_ended=last_ended,
            results_published=self._results_published,
        )

    def _scoring_status(self, prefix: str, now: float) -> DiagnosticStatus:
        return scoring_status(
            prefix,
            now,
            self._scoring,
            rate_hz=float(self.get_parameter("rate_hz").value),
            primary=self._cameras[0],
            episode_active=self._runner.active,
            stall_warn_s=float(self.get_parameter("camera_stall_warn_s").value),
            last_result=self._last_result,
            lifecycle_state=self._lifecycle_state,
        )
