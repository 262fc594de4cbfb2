"""Image conversion: every encoding against hand-computed pixels.

Expected arrays are written out by hand (or packed byte by byte in plain
Python) rather than produced by another converter, so a wrong channel order,
a lost padding byte or a wrong colour equation shows up as a pixel mismatch.
Messages are real ``sensor_msgs`` types (rclpy's, whose ``data`` is an
``array.array``) and, where it matters, rosbags-deserialised ones.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image as PILImage
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import CompressedImage, Image

from topreward_ros.episode.cameras import to_rgb
from topreward_ros.episode.images import SUPPORTED_ENCODINGS, ImageError, compressed_to_rgb, image_to_rgb

# A 2-row x 3-column RGB test pattern with distinct values per channel.
RGB = [[(255, 0, 0), (0, 255, 0), (0, 0, 255)], [(10, 20, 30), (40, 50, 60), (200, 100, 7)]]


def make_image(
    encoding: str, width: int, height: int, rows: list[bytes], step: int | None = None, bigendian: bool = False
) -> Image:
    """A real sensor_msgs/Image; each row is padded with 0xEE up to ``step``."""
    row_len = len(rows[0])
    step = row_len if step is None else step
    payload = b"".join(r + b"\xee" * (step - len(r)) for r in rows)
    msg = Image()
    msg.height, msg.width, msg.encoding = height, width, encoding
    msg.is_bigendian = int(bigendian)
    msg.step = step
    msg.data = payload
    assert row_len <= step
    return msg


def packed_rows(order: str) -> list[bytes]:
    """Pack RGB in the given channel order ('rgb', 'bgra', ...); alpha = 99."""
    out = []
    for row in RGB:
        buf = bytearray()
        for r, g, b in row:
            values = {"r": r, "g": g, "b": b, "a": 99}
            buf.extend(values[c] for c in order)
        out.append(bytes(buf))
    return out


@pytest.mark.parametrize("encoding, order", [("rgb8", "rgb"), ("bgr8", "bgr"), ("rgba8", "rgba"), ("bgra8", "bgra")])
@pytest.mark.parametrize("padding", [0, 5])
def test_colour_8bit_encodings(encoding: str, order: str, padding: int) -> None:
    rows = packed_rows(order)
    msg = make_image(encoding, 3, 2, rows, step=len(rows[0]) + padding)
    got = image_to_rgb(msg)
    assert got.dtype == np.uint8 and got.shape == (2, 3, 3)
    np.testing.assert_array_equal(got, np.array(RGB, dtype=np.uint8))


def test_mono8_with_padding_repeats_grey() -> None:
    msg = make_image("mono8", 3, 2, [bytes([0, 128, 255]), bytes([1, 2, 3])], step=8)
    expected = np.array([[[0] * 3, [128] * 3, [255] * 3], [[1] * 3, [2] * 3, [3] * 3]], dtype=np.uint8)
    np.testing.assert_array_equal(image_to_rgb(msg), expected)


@pytest.mark.parametrize("bigendian", [False, True])
def test_mono16_keeps_high_byte_in_either_byte_order(bigendian: bool) -> None:
    fmt = ">H" if bigendian else "<H"
    values = [[0x1234, 0xFF01, 0x00FF], [0x8000, 0x0100, 0xFFFF]]
    rows = [b"".join(struct.pack(fmt, v) for v in row) for row in values]
    msg = make_image("mono16", 3, 2, rows, step=8, bigendian=bigendian)
    highs = [[0x12, 0xFF, 0x00], [0x80, 0x01, 0xFF]]
    expected = np.array([[[h] * 3 for h in row] for row in highs], dtype=np.uint8)
    np.testing.assert_array_equal(image_to_rgb(msg), expected)


def test_rgb16_big_endian() -> None:
    rows = [struct.pack(">6H", 0xAB00, 0x0100, 0xFFFF, 0x0000, 0x7FFF, 0x8000)]
    msg = make_image("rgb16", 2, 1, rows, bigendian=True)
    np.testing.assert_array_equal(image_to_rgb(msg), np.array([[[0xAB, 0x01, 0xFF], [0, 0x7F, 0x80]]], np.uint8))


# YUV (full-range BT.601) pixels worked out by hand:
#   Y=100 U=128 V=128 -> (100, 100, 100)
#   Y=50  U=128 V=200 -> R = 50 + 1.402*72 = 150.9 -> 151; G = 50 - 0.714136*72 < 0 -> 0; B = 50
#   Y=200 U=60  V=128 -> R = 200; G = 200 + 0.344136*68 = 223.4 -> 223; B = 200 - 1.772*68 = 79.5 -> 80
#   Y=0   U=255 V=0   -> R < 0 -> 0; G = 0 - 0.344136*127 + 0.714136*128 = 47.7 -> 48; B = 225.0 -> 225
YUV_PAIRS = [  # (Y0, Y1, U, V) per pixel pair, two pairs per row, two rows
    [(100, 50, 128, 128), (200, 0, 60, 128)],
    [(50, 100, 128, 200), (0, 200, 255, 0)],
]


def _hand_yuv(y: int, u: int, v: int) -> tuple[int, int, int]:
    """The BT.601 full-range equations, evaluated in plain Python floats."""

    def clip(x: float) -> int:
        return max(0, min(255, int(round(x))))

    return (
        clip(y + 1.402 * (v - 128)),
        clip(y - 0.344136 * (u - 128) - 0.714136 * (v - 128)),
        clip(y + 1.772 * (u - 128)),
    )


def test_hand_yuv_equations_match_worked_examples() -> None:
    assert _hand_yuv(100, 128, 128) == (100, 100, 100)
    assert _hand_yuv(50, 128, 200) == (151, 0, 50)
    assert _hand_yuv(200, 60, 128) == (200, 223, 80)
    assert _hand_yuv(0, 255, 0) == (0, 48, 225)


@pytest.mark.parametrize(
    "encoding, layout", [("yuv422", "UYVY"), ("uyvy", "UYVY"), ("yuv422_yuy2", "YUYV"), ("yuyv", "YUYV")]
)
def test_yuv422_layouts(encoding: str, layout: str) -> None:
    rows = []
    expected = []
    for pair_row in YUV_PAIRS:
        buf = bytearray()
        out_row = []
        for y0, y1, u, v in pair_row:
            fields = {"Y0": y0, "Y1": y1, "U": u, "V": v}
            names = ["U", "Y0", "V", "Y1"] if layout == "UYVY" else ["Y0", "U", "Y1", "V"]
            buf.extend(fields[n] for n in names)
            out_row += [_hand_yuv(y0, u, v), _hand_yuv(y1, u, v)]
        rows.append(bytes(buf))
        expected.append(out_row)
    msg = make_image(encoding, 4, 2, rows, step=12)  # 4 bytes of padding per row
    got = image_to_rgb(msg)
    np.testing.assert_array_equal(got, np.array(expected, dtype=np.uint8))
    # The hand-worked pixels appear where they should.
    assert tuple(got[0, 0]) == (100, 100, 100)
    assert tuple(got[0, 2]) == (200, 223, 80)
    assert tuple(got[1, 0]) == (151, 0, 50)
    assert tuple(got[1, 2]) == (0, 48, 225)


# A 4x4 mosaic: two 2x2 cells per row of cells. Each cell's samples in
# raster order (top-left, top-right, bottom-left, bottom-right).
BAYER_CELLS = [[(10, 20, 30, 40), (200, 100, 51, 0)], [(1, 2, 3, 4), (255, 255, 254, 255)]]


@pytest.mark.parametrize(
    "encoding, pattern",
    [("bayer_rggb8", "RGGB"), ("bayer_bggr8", "BGGR"), ("bayer_gbrg8", "GBRG"), ("bayer_grbg8", "GRBG")],
)
def test_bayer_cells(encoding: str, pattern: str) -> None:
    rows = []
    for cell_row in BAYER_CELLS:
        top = bytes(v for cell in cell_row for v in cell[0:2])
        bottom = bytes(v for cell in cell_row for v in cell[2:4])
        rows += [top, bottom]
    msg = make_image(encoding, 4, 4, rows, step=6)
    got = image_to_rgb(msg)
    for ci, cell_row in enumerate(BAYER_CELLS):
        for cj, cell in enumerate(cell_row):
            by_colour: dict[str, list[int]] = {"R": [], "G": [], "B": []}
            for colour, value in zip(pattern, cell):
                by_colour[colour].append(value)
            g0, g1 = by_colour["G"]
            expected = (by_colour["R"][0], (g0 + g1 + 1) // 2, by_colour["B"][0])
            for dy in range(2):
                for dx in range(2):
                    assert tuple(got[2 * ci + dy, 2 * cj + dx]) == expected, (encoding, ci, cj)
    # Spot check written out in full for RGGB: cell (0, 0) = R 10, G (20+30+1)//2 = 25, B 40.
    if pattern == "RGGB":
        assert tuple(got[1, 1]) == (10, 25, 40)


def test_rosbags_message_with_numpy_data() -> None:
    store = get_typestore(Stores.ROS2_KILTED)
    RosbagsImage = store.types["sensor_msgs/msg/Image"]
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    rows = packed_rows("bgr")
    msg = RosbagsImage(
        header=Header(stamp=Time(sec=1, nanosec=2), frame_id="cam"),
        height=2,
        width=3,
        encoding="bgr8",
        is_bigendian=0,
        step=9,
        data=np.frombuffer(b"".join(rows), dtype=np.uint8),
    )
    np.testing.assert_array_equal(to_rgb(msg), np.array(RGB, dtype=np.uint8))


def test_supported_encodings_cover_the_documented_list() -> None:
    required = {
        "rgb8",
        "bgr8",
        "rgba8",
        "bgra8",
        "mono8",
        "mono16",
        "yuv422",
        "yuv422_yuy2",
        "bayer_rggb8",
        "bayer_bggr8",
        "bayer_gbrg8",
        "bayer_grbg8",
    }
    assert required <= set(SUPPORTED_ENCODINGS)


@pytest.mark.parametrize("encoding", ["32FC1", "16UC3", "", "nv12"])
def test_unknown_encoding_is_a_clear_error(encoding: str) -> None:
    msg = make_image(encoding, 1, 1, [b"\x00\x00\x00\x00"])
    with pytest.raises(ImageError, match=f"unsupported image encoding '{encoding}'"):
        image_to_rgb(msg)


def test_truncated_data_is_a_clear_error() -> None:
    msg = make_image("rgb8", 3, 2, packed_rows("rgb"), step=10)
    msg.data = bytes(msg.data)[:-1]
    with pytest.raises(ImageError, match=r"truncated: 19 bytes for 2 rows of step 10 \(need 20\)"):
        image_to_rgb(msg)


def test_step_smaller_than_row_is_a_clear_error() -> None:
    msg = make_image("rgb8", 3, 2, packed_rows("rgb"))
    msg.step = 8
    with pytest.raises(ImageError, match="step 8 is smaller than one row of 3 pixels"):
        image_to_rgb(msg)


def test_empty_image_is_a_clear_error() -> None:
    msg = Image()
    msg.encoding = "rgb8"
    with pytest.raises(ImageError, match=r"no pixels \(0x0\)"):
        image_to_rgb(msg)


def test_odd_sizes_for_subsampled_encodings() -> None:
    with pytest.raises(ImageError, match="yuv422 needs an even width, got 3"):
        image_to_rgb(make_image("yuv422", 3, 1, [b"\x00" * 6]))
    with pytest.raises(ImageError, match="needs even width and height, got 2x3"):
        image_to_rgb(make_image("bayer_rggb8", 2, 3, [b"\x00\x00"] * 3))


def _encode(array: np.ndarray, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(array).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def make_compressed(payload: bytes, fmt: str) -> CompressedImage:
    msg = CompressedImage()
    msg.format = fmt
    msg.data = payload
    return msg


def test_png_is_lossless() -> None:
    expected = np.array(RGB, dtype=np.uint8)
    got = compressed_to_rgb(make_compressed(_encode(expected, "PNG"), "png"))
    np.testing.assert_array_equal(got, expected)


def test_grey_and_16bit_png() -> None:
    grey = np.array([[0, 7], [128, 255]], dtype=np.uint8)
    got = to_rgb(make_compressed(_encode(grey, "PNG"), "mono8; png compressed"))
    np.testing.assert_array_equal(got, np.repeat(grey[:, :, None], 3, axis=2))
    deep = np.array([[0x1234, 0xFFFF], [0x0100, 0x00FF]], dtype=np.uint16)
    got16 = to_rgb(make_compressed(_encode(deep, "PNG"), "mono16; png compressed"))
    np.testing.assert_array_equal(got16[:, :, 0], np.array([[0x12, 0xFF], [0x01, 0x00]], np.uint8))


def test_jpeg_of_flat_colour() -> None:
    flat = np.zeros((16, 16, 3), dtype=np.uint8)
    flat[:] = (200, 40, 90)
    got = to_rgb(make_compressed(_encode(flat, "JPEG", quality=95), "rgb8; jpeg compressed bgr8"))
    assert got.shape == (16, 16, 3)
    assert np.abs(got.astype(int) - flat.astype(int)).max() <= 3


def test_corrupt_and_truncated_jpeg_are_clear_errors() -> None:
    flat = np.full((64, 64, 3), 77, dtype=np.uint8)
    jpeg = _encode(flat, "JPEG")
    with pytest.raises(ImageError, match="not a decodable JPEG or PNG"):
        to_rgb(make_compressed(b"\x00garbage" * 20, "jpeg"))
    with pytest.raises(ImageError, match="is corrupt"):
        to_rgb(make_compressed(jpeg[: len(jpeg) // 2], "jpeg"))
    with pytest.raises(ImageError, match="no data"):
        to_rgb(make_compressed(b"", "jpeg"))


def test_other_compressed_formats_are_refused() -> None:
    bmp = _encode(np.zeros((4, 4, 3), np.uint8), "BMP")
    with pytest.raises(ImageError, match="not a decodable JPEG or PNG"):
        to_rgb(make_compressed(bmp, "bmp"))
    png = _encode(np.zeros((4, 4), np.uint16), "PNG")
    with pytest.raises(ImageError, match="compressed depth images are not supported"):
        to_rgb(make_compressed(png, "16UC1; compressedDepth png"))


def test_not_an_image_message() -> None:
    with pytest.raises(ImageError, match="is not a camera message"):
        to_rgb(object())
