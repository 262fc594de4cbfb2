"""ROS image messages to RGB numpy arrays, without cv_bridge.

The scorer feeds the VLM 8-bit RGB frames, so every camera stream has to be
brought to ``H x W x 3`` uint8 whatever its encoding. cv_bridge is not
available everywhere this package runs (it has no Python wheel), and the
conversions needed are a few lines of numpy each, so they live here.

The functions are duck-typed on the message fields (``height``, ``width``,
``encoding``, ``is_bigendian``, ``step``, ``data`` for ``sensor_msgs/Image``;
``format`` and ``data`` for ``sensor_msgs/CompressedImage``). They therefore
accept rclpy messages (``data`` is an ``array.array``) and messages
deserialised by ``rosbags`` (``data`` is a numpy array) alike.

Conversions chosen (all documented so an offline run can reproduce them):

* 16-bit channels (``mono16``, ``rgb16`` ...) keep their high byte
  (``value >> 8``): a fixed linear map of the full 16-bit range, so a frame
  converts the same way regardless of its content.
* YUV 4:2:2 (``yuv422`` = UYVY, ``yuv422_yuy2`` = YUYV) uses the full-range
  BT.601 (JFIF) equations, as OpenCV's ``COLOR_YUV2RGB_*`` do; each chroma
  pair is shared by the two pixels it was sampled with.
* Bayer ``bayer_*8`` is demosaiced per 2x2 cell: the cell's red and blue
  samples and the mean of its two greens, given to all four pixels. This
  halves the colour resolution, which does not matter here because the
  scorer shrinks every frame to a few hundred pixels a side anyway; it
  requires even width and height.

Every malformed input raises :class:`ImageError` with a message naming the
problem, never a numpy error from deep inside a reshape.
"""

from __future__ import annotations

import io
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

RGBImage = NDArray[np.uint8]


class ImageError(ValueError):
    """An image message cannot be converted (bad encoding, size or data)."""


class ImageMessage(Protocol):
    """The fields of ``sensor_msgs/Image`` this module reads."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: Any


class CompressedImageMessage(Protocol):
    """The fields of ``sensor_msgs/CompressedImage`` this module reads."""

    format: str
    data: Any


# Encodings with one sample per channel: (channels, bytes per channel, order
# of R, G, B among the channels, or None for grey).
_PLAIN_ENCODINGS: dict[str, tuple[int, int, tuple[int, int, int] | None]] = {
    "rgb8": (3, 1, (0, 1, 2)),
    "bgr8": (3, 1, (2, 1, 0)),
    "rgba8": (4, 1, (0, 1, 2)),
    "bgra8": (4, 1, (2, 1, 0)),
    "mono8": (1, 1, None),
    "rgb16": (3, 2, (0, 1, 2)),
    "bgr16": (3, 2, (2, 1, 0)),
    "rgba16": (4, 2, (0, 1, 2)),
    "bgra16": (4, 2, (2, 1, 0)),
    "mono16": (1, 2, None),
}

# YUV 4:2:2 layouts: byte offsets of (Y0, U, Y1, V) within each 4-byte pair.
_YUV422_LAYOUTS: dict[str, tuple[int, int, int, int]] = {
    "yuv422": (1, 0, 3, 2),  # UYVY
    "uyvy": (1, 0, 3, 2),
    "yuv422_yuy2": (0, 1, 2, 3),  # YUYV
    "yuyv": (0, 1, 2, 3),
}

# Bayer patterns: the colour of the top-left, top-right, bottom-left and
# bottom-right sample of each 2x2 cell.
_BAYER_PATTERNS: dict[str, str] = {
    "bayer_rggb8": "RGGB",
    "bayer_bggr8": "BGGR",
    "bayer_gbrg8": "GBRG",
    "bayer_grbg8": "GRBG",
}

SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(
    sorted(set(_PLAIN_ENCODINGS) | set(_YUV422_LAYOUTS) | set(_BAYER_PATTERNS))
)

#: Compressed formats PIL is allowed to decode (anything else is refused, so
#: a stray TIFF or a ``compressedDepth`` stream cannot slip through).
_COMPRESSED_FORMATS = ("JPEG", "PNG")


def _as_bytes_view(data: Any) -> NDArray[np.uint8]:
    """A flat uint8 view of the message payload, copying only when unavoidable."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).view(np.uint8).reshape(-1)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        # A plain list of ints (a message built by hand).
        try:
            return np.asarray(data, dtype=np.uint8).reshape(-1)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ImageError(f"image data is not a byte sequence ({type(data).__name__})") from exc


def _rows(msg: ImageMessage, row_bytes: int) -> NDArray[np.uint8]:
    """The payload as ``height x row_bytes``, dropping any row padding.

    ``step`` may exceed the packed row size (drivers pad rows to an
    alignment); it may never be smaller, and the payload must hold
    ``height`` full steps.
    """
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageError(f"image has no pixels ({width}x{height})")
    if step < row_bytes:
        raise ImageError(
            f"step {step} is smaller than one row of {width} pixels ({row_bytes} bytes for encoding {msg.encoding!r})"
        )
    flat = _as_bytes_view(msg.data)
    needed = step * height
    if flat.size < needed:
        raise ImageError(f"image data is truncated: {flat.size} bytes for {height} rows of step {step} (need {needed})")
    return flat[:needed].reshape(height, step)[:, :row_bytes]


