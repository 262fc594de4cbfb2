"""prepare_view / compose_views: sizes, layout and input checks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from topreward_ros.scoring import FrameError, compose_views, prepare_view


def test_prepare_view_resizes_without_keeping_aspect() -> None:
    rgb = np.zeros((480, 640, 3), np.uint8)
    rgb[:, 320:] = 255  # right half white
    view = prepare_view(rgb, 244)
    assert view.shape == (244, 244, 3) and view.dtype == np.uint8
    assert view[:, :100].max() == 0 and view[:, 150:].min() == 255
    expected = np.asarray(Image.fromarray(rgb).resize((244, 244), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(view, expected)


def test_prepare_view_keeps_an_image_of_the_right_size() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(prepare_view(rgb, 64), rgb)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((10, 10), np.uint8), "shape HxWx3"),
        (np.zeros((10, 10, 4), np.uint8), "shape HxWx3"),
        (np.zeros((10, 10, 3), np.float32), "must be uint8, got float32"),
        (np.zeros((0, 10, 3), np.uint8), "must not be empty"),
        ([[0, 0, 0]], "must be a numpy array, got list"),
    ],
)
def test_prepare_view_rejects_bad_images(image: object, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        prepare_view(image, 244)  # type: ignore[arg-type]


def test_prepare_view_rejects_bad_size() -> None:
    with pytest.raises(FrameError, match="size must be a positive integer, got 0"):
        prepare_view(np.zeros((8, 8, 3), np.uint8), 0)


def test_compose_views_side_by_side_in_order() -> None:
    a = np.full((32, 32, 3), 10, np.uint8)
    b = np.full((32, 32, 3), 200, np.uint8)
    out = compose_views([a, b])
    assert out.shape == (32, 64, 3)
    assert (out[:, :32] == 10).all() and (out[:, 32:] == 200).all()
    assert compose_views([a]) is a


def test_compose_views_rejects_mismatched_views() -> None:
    a = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(FrameError, match=r"views\[1\] has shape \(16, 16, 3\), expected \(32, 32, 3\)"):
        compose_views([a, np.zeros((16, 16, 3), np.uint8)])
    with pytest.raises(FrameError, match="must be square"):
        compose_views([np.zeros((32, 16, 3), np.uint8)])
    with pytest.raises(FrameError, match="non-empty sequence"):
        compose_views([])
    with pytest.raises(FrameError, match=r"views\[0\] must be uint8"):
        compose_views([a.astype(np.int16)])
