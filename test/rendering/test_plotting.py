"""Plots of progress curves: the instruction in the title is drawn in any script.

A Japanese (or Chinese, Korean) instruction must not turn into empty boxes:
matplotlib warns for every glyph its fonts lack, so a rendered title
without such warnings, with each CJK character taken from the packaged
Noto Sans CJK file, is the check.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from topreward_ros.rendering.plot import TEXT_FONT_FAMILIES, cjk_font_path, plot_curve, text_font_families
from topreward_ros.scoring.curve import ProgressCurve

JAPANESE = "赤いブロックをボウルに入れる"
MIXED = f"episode 3: {JAPANESE} / 把杯子放进抽屉 / 컵을 서랍에 넣기"


def curve() -> ProgressCurve:
    return ProgressCurve(
        prefix_lengths=(1, 2, 3),
        stamps_ns=(0, 500_000_000, 1_000_000_000),
        log_prob_true=(-12.0, -10.0, -9.0),
        log_prob_false=(-1.0, -1.2, -1.5),
        normalized=(0.0, 2 / 3, 1.0),
        success_score=-10.33,
        model_id="tiny",
    )


def missing_glyph_warnings(path: Path, title: str) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        thumbs = [np.full((48, 64, 3), v, dtype=np.uint8) for v in (40, 120, 200)]
        plot_curve(path, curve(), thumbnails=thumbs, thumbnail_stamps_ns=[0, 500_000_000, 1_000_000_000], title=title)
    return [str(w.message) for w in caught if "missing from font" in str(w.message)]


def test_the_covering_font_is_installed_by_the_project_requirements():
    requirements = (Path(__file__).resolve().parents[2] / "requirements" / "ml.txt").read_text()
    assert "noto-cjk-sans-otc==" in requirements
    path = cjk_font_path()
    assert path is not None and path.stat().st_size > 1_000_000
    assert text_font_families() == list(TEXT_FONT_FAMILIES)


@pytest.mark.parametrize("title", [JAPANESE, MIXED])
def test_cjk_title_renders_without_missing_glyphs(tmp_path, title):
    path = tmp_path / "plot.png"
    assert missing_glyph_warnings(path, title) == []
    assert Image.open(path).size[0] > 500


def test_cjk_glyphs_come_from_the_packaged_noto_font():
    """Per character, the first family of the fallback list that has the glyph draws it."""
    from matplotlib import font_manager

    files = [
        font_manager.findfont(font_manager.FontProperties(family=name), fallback_to_default=False)
        for name in text_font_families()
    ]
    fonts = [font_manager.get_font(f) for f in files]
    cjk = str(cjk_font_path())
    for char in MIXED:
        drawn_by = next((f for f, font in zip(files, fonts) if font.get_char_index(ord(char))), None)
        assert drawn_by is not None, f"no font has {char!r}"
        if ord(char) > 0x2E80:  # CJK, kana, Hangul
            assert drawn_by == cjk, (char, drawn_by)
        else:
            assert "DejaVuSans" in Path(drawn_by).name, (char, drawn_by)