def _plain_to_rgb(msg: ImageMessage, spec: tuple[int, int, tuple[int, int, int] | None]) -> RGBImage:
    channels, depth, order = spec
    height, width = int(msg.height), int(msg.width)
    rows = _rows(msg, width * channels * depth)
    if depth == 1:
        pixels = rows.reshape(height, width, channels)
    else:
        dtype = np.dtype(">u2" if msg.is_bigendian else "<u2")
        wide = np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels)
        pixels = (wide >> 8).astype(np.uint8)
    if order is None:
        return np.ascontiguousarray(np.broadcast_to(pixels, (height, width, 3)))
    # Plain slices (not fancy indexing): one strided copy at most.
    rgb = pixels[:, :, 0:3] if order == (0, 1, 2) else pixels[:, :, 2::-1]
    return np.ascontiguousarray(rgb)


def yuv_to_rgb(y: NDArray[Any], u: NDArray[Any], v: NDArray[Any]) -> RGBImage:
    """Full-range BT.601 (JFIF) YUV to RGB, rounded and clipped to uint8."""
    yf = y.astype(np.float32)
    uf = u.astype(np.float32) - 128.0
    vf = v.astype(np.float32) - 128.0
    r = yf + 1.402 * vf
    g = yf - 0.344136 * uf - 0.714136 * vf
    b = yf + 1.772 * uf
    rgb = np.stack([r, g, b], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _yuv422_to_rgb(msg: ImageMessage, layout: tuple[int, int, int, int]) -> RGBImage:
    height, width = int(msg.height), int(msg.width)
    if width % 2:
        raise ImageError(f"{msg.encoding} needs an even width, got {width}")
    rows = _rows(msg, width * 2)
    pairs = rows.reshape(height, width // 2, 4)
    y0_at, u_at, y1_at, v_at = layout
    y = np.empty((height, width), dtype=np.uint8)
    y[:, 0::2] = pairs[:, :, y0_at]
    y[:, 1::2] = pairs[:, :, y1_at]
    u = np.repeat(pairs[:, :, u_at], 2, axis=1)
    v = np.repeat(pairs[:, :, v_at], 2, axis=1)
    return yuv_to_rgb(y, u, v)


def _bayer_to_rgb(msg: ImageMessage, pattern: str) -> RGBImage:
    height, width = int(msg.height), int(msg.width)
    if width % 2 or height % 2:
        raise ImageError(f"{msg.encoding} needs even width and height, got {width}x{height}")
    rows = _rows(msg, width)
    # cells[i, j, dy, dx]: sample (dy, dx) of the 2x2 cell (i, j).
    cells = rows.reshape(height // 2, 2, width // 2, 2).transpose(0, 2, 1, 3).reshape(height // 2, width // 2, 4)
    red = cells[:, :, pattern.index("R")]
    blue = cells[:, :, pattern.index("B")]
    first_g = pattern.index("G")
    second_g = pattern.index("G", first_g + 1)
    green = ((cells[:, :, first_g].astype(np.uint16) + cells[:, :, second_g] + 1) // 2).astype(np.uint8)
    # Write each cell's colour to its four pixels in one pass.
    out = np.empty((height // 2, 2, width // 2, 2, 3), dtype=np.uint8)
    for channel, plane in enumerate((red, green, blue)):
        out[:, :, :, :, channel] = plane[:, None, :, None]
    return out.reshape(height, width, 3)


def image_to_rgb(msg: ImageMessage) -> RGBImage:
    """Convert a ``sensor_msgs/Image`` to an ``H x W x 3`` uint8 RGB array."""
    encoding = str(msg.encoding).strip().lower()
    if encoding in _PLAIN_ENCODINGS:
        return _plain_to_rgb(msg, _PLAIN_ENCODINGS[encoding])
    if encoding in _YUV422_LAYOUTS:
        return _yuv422_to_rgb(msg, _YUV422_LAYOUTS[encoding])
    if encoding in _BAYER_PATTERNS:
        return _bayer_to_rgb(msg, _BAYER_PATTERNS[encoding])
    raise ImageError(f"unsupported image encoding {msg.encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")


def compressed_to_rgb(msg: CompressedImageMessage) -> RGBImage:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG or PNG) to RGB uint8.

    The ``format`` field is informational (``"jpeg"``, ``"png"``, or the
    image_transport form ``"bgr8; jpeg compressed bgr8"``); the decoder
    identifies the stream from its own header and accepts only JPEG and PNG.
    16-bit PNGs keep their high byte, as raw 16-bit images do.
    """
    from PIL import Image, UnidentifiedImageError

    fmt = str(msg.format).lower()
    if "compresseddepth" in fmt.replace(" ", ""):
        raise ImageError(f"compressed depth images are not supported (format {msg.format!r})")
    payload = _as_bytes_view(msg.data)
    if payload.size == 0:
        raise ImageError("compressed image has no data")
    try:
        with Image.open(io.BytesIO(payload.tobytes()), formats=_COMPRESSED_FORMATS) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                grey = (np.asarray(img, dtype=np.uint32) >> 8).astype(np.uint8)
                return np.repeat(grey[:, :, None], 3, axis=2)
            rgb = img if img.mode == "RGB" else img.convert("RGB")
            return np.asarray(rgb, dtype=np.uint8)
    except UnidentifiedImageError as exc:
        raise ImageError(f"compressed image (format {msg.format!r}) is not a decodable JPEG or PNG") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"compressed image (format {msg.format!r}) is corrupt: {exc}") from exc
