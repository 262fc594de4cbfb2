"""A test rig for the scorer node: the node as a process, and the robot around it.

``NodeProcess`` starts the INSTALLED ``scorer_node`` executable with the
package's parameters file (what ``ros2 run`` / the launch file do).
``Rig`` is the rest of the robot on a real rclpy graph: it publishes
``/clock`` (simulated time advancing with the wall clock), cameras (raw
``sensor_msgs/Image`` in a rotation of encodings, ``CompressedImage``
alternating JPEG and PNG) and the instruction, calls the reset and parameter
services, and records progress, success and ``/diagnostics``.

Every wait is bounded, matched on content, and fails with the node's log.

Every test written on these helpers follows the two rules in ``ros_process.py``'s
docstring: wait on a condition, never on a time; assert no outcome of a race.
"""

from __future__ import annotations

import atexit
import io
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from PIL import Image as PILImage
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from support.install_tree import PACKAGE_PREFIX
from support.ros_process import poll
from topreward_ros.msg import EpisodeSuccess, TaskProgress

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL = PACKAGE_PREFIX
EXECUTABLE = INSTALL / "lib" / "topreward_ros" / "scorer_node"
MANAGED_EXECUTABLE = INSTALL / "lib" / "topreward_ros" / "managed_scorer_node"
PARAMS_FILE = INSTALL / "share" / "topreward_ros" / "config" / "scorer.yaml"
NODE = "scorer_node"
CAM0 = "cam0/image_raw"
CAM1 = "cam1/image_raw/compressed"
NS = 1_000_000_000
SIM_START_S = 1000.0
FRAME_PERIOD_S = 0.1
WIDTH, HEIGHT = 64, 48
STALL_WARN_S, STALL_ERROR_S = 0.8, 1.6
#: Node parameters the rig tests start from: time from the rig's /clock, CAM0 (raw), a 4 Hz
#: timer, small views and window, fast diagnostics, one torch thread.
RIG_PARAMS = {
    "use_sim_time": "true",
    "camera_topics": f"['{CAM0}']",
    "rate_hz": "4.0",
    "view_size": "64",
    "max_frames": "24",
    "diagnostics_period_s": "0.25",
    "torch_threads": "1",
}
#: The camera stall limits, for tests that check stall reports.
STALL_PARAMS = {"camera_stall_warn_s": str(STALL_WARN_S), "camera_stall_error_s": str(STALL_ERROR_S)}

T = TypeVar("T")
_RIG_IDS = iter(range(1, 1000))

# ----------------------------------------------------------------------------
# Test-side message builders (plain byte packing, independent of the node).
# ----------------------------------------------------------------------------
RAW_ROTATION = (
    "rgb8",
    "bgr8",
    "rgba8_padded",
    "mono8",
    "mono16_be",
    "yuv422",
    "yuv422_yuy2",
    "bayer_rggb8",
    "bayer_grbg8",
)


