"""The scorer node's episode flow: instructions and frames in, scores and verdicts out.

A mixin of ``ScorerNodeBase``, the part of the node the callbacks run:

* an instruction (message, parameter, reset) starts an episode or is refused;
* a camera frame is judged against exactly one episode (``FrameIntake`` says
  which: publication order and stamps) and stored unconverted if needed;
* a tick scores the running episode and publishes progress, success and the
  progress picture; the verdicts of ended episodes follow it.

Locks: ``_frame_lock`` around frame judging and episode switches,
``_tick_lock`` around a tick, ``_lock`` around the records diagnostics read.
"""

from __future__ import annotations

import time
from typing import Any

from rclpy.clock import ClockChange, TimeJump
from sensor_msgs.msg import Image  # the progress picture
from std_msgs.msg import String
from std_srvs.srv import Trigger

from topreward_ros.episode.camera_view import CameraView
from topreward_ros.episode.records import (
    END_CLOCK_JUMP,
    END_NEW_INSTRUCTION,
    END_REFUSED,
    END_RESET,
    END_STAMP_CUT,
    TickResult,
)
from topreward_ros.episode.window import AddResult
from topreward_ros.node.diagnostics import ModelState
from topreward_ros.node.intake import BACK, REPEATED, message_key, source_timestamp
from topreward_ros.rendering import picture as progress_picture
from topreward_ros.rendering.messages import episode_result, episode_success, task_progress
from topreward_ros.scoring.errors import InstructionError
from topreward_ros.scoring.prompt import validate_instruction
from topreward_ros.scoring.stamps import NS_PER_S

INSTRUCTION_TOPIC = "instruction"


