"""The progress picture: view, curve and banner where they belong, following the values."""

from __future__ import annotations

import numpy as np

from topreward_ros.rendering.picture import (
    BANNER_HEIGHT,
    CURVE,
    MIN_WIDTH,
    PLOT_HEIGHT,
    RUNNING_BANNER,
    SUCCESS_BANNER,
    THRESHOLD_LINE,
    plot_rows,
    render,
)


def view(width: int = 320, height: int = 160) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)


def share(region: np.ndarray, colour: tuple[int, int, int]) -> float:
    return float(np.all(region == colour, axis=-1).mean())


def curve_rows(picture: np.ndarray, height: int, column: int) -> list[int]:
    """Rows of the plot (0 = its top) where the curve colour is in ``column``."""
    plot = picture[BANNER_HEIGHT + height :, column]
    return [int(r) for r in np.nonzero(np.all(plot == CURVE, axis=-1))[0]]


def test_layout_and_view_as_the_model_saw_it() -> None:
    v = view()
    picture = render(v, [0.0, 0.5], success=False)
    assert picture.shape == (BANNER_HEIGHT + 160 + PLOT_HEIGHT, 320, 3) and picture.dtype == np.uint8
    assert np.array_equal(picture[BANNER_HEIGHT : BANNER_HEIGHT + 160], v)
    # The threshold (progress 1) is a dashed red line across the plot.
    row = picture[BANNER_HEIGHT + 160 + plot_rows(1.0)]
    assert share(row[::2], THRESHOLD_LINE) > 0.9
    # A narrow view is centred on a picture wide enough for the plot.
    small = render(view(64, 64), [0.2], success=False)
    assert small.shape[1] == MIN_WIDTH
    left = (MIN_WIDTH - 64) // 2
    assert np.array_equal(small[BANNER_HEIGHT : BANNER_HEIGHT + 64, left : left + 64], view(64, 64))


def test_banner_shows_success_only_once_latched() -> None:
    before = render(view(), [0.1, 0.9], success=False)
    after = render(view(), [0.1, 0.9, 1.2], success=True)
    assert share(before[:BANNER_HEIGHT], RUNNING_BANNER) > 0.6
    assert share(before[:BANNER_HEIGHT], SUCCESS_BANNER) == 0.0
    assert share(after[:BANNER_HEIGHT], SUCCESS_BANNER) > 0.6


def test_curve_follows_progress() -> None:
    values = [0.0, 0.25, 0.5, 1.0]
    picture = render(view(), values, success=False)
    span = 20 - 1  # MIN_TICKS_SHOWN - 1: four ticks fill the left part of the plot
    usable = 320 - 2 * 6 - 1
    for i, value in enumerate(values):
        column = 6 + round(i * usable / span)
        assert plot_rows(value) in curve_rows(picture, 160, column), (i, value)
    # Higher progress is drawn higher up, and the end of the curve moves with the last value.
    assert plot_rows(1.0) < plot_rows(0.5) < plot_rows(0.0)
    lower = render(view(), values[:-1] + [0.1], success=False)
    last = 6 + round(3 * usable / span)
    assert plot_rows(0.1) in curve_rows(lower, 160, last)
    assert plot_rows(1.0) not in curve_rows(lower, 160, last)


def test_no_view_yet_gives_a_grey_placeholder() -> None:
    picture = render(None, [], success=False, view_height=64)
    assert picture.shape[0] == BANNER_HEIGHT + 64 + PLOT_HEIGHT
    assert share(picture[BANNER_HEIGHT : BANNER_HEIGHT + 64, (MIN_WIDTH - 64) // 2], (127, 127, 127)) == 1.0