def make_frame(index: int) -> np.ndarray:
    """A frame with a bright square moving across a gradient."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    img = np.stack([(x * 4) % 256, (y * 5) % 256, np.full_like(x, 60)], axis=-1).astype(np.uint8)
    left = (index * 3) % (WIDTH - 12)
    img[10:22, left : left + 12] = (250, 250, 30)
    return img


def raw_image(kind: str, rgb: np.ndarray) -> Image:
    msg = Image()
    msg.height, msg.width = rgb.shape[:2]
    grey = rgb.mean(axis=2).astype(np.uint8)
    if kind in ("rgb8", "bgr8"):
        data = rgb if kind == "rgb8" else rgb[:, :, ::-1]
        msg.encoding, payload, msg.step = kind, np.ascontiguousarray(data).tobytes(), WIDTH * 3
    elif kind == "rgba8_padded":
        rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
        padded = np.zeros((HEIGHT, WIDTH * 4 + 16), np.uint8)
        padded[:, : WIDTH * 4] = rgba.reshape(HEIGHT, -1)
        msg.encoding, payload, msg.step = "rgba8", padded.tobytes(), WIDTH * 4 + 16
    elif kind == "mono8":
        msg.encoding, payload, msg.step = "mono8", grey.tobytes(), WIDTH
    elif kind == "mono16_be":
        msg.encoding, msg.is_bigendian, msg.step = "mono16", 1, WIDTH * 2
        payload = (grey.astype(">u2") * 257).tobytes()
    elif kind in ("yuv422", "yuv422_yuy2"):
        pairs = np.empty((HEIGHT, WIDTH // 2, 4), np.uint8)
        y_at = (1, 3) if kind == "yuv422" else (0, 2)
        c_at = (0, 2) if kind == "yuv422" else (1, 3)
        pairs[:, :, y_at[0]] = grey[:, 0::2]
        pairs[:, :, y_at[1]] = grey[:, 1::2]
        pairs[:, :, c_at[0]] = 128
        pairs[:, :, c_at[1]] = 128
        msg.encoding, payload, msg.step = kind, pairs.tobytes(), WIDTH * 2
    elif kind.startswith("bayer_"):
        pattern = kind[len("bayer_") : len("bayer_") + 4].upper()
        mosaic = np.empty((HEIGHT, WIDTH), np.uint8)
        channel = {"R": 0, "G": 1, "B": 2}
        for k, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            mosaic[dy::2, dx::2] = rgb[dy::2, dx::2, channel[pattern[k]]]
        msg.encoding, payload, msg.step = kind, mosaic.tobytes(), WIDTH
    elif kind == "unknown_encoding":
        msg.encoding, payload, msg.step = "32FC1", bytes(WIDTH * HEIGHT * 4), WIDTH * 4
    elif kind == "truncated":
        msg.encoding, msg.step = "rgb8", WIDTH * 3
        payload = rgb.tobytes()[: WIDTH * 3 * HEIGHT // 2]
    else:
        raise AssertionError(kind)
    msg.data = payload
    return msg


def compressed_image(index: int, rgb: np.ndarray, corrupt: bool) -> CompressedImage:
    msg = CompressedImage()
    if corrupt:
        msg.format, msg.data = "jpeg", b"\xff\xd8\xff\xe0 this is not a jpeg " * 8
        return msg
    buf = io.BytesIO()
    fmt = "JPEG" if index % 2 == 0 else "PNG"
    PILImage.fromarray(rgb[:, ::-1]).save(buf, format=fmt)
    msg.format = "rgb8; jpeg compressed bgr8" if fmt == "JPEG" else "png"
    msg.data = buf.getvalue()
    return msg


def stamp_ns(stamp: TimeMsg) -> int:
    return int(stamp.sec) * NS + int(stamp.nanosec)


def ns_stamp(ns: int) -> TimeMsg:
    return TimeMsg(sec=ns // NS, nanosec=ns % NS)


# ----------------------------------------------------------------------------
# The node process.
# ----------------------------------------------------------------------------
class NodeProcess:
    """The installed scorer_node executable, with its output in a log file."""

    def __init__(
        self, params: dict[str, str], log_path: Path, namespace: str = "", executable: Path = EXECUTABLE
    ) -> None:
        if not executable.exists() or not PARAMS_FILE.exists():
            pytest.fail(f"{executable} or {PARAMS_FILE} missing: run `make build` first")
        args = [str(executable), "--ros-args", "--params-file", str(PARAMS_FILE)]
        if namespace:
            args += ["-r", f"__ns:=/{namespace}"]
        for name, value in params.items():
            args += ["-p", f"{name}:={value}"]
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", RCUTILS_COLORIZED_OUTPUT="0")
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        # Last resort if the test process dies without reaching a finally block.
        atexit.register(self._kill_if_running)

    def _kill_if_running(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                self._log.close()
                pytest.fail(f"scorer_node did not exit within {timeout} s of signal {sig}:\n{self.log()[-3000:]}")
        self._log.close()
        return self.proc.returncode


# ----------------------------------------------------------------------------
# The rest of the robot: clock, cameras, instruction, listeners.
# ----------------------------------------------------------------------------
class Rig:
    """A test node that plays clock + cameras and records what the scorer says."""

    def __init__(self, node_proc: NodeProcess, compressed_camera: bool = True) -> None:
        self.node_proc = node_proc
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"scorer_rig_{next(_RIG_IDS)}", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.lock = threading.Lock()
        self.progress: list[TaskProgress] = []
        self.successes: list[EpisodeSuccess] = []
        self.diagnostics: list[tuple[float, DiagnosticArray]] = []
        reliable = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        self.clock_pub = self.node.create_publisher(Clock, "/clock", 10)
        self.cam_pubs: list[Any] = [self.node.create_publisher(Image, CAM0, 10)]
        if compressed_camera:
            self.cam_pubs.append(self.node.create_publisher(CompressedImage, CAM1, 10))
        self.instruction_pub = self.node.create_publisher(String, "instruction", latched)
        self.node.create_subscription(TaskProgress, "task_progress", self._keep(self.progress), reliable)
        self.success_sub = self.node.create_subscription(
            EpisodeSuccess, "episode_success", self._keep(self.successes), latched
        )
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, reliable)
        self.reset_client = self.node.create_client(Trigger, f"/{NODE}/reset")
        self.params = AsyncParameterClient(self.node, NODE)
        # Streaming state (read by the streaming thread). Camera stamps follow /clock
        # unless a test shifts one against the other (shift_time).
        self._time_lock = threading.Lock()
        self.sim_offset_ns = int(SIM_START_S * NS)
        self.camera_shift_ns = 0
        self.wall0 = time.monotonic()
        self.paused: set[int] = set()
        # Camera index -> a header stamp every frame of that camera then carries.
        self.frozen_stamp: dict[int, int] = {}
        self.bad: dict[int, str] = {}
        self.published: list[list[int]] = [[] for _ in self.cam_pubs]
        self._stop = threading.Event()
        self._spin = threading.Thread(target=self._spin_loop, daemon=True)
        self._stream = threading.Thread(target=self._stream_loop, daemon=True)
        self._spin.start()

    # -- plumbing --
    def _keep(self, bucket: list) -> Callable[[Any], None]:
        def callback(msg: Any) -> None:
            with self.lock:
                bucket.append(msg)

        return callback

    def _on_diag(self, msg: DiagnosticArray) -> None:
        with self.lock:
            self.diagnostics.append((time.monotonic(), msg))

    def _spin_loop(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def sim_now_ns(self) -> int:
        """Simulated time on /clock now."""
        return self.sim_offset_ns + int((time.monotonic() - self.wall0) * NS)

    def camera_now_ns(self) -> int:
        """The stamp a camera frame published now carries."""
        with self._time_lock:
            return self.sim_now_ns() + self.camera_shift_ns

    def shift_time(self, clock_ns: int = 0, camera_ns: int = 0) -> None:
        """Move /clock and the camera stamps by the given amounts, each on its own, at one instant."""
        with self._time_lock:
            self.sim_offset_ns += clock_ns
            self.camera_shift_ns += camera_ns - clock_ns

    def _stream_loop(self) -> None:
        next_frame = 0.0
        index = 0
        while not self._stop.is_set():
            with self._time_lock:
                now_ns = self.sim_now_ns()
                camera_ns = now_ns + self.camera_shift_ns
            clock = Clock()
            clock.clock = ns_stamp(now_ns)
            self.clock_pub.publish(clock)
            elapsed = time.monotonic() - self.wall0
            if elapsed >= next_frame:
                next_frame = elapsed + FRAME_PERIOD_S
                rgb = make_frame(index)
                for cam, pub in enumerate(self.cam_pubs):
                    if cam in self.paused:
                        continue
                    bad = self.bad.get(cam)
                    if cam == 0:
                        msg = raw_image(bad or RAW_ROTATION[index % len(RAW_ROTATION)], rgb)
                    else:
                        msg = compressed_image(index, rgb, corrupt=bad == "corrupt_jpeg")
                    msg.header.stamp = ns_stamp(self.frozen_stamp.get(cam, camera_ns))
                    msg.header.frame_id = f"cam{cam}_optical"
                    pub.publish(msg)
                    self.published[cam].append(camera_ns)
                index += 1
            time.sleep(0.01)

    def start_streaming(self) -> None:
        self._stream.start()

    def close(self) -> None:
        self._stop.set()
        if self._stream.is_alive():
            self._stream.join(5)
        self._spin.join(5)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)

    # -- waiting --
    def wait_for(self, what: str, predicate: Callable[[], T | None], timeout: float = 30.0) -> T:
        def locked() -> T | None:
            with self.lock:
                return predicate()

        def stopped() -> str | None:
            if self.node_proc.alive():
                return None
            return f"scorer_node exited (rc {self.node_proc.proc.returncode}):\n{self.node_proc.log()[-4000:]}"

        return poll(what, locked, timeout, stopped, lambda: f"; node log tail:\n{self.node_proc.log()[-4000:]}")

    def wait_matched(self) -> None:
        """Wait until the node and this rig see each other on every topic."""
        pubs = [self.clock_pub, self.instruction_pub, *self.cam_pubs]
        self.wait_for(
            "the scorer to subscribe to clock, instruction and cameras",
            lambda: all(p.get_subscription_count() > 0 for p in pubs),
            timeout=60,
        )
        self.wait_for(
            "the scorer's progress publisher", lambda: self.node.count_publishers("/task_progress") > 0, timeout=60
        )
        deadline = time.monotonic() + 60
        while not (self.reset_client.service_is_ready() and self.params.services_are_ready()):
            if time.monotonic() > deadline:
                pytest.fail("reset / parameter services of scorer_node never became available")
            time.sleep(0.05)

    def call(self, future: Any, what: str, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > deadline:
                pytest.fail(f"no answer to {what} within {timeout} s")
            time.sleep(0.02)
        return future.result()

    def reset(self) -> Trigger.Response:
        return self.call(self.reset_client.call_async(Trigger.Request()), "the reset service")

    def set_params(self, **values: Any) -> list[Any]:
        params = [Parameter(k, value=v) for k, v in values.items()]
        return self.call(self.params.set_parameters(params), f"set_parameters {values}").results

    def instruct(self, text: str) -> None:
        self.instruction_pub.publish(String(data=text))

    # -- queries (call with self.lock held, i.e. inside predicates) --
    def progress_of(self, episode_id: str) -> list[TaskProgress]:
        return [m for m in self.progress if m.episode_id == episode_id]

    def latest_status(self, name_part: str, since: float = 0.0) -> DiagnosticStatus | None:
        for at, array in reversed(self.diagnostics):
            if at < since:
                return None
            for status in array.status:
                if name_part in status.name:
                    return status
        return None


def status_values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def new_episode_after(
    rig: Rig, old_ids: set[str], instruction: str | None = None, count: int = 1
) -> list[TaskProgress]:
    """Progress messages of the first episode not in ``old_ids`` (at least ``count``)."""

    def find() -> list[TaskProgress] | None:
        fresh = [
            m
            for m in rig.progress
            if m.episode_id not in old_ids and (instruction is None or m.instruction == instruction)
        ]
        if not fresh:
            return None
        same = [m for m in fresh if m.episode_id == fresh[0].episode_id]
        return same if len(same) >= count else None

    return rig.wait_for(f"{count} progress messages of a new episode", find)


@contextmanager
def running_rig(
    params: dict[str, str], log_path: Path, compressed_camera: bool = True, load_timeout: float = 120.0
) -> Iterator[Rig]:
    """The installed node with ``params`` and the rig around it, streaming, with the model loaded."""
    proc = NodeProcess(params, log_path)
    try:
        the_rig = Rig(proc, compressed_camera=compressed_camera)
    except BaseException:
        proc.stop(signal.SIGKILL)
        raise
    try:
        the_rig.wait_matched()
        the_rig.start_streaming()
        the_rig.wait_for(
            "the model to load",
            lambda: (s := the_rig.latest_status(": model")) is not None and s.level == DiagnosticStatus.OK,
            timeout=load_timeout,
        )
        yield the_rig
    finally:
        the_rig.close()
        if proc.alive():
            proc.stop(signal.SIGINT)