def stamp_to_ns(stamp: Any) -> int:
    """A ``builtin_interfaces/Time`` in integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


class EpisodeFlow:
    """Instruction, camera, reset, clock-jump and tick callbacks of ``ScorerNodeBase``."""

    # -- episodes ----------------------------------------------------------------
    def _start_episode(
        self,
        instruction: str,
        reason: str,
        published_ns: int | None = None,
        new_task: bool = False,
        end_reason: str = END_NEW_INSTRUCTION,
    ) -> str | None:
        """Start a new episode, or refuse a bad instruction (logged, reported).

        ``published_ns``: publication time of the instruction message. Camera
        frames published before it are kept out of the new episode, and those
        published after it but handled before it (remembered for
        ``REORDER_WINDOW_S``) are moved into it. ``new_task``: the instruction
        comes from a message or the parameter; refusing it ends the running
        episode, as ``topreward bag`` does, so frames of a task the node cannot
        score never count toward the previous task's success. ``end_reason``:
        why the running episode ends (its EpisodeResult's code).
        """
        with self._frame_lock:
            try:
                # Control tokens in the text would change the prompt's structure.
                scorer = self._model.scorer
                if scorer is not None:
                    scorer.validate_instruction(instruction)
                else:
                    validate_instruction(instruction)
            except ValueError as exc:
                self._refuse(instruction, f"{reason}: {exc}", new_task)
                return None
            previous = self._runner.episode_id
            episode_id = self._runner.start(instruction, end_reason=end_reason, end_detail=reason)
            for stats in self._cameras:
                stats.last_stamp_ns = None
            # Frames published after the instruction but handled before it: the new episode's.
            moving = self._intake.episode_started(previous, published_ns)
            for frame in moving:
                self._offer(frame.camera, frame.message, frame.published_ns)
                self._cameras[frame.camera].reordered += 1
            moved = len(moving)
            refused, self._refused_since = self._refused_since, None
        with self._lock:
            self._last_instruction = instruction
            self._last_result = None
            self._episode_event.record(f"episode {episode_id} started ({reason})")
        note = f", {moved} frame(s) published after the instruction moved into it" if moved else ""
        if refused is not None:
            note += f"; nothing was scored for {time.monotonic() - refused[0]:.1f} s after a refused instruction"
        self.get_logger().info(f"episode {episode_id} started ({reason}): {instruction!r}{note}")
        return episode_id

    def _refuse(self, instruction: str, text: str, new_task: bool) -> None:
        """A refused instruction: report it; a new task's refusal ends the running episode."""
        self._refused_instructions += 1
        if new_task:
            ended = self._runner.episode_id
            self._runner.stop(END_REFUSED, text)
            self._intake.episode_refused()
            self._last_instruction = instruction  # a reset asks for it again, and is refused too
            if self._refused_since is None:
                self._refused_since = (time.monotonic(), text)
            if ended:
                text += f"; episode {ended} ended, nothing is scored until a valid instruction arrives"
        self._episode_error.record(text)
        self.get_logger().error(text, throttle_duration_sec=5.0)

    def _on_instruction_msg(self, msg: String, info: Any) -> None:
        # Two parameters, no default: rclpy passes the message info (with the
        # publication time) only to a callback that cannot be called with one.
        if self._intake.is_repeat(message_key(msg.data, info)):
            return  # the same message, by the other subscription
        if not msg.data.strip():
            message = "empty instruction received on the instruction topic: ignored, episode unchanged"
            self._episode_error.record(message)
            self.get_logger().error(message, throttle_duration_sec=5.0)
            return
        self._start_episode(msg.data, "instruction message", published_ns=source_timestamp(info), new_task=True)

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if self._model.state == ModelState.FAILED:
            self._model.start("reset")
        instruction = self._runner.instruction or self._last_instruction
        if not instruction:
            response.success = False
            response.message = (
                f"no instruction yet: publish one on {self.resolve_topic_name(INSTRUCTION_TOPIC)} "
                "or set the 'instruction' parameter"
            )
            return response
        episode_id = self._start_episode(instruction, "reset service", end_reason=END_RESET)
        response.success = episode_id is not None
        response.message = episode_id or "could not start an episode"
        return response

    def _on_clock_jump(self, jump: TimeJump) -> None:
        """Time went backwards (a looping bag, a restarted simulator): a new episode.

        The window only accepts frames newer than those it holds, so the old
        episode could not continue with the replayed frames anyway.
        """
        if jump.clock_change in (ClockChange.ROS_TIME_ACTIVATED, ClockChange.ROS_TIME_DEACTIVATED):
            message = f"clock source changed ({jump.clock_change.name})"
        else:
            message = f"ROS clock jumped back by {-jump.delta.nanoseconds / NS_PER_S:.3f} s"
        self._episode_error.record(message)
        self.get_logger().warning(message, throttle_duration_sec=5.0)
        if self._runner.active and self._runner.instruction:
            self._start_episode(self._runner.instruction, message, end_reason=END_CLOCK_JUMP)

    # -- frames ------------------------------------------------------------------
    def _on_image(self, camera: int, msg: Any, info: Any) -> None:
        """Cheap unless the frame is needed: never converts a frame that will be dropped."""
        stats = self._cameras[camera]
        stats.received += 1
        now = time.monotonic()
        stats.arrivals.append(now)
        published_ns = source_timestamp(info)
        with self._frame_lock:
            self._intake.remember(camera, published_ns, msg)
            self._offer(camera, msg, published_ns)

    def _offer(self, camera: int, msg: Any, published_ns: int | None) -> None:
        """Judge one frame against the running episode (callers hold ``_frame_lock``)."""
        stats = self._cameras[camera]
        if self._intake.belongs_before(published_ns):
            # Published before the instruction that started this episode, handled
            # after it (topics are not delivered in order with each other): the
            # frame belongs to the episode before, as in the bag's log order. It
            # still joins that episode if its result is not made yet.
            added = AddResult.SKIPPED
            if self._intake.previous_episode is not None:
                added = self._runner.add_to_ended(
                    self._intake.previous_episode,
                    camera,
                    stamp_to_ns(msg.header.stamp),
                    CameraView(msg, self._settings.view_size),
                    msg.header.frame_id,
                )
            if added is AddResult.KEPT:
                stats.kept += 1
            else:
                stats.not_needed += 1
            return
        stamp_ns = stamp_to_ns(msg.header.stamp)
        # The primary camera cuts episodes by the offline sources' own rule.
        check = self._intake.check_stamp(
            camera,
            stamp_ns,
            float(self.get_parameter("stamp_jump_restart_s").value),
            float(self.get_parameter("stamp_gap_restart_s").value),
        )
        previous, cut = check.previous_ns, check.cut
        if check.order == BACK:
            stats.stale += 1
            stats.error.record(f"frame stamp went back by {(previous - stamp_ns) / NS_PER_S:.3f} s")
            if cut is not None and self._runner.instruction:
                self._start_episode(self._runner.instruction, cut.reason, end_reason=END_STAMP_CUT)
        elif check.order == REPEATED:
            # A driver publishing zero or constant stamps: such frames are never
            # sampled (the schedule reads time from stamps), so say so.
            stats.stamps_repeated += 1
            text = f"frame stamp does not increase ({stamp_ns} ns repeated): frame not sampled"
            stats.error.record(text)
            self.get_logger().warning(f"{stats.topic}: {text}", throttle_duration_sec=5.0)
        elif cut is not None and self._runner.instruction:
            # Zero stamps turned real, or a long pause: one window must never
            # span it (the model would see samples years apart).
            stats.stamp_gaps += 1
            stats.error.record(cut.reason)
            self.get_logger().warning(f"{stats.topic}: {cut.reason}", throttle_duration_sec=5.0)
            self._start_episode(self._runner.instruction, cut.reason, end_reason=END_STAMP_CUT)
        stats.last_stamp_ns = stamp_ns
        self._intake.record_stamp(camera, stamp_ns)
        if not self._runner.wants(camera, stamp_ns):
            stats.not_needed += 1
            return
        # Stored as is: the scoring thread converts it when its sample is composed.
        view = CameraView(msg, self._settings.view_size)
        result = self._runner.add(camera, stamp_ns, view, msg.header.frame_id)
        if result is AddResult.KEPT:
            stats.kept += 1
        elif result is AddResult.STALE:
            stats.stale += 1
        else:
            stats.not_needed += 1

    def _report_bad_frames(self) -> None:
        """Count and report the kept frames the scoring thread could not convert."""
        for bad in self._runner.take_bad_frames():
            stats = self._cameras[bad.camera]
            stats.bad += 1
            text = f"bad image on {stats.topic}: {bad.error}"
            stats.error.record(text)
            self.get_logger().error(text, throttle_duration_sec=5.0)

    # -- scoring -----------------------------------------------------------------
    def _on_tick(self) -> None:
        if not self._tick_lock.acquire(blocking=False):
            self._scoring.skipped_ticks += 1
            return
        try:
            self._tick()
            # After the live score, which keeps its timing: the verdicts of episodes that ended.
            self._publish_ended()
        finally:
            self._scoring.running_since = None
            self._report_bad_frames()
            self._tick_lock.release()

    def _tick(self) -> None:
        if self._lifecycle_state != "active":
            return
        ready = self._model.ready
        if not ready or not self._runner.active:
            self._scoring.idle_ticks += 1
            if self._runner.active:
                self._runner.compose()  # hold small views, not camera images, until a model is ready
            return
        self._scoring.ticks += 1
        self._scoring.running_since = time.monotonic()
        try:
            result = self._runner.tick()
        except InstructionError as exc:  # cannot score this episode at all: end it
            text = f"instruction refused by the model: {exc}"
            self._scoring.error.record(text)
            with self._frame_lock:
                self._refuse(self._runner.instruction or "", text, new_task=True)
            return
        except Exception as exc:  # keep serving whatever the model does
            if isinstance(exc, MemoryError):  # the backends' ModelOutOfMemoryError
                self._scoring.ooms += 1
                text = f"out of memory during a tick, skipped: {exc}"
            else:
                text = f"tick failed, skipped: {type(exc).__name__}: {exc}"
            self._scoring.error.record(text)
            self.get_logger().error(text, throttle_duration_sec=5.0)
            return
        if result is None:
            self._scoring.idle_ticks += 1
            return
        t0 = time.perf_counter()
        self._publish(result)
        timings = dict(result.timings)
        timings["publish_s"] = time.perf_counter() - t0
        if self._draw_picture(result):
            timings["picture_s"] = time.perf_counter() - t0 - timings["publish_s"]
        self._scoring.last_timings = timings
        self._scoring.latencies.append(result.latency_s)
        self._scoring.published += 1
        with self._lock:
            self._last_result = result

    def _publish_ended(self, unscored: str | None = None) -> None:
        """Judge the episodes that ended (final samples scored once) and publish their results.

        Scoring thread, under the node's tick lock (``unscored``: not, and no score is made).
        """
        if self._runner.ended_pending == 0:
            return
        for summary in self._runner.finish_ended(unscored):
            if self._result_pub is not None:
                self._result_pub.publish(episode_result(summary, self._messages))
            self._results_published += 1
            with self._lock:
                self._last_summary = summary
            verdict = "success" if summary.success else "no success"
            unscored = "" if summary.final_frames_scored else f"; last frames not scored: {summary.not_scored_reason}"
            text = (
                f"episode {summary.episode_id} ended ({summary.end_reason}): {verdict}, "
                f"{summary.ticks} score(s), threshold {summary.threshold:.3f}{unscored}"
            )
            # Two call sites: rclpy refuses one call site logging at two severities.
            if summary.final_frames_scored:
                self.get_logger().info(text)
            else:
                self.get_logger().warning(text)

    def _publish(self, result: TickResult) -> None:
        self._progress_pub.publish(task_progress(result, self._messages))
        if result.success_fired and result.episode_id not in self._success_sent:
            self._success_sent.add(result.episode_id)
            self._success_pub.publish(episode_success(result, self._settings.success_consecutive, self._messages))
            self.get_logger().info(
                f"episode {result.episode_id}: success (score {result.success_score:.3f} > "
                f"{result.success_threshold:.3f})"
            )

    def _draw_picture(self, result: TickResult) -> bool:
        """Publish the progress picture of this tick, if anyone subscribes (scoring thread)."""
        if result.episode_id != self._picture_episode:
            self._picture_episode, self._picture_progress = result.episode_id, []
        self._picture_progress.append(result.progress)
        if self._image_pub.get_subscription_count() == 0:
            return False
        view = self._runner.sample_image(result.episode_id, result.stamp_ns)
        picture = progress_picture.render(
            view,
            self._picture_progress,
            success=result.success,
            success_score=result.success_score,
            threshold=result.success_threshold,
            view_height=self._settings.view_size,
        )
        msg = Image()
        msg.header.stamp = self._messages.stamp(result.stamp_ns)
        msg.header.frame_id = result.frame_id
        msg.height, msg.width = picture.shape[:2]
        msg.encoding, msg.is_bigendian, msg.step = "rgb8", 0, picture.shape[1] * 3
        msg.data = picture.tobytes()
        self._image_pub.publish(msg)
        return True
