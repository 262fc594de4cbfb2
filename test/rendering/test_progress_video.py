"""`--video`: the progress picture of every tick in an mp4, for bags and LeRobot datasets.

Decoded with PyAV and compared with what the tick records say: one frame per
live tick, the banner SUCCESS exactly from the tick success latched, and the
plot (independent of the camera view) equal to the picture drawn from the
ticks' progress, within the codec's error. Written atomically (no temporary
file left), and a resumed run leaves a finished episode's video untouched.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from support.command_line import command_line

from topreward_ros.commands.cli import main
from topreward_ros.demo.scene import DEMO_SCENES
from topreward_ros.demo.synthetic_bag import write_episodes_bag
from topreward_ros.demo.synthetic_lerobot import DatasetCamera, write_lerobot_dataset
from topreward_ros.rendering import picture as pp
from topreward_ros.rendering.video import VIDEO_FILE

VIEW = 64
# Mean absolute RGB error H.264 (crf 18) may add to the flat plot region.
CODEC_TOLERANCE = 4.0
COMMON = command_line(
    "--device cpu --dtype float32 --local-files-only --view-size {} "
    "--num-prefixes 4 --no-plot -q --success-threshold=-1e9 "
    "--success-consecutive 2 --video",
    VIEW,
)


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def check_episode(ep_dir: Path) -> None:
    live = json.loads((ep_dir / "curve.json").read_text())["live"]
    frames = decode(ep_dir / VIDEO_FILE)
    assert len(frames) == len(live) > 2
    assert any(t["success"] for t in live) and not live[0]["success"]
    height = pp.BANNER_HEIGHT + VIEW + pp.PLOT_HEIGHT
    for i, (frame, tick) in enumerate(zip(frames, live)):
        picture = frame[:height, : pp.MIN_WIDTH]
        banner = picture[pp.BANNER_HEIGHT - 4 : pp.BANNER_HEIGHT - 1].reshape(-1, 3).mean(axis=0)  # below the text
        expected_banner = pp.SUCCESS_BANNER if tick["success"] else pp.RUNNING_BANNER
        assert np.abs(banner - expected_banner).max() < 12, (i, banner, tick["success"])
        drawn = pp.render(None, [t["progress"] for t in live[: i + 1]], success=tick["success"], view_height=VIEW)
        error = np.abs(picture[-pp.PLOT_HEIGHT :].astype(float) - drawn[-pp.PLOT_HEIGHT :]).mean()
        assert error < CODEC_TOLERANCE, (i, error)
    assert not [p.name for p in ep_dir.iterdir() if p.name.startswith(".")], "temporary file left"


def test_bag_video_shows_every_tick_and_resumes(tmp_path: Path, tiny_model_dir: Path) -> None:
    bag = write_episodes_bag(tmp_path / "bag", "mcap", DEMO_SCENES[:1], duration_s=3.0).path
    out = tmp_path / "out"
    argv = [*command_line("bag {} -o {} --model {} --rate 2.0 --torch-threads 1", bag, out, tiny_model_dir), *COMMON]
    assert main(argv) == 0
    check_episode(out / "episode_0000")
    before = (out / "episode_0000" / VIDEO_FILE).stat().st_mtime_ns
    assert main(argv) == 0  # resumed: nothing left to do
    assert (out / "episode_0000" / VIDEO_FILE).stat().st_mtime_ns == before


def test_lerobot_video(tmp_path: Path, tiny_model_dir: Path) -> None:
    camera = DatasetCamera("observation.images.front", 96, 64)
    written = write_lerobot_dataset(tmp_path / "ds", DEMO_SCENES[:1], (camera,), fps=10, duration_s=3.0)
    out = tmp_path / "out"
    assert (
        main([*command_line("lerobot {} -o {} --model {} --rate 2.0", written.root, out, tiny_model_dir), *COMMON]) == 0
    )
    (ep_dir,) = [p for p in out.iterdir() if p.is_dir() and (p / VIDEO_FILE).exists()]
    check_episode(ep_dir)


@pytest.mark.parametrize("fps", [1.0, 2.0])
def test_write_video_keeps_frame_count_and_odd_sizes(tmp_path: Path, fps: float) -> None:
    from topreward_ros.rendering.video import write_video

    pictures = [np.full((33, 41, 3), 10 * i, np.uint8) for i in range(5)]
    assert write_video(tmp_path / VIDEO_FILE, iter(pictures), fps) == 5
    frames = decode(tmp_path / VIDEO_FILE)
    assert len(frames) == 5 and frames[0].shape == (34, 42, 3)
    assert [round(float(f[:33, :41].mean()) / 10) for f in frames] == [0, 1, 2, 3, 4]


def test_each_tick_shows_the_sample_it_scored_last() -> None:
    """Not the one before it: a tick scored up to the sample stamped ``stamp_ns`` shows that sample;
    a tick whose sample the window thinned away shows the newest sample before it."""
    from types import SimpleNamespace

    from topreward_ros.rendering.video import tick_pictures

    samples = [
        SimpleNamespace(stamp_ns=s, image=np.full((VIEW, VIEW, 3), 40 * (i + 1), np.uint8))
        for i, s in enumerate((100, 200, 300, 400))
    ]
    ticks = [
        SimpleNamespace(stamp_ns=s, progress=p, success=False, success_score=-3.0, success_threshold=-1.0)
        for s, p in ((100, 0.0), (300, 0.5), (350, 0.7), (400, 1.0))
    ]
    shown = list(tick_pictures(samples, ticks, VIEW))
    for i, at in enumerate((0, 2, 2, 3)):  # the tick at 350: sample 300, the newest before it
        expected = pp.render(
            samples[at].image,
            [t.progress for t in ticks[: i + 1]],
            success=False,
            success_score=-3.0,
            threshold=-1.0,
            view_height=VIEW,
        )
        np.testing.assert_array_equal(shown[i], expected, err_msg=f"tick {i}")
