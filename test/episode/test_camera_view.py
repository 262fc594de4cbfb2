"""Kept frames are stored as messages and converted by the scoring thread, for every encoding.

The references are the eager conversion (``to_rgb`` then ``prepare_view``)
of the same message: the lazy path must give exactly those pixels, convert
nothing while a frame is added, and leave out (and report once) a frame that
turns out to be unusable, losing nothing else.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

rclpy = pytest.importorskip("rclpy")

from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from rclpy.context import Context  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from support.modelless_node import modelless_node  # noqa: E402

from topreward_ros.episode.camera_view import CameraView  # noqa: E402
from topreward_ros.episode.cameras import to_rgb  # noqa: E402
from topreward_ros.episode.records import EpisodeSettings  # noqa: E402
from topreward_ros.episode.runner import EpisodeRunner  # noqa: E402
from topreward_ros.episode.window import MISSING_VIEW_VALUE, AddResult  # noqa: E402
from topreward_ros.node.scorer_node import ScorerNode  # noqa: E402
from topreward_ros.scoring.frames import prepare_view  # noqa: E402

MS = 1_000_000
SIZE = 64
W, H = 96, 72
ENCODINGS = ("rgb8", "bgr8", "rgba8", "mono8", "mono16", "yuv422", "yuv422_yuy2", "bayer_rggb8", "jpeg", "png")


def scene(index: int) -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([(x * 3 + index) % 256, (y * 5) % 256, ((x ^ y) + 40 * index) % 256], axis=-1).astype(np.uint8)


def message(kind: str, index: int, stamp_ns: int = 0) -> Image | CompressedImage:
    rgb = scene(index)
    if kind in ("jpeg", "png"):
        msg = CompressedImage()
        buf = io.BytesIO()
        PILImage.fromarray(rgb).save(buf, format=kind.upper())
        msg.format, msg.data = kind, buf.getvalue()
    else:
        grey = rgb[:, :, 1]
        msg = Image()
        msg.height, msg.width, msg.encoding = H, W, kind
        if kind == "rgb8":
            payload, msg.step = rgb.tobytes(), W * 3
        elif kind == "bgr8":
            payload, msg.step = rgb[:, :, ::-1].tobytes(), W * 3
        elif kind == "rgba8":
            payload, msg.step = np.dstack([rgb, np.full((H, W), 9, np.uint8)]).tobytes(), W * 4
        elif kind == "mono8":
            payload, msg.step = grey.tobytes(), W
        elif kind == "mono16":
            payload, msg.step = (grey.astype("<u2") * 257).tobytes(), W * 2
        elif kind in ("yuv422", "yuv422_yuy2"):
            # Any bytes make a valid frame of these encodings: two of the scene's channels.
            payload, msg.step = rgb[:, :, :2].tobytes(), W * 2
        elif kind == "bayer_rggb8":
            payload, msg.step = grey.tobytes(), W
        else:
            raise ValueError(kind)
        msg.data = payload
    msg.header.stamp = Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
    return msg


def reference(msg: Image | CompressedImage) -> np.ndarray:
    return prepare_view(to_rgb(msg), SIZE)


def runner(num_cameras: int = 1, **settings: float) -> EpisodeRunner:
    r = EpisodeRunner(None, EpisodeSettings(view_size=SIZE, **settings), num_cameras=num_cameras)
    r.start("stack the cups")
    return r


@pytest.mark.parametrize("kind", ENCODINGS)
def test_kept_frames_are_converted_when_composed_to_the_eager_pixels(kind: str) -> None:
    r = runner()
    msgs = [message(kind, i) for i in range(3)]
    views = [CameraView(m, SIZE) for m in msgs]
    for i, view in enumerate(views):
        assert r.add(0, i * 500 * MS, view, "cam") is AddResult.KEPT
    assert not any(v.converted for v in views), "a frame was converted when it was added"
    r.compose()  # what the tick does first; no model needed
    assert all(v.converted for v in views)
    samples = r.samples
    assert [s.stamp_ns for s in samples] == [0, 500 * MS, 1000 * MS]
    for sample, msg in zip(samples, msgs):
        assert np.array_equal(sample.image, reference(msg))
    assert r.take_bad_frames() == []


def test_unusable_primary_frame_is_left_out_reported_once_and_nothing_else_lost() -> None:
    r = runner()
    bad = message("rgb8", 1)
    bad.encoding = "32FC1"
    msgs = [message("rgb8", 0), bad, message("jpeg", 2)]
    for i, msg in enumerate(msgs):
        assert r.add(0, i * 500 * MS, CameraView(msg, SIZE)) is AddResult.KEPT
    r.compose()
    samples = r.samples
    assert [s.stamp_ns for s in samples] == [0, 1000 * MS]
    assert np.array_equal(samples[0].image, reference(msgs[0]))
    assert np.array_equal(samples[1].image, reference(msgs[2]))
    reported = r.take_bad_frames()
    assert len(reported) == 1
    assert reported[0].camera == 0 and reported[0].stamp_ns == 500 * MS
    assert "unsupported image encoding '32FC1'" in reported[0].error
    r.compose()
    assert r.take_bad_frames() == []


def test_unusable_secondary_frame_gives_the_grey_view_and_is_reported_once() -> None:
    r = runner(num_cameras=2, sync_tolerance_s=0.3)
    corrupt = message("jpeg", 5)
    corrupt.data = bytes(corrupt.data)[:40]
    primaries = [message("png", 0), message("png", 1)]
    r.add(0, 0, CameraView(primaries[0], SIZE))
    r.add(1, 250 * MS, CameraView(corrupt, SIZE))  # the nearest frame of both samples
    r.add(0, 500 * MS, CameraView(primaries[1], SIZE))
    r.flush()
    samples = r.samples
    assert [s.stamp_ns for s in samples] == [0, 500 * MS]
    for sample, msg in zip(samples, primaries):
        assert np.array_equal(sample.image[:, :SIZE], reference(msg))
        assert (sample.image[:, SIZE:] == MISSING_VIEW_VALUE).all()
        assert sample.view_stamps_ns[1] is None  # the bad frame was not seen
    reported = r.take_bad_frames()
    assert [(b.camera, b.stamp_ns) for b in reported] == [(1, 250 * MS)]
    assert "corrupt" in reported[0].error or "not a decodable" in reported[0].error


# -- the node's callback -----------------------------------------------------------------


def camera_status(node: ScorerNode) -> DiagnosticStatus:
    return next(s for s in node.diagnostic_statuses() if "(primary)" in s.name)


def values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def test_node_callback_stores_frames_and_the_tick_converts_and_reports_bad_ones(
    context: Context, tmp_path: Path
) -> None:
    node = modelless_node(context, tmp_path, view_size=SIZE, instruction="stack the cups")
    try:
        bad = message("rgb8", 0, stamp_ns=0)
        bad.encoding = "32FC1"
        good = message("yuv422", 1, stamp_ns=500 * MS)
        node._on_image(0, bad, None)
        node._on_image(0, good, None)
        stats = node._cameras[0]
        assert (stats.kept, stats.bad) == (2, 0), "the callback converted a frame"
        assert node._runner.samples == []
        node._on_tick()  # no model is ready: the tick converts and composes only
        assert stats.bad == 1
        status = camera_status(node)
        assert status.level == DiagnosticStatus.WARN
        assert "bad image on camera/image_raw: unsupported image encoding '32FC1'" in status.message
        counts = values(status)
        assert (counts["received"], counts["kept"], counts["bad_images"]) == ("2", "1", "1")
        samples = node._runner.samples
        assert [s.stamp_ns for s in samples] == [500 * MS]
        assert np.array_equal(samples[0].image, reference(good))
    finally:
        node.destroy_node()
