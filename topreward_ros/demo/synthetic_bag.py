"""Synthetic multi-episode, multi-camera bags for tests, benchmarks and examples.

Real robot bags cannot ship with the repository, yet the bag tools must be
exercised on real bag files: several episodes, several cameras with their
own rates and stamp offsets, raw and compressed images, an instruction
topic, optionally a reset topic. This module writes such bags with rosbags
(either storage format) from the drawn demo scene, and returns the layout it
wrote (stamps, instructions) so a test can check results against it without
reading the bag back through the code under test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from topreward_ros.bag.writer import BagWriter, Storage, compressed_image_msg, empty_msg, image_msg, string_msg
from topreward_ros.demo.scene import DEMO_SCENES, SceneSpec, render_frame
from topreward_ros.scoring.stamps import NS_PER_S

START_NS = 1_700_000_000 * NS_PER_S

Frame = Callable[[SceneSpec, float, int, int], np.ndarray]


@dataclass(frozen=True)
class CameraSpec:
    """One camera stream: topic, message kind, encoding, size, rate and stamp offset."""

    topic: str
    kind: Literal["raw", "compressed"] = "raw"
    encoding: str = "rgb8"  # raw: rgb8 / bgr8 / mono8 (anything else is written as rgb8 bytes)
    width: int = 64
    height: int = 48
    rate_hz: float = 10.0
    offset_ns: int = 0  # added to this camera's stamps (cameras are never exactly in sync)


@dataclass
class EpisodeLayout:
    """What was written for one episode."""

    instruction: str
    start_log_ns: int
    primary_stamps_ns: list[int] = field(default_factory=list)


@dataclass
class BagLayout:
    path: Path
    episodes: list[EpisodeLayout]
    cameras: tuple[CameraSpec, ...]


def write_episodes_bag(
    path: Path,
    storage: Storage = "mcap",
    scenes: Sequence[SceneSpec] = DEMO_SCENES,
    cameras: Sequence[CameraSpec] = (CameraSpec("/camera/image_raw"),),
    duration_s: float = 3.0,
    instruction_topic: str | None = "/instruction",
    reset_topic: str | None = None,
    reset_instead_of_instruction: bool = False,
    bad_encoding_episodes: Sequence[int] = (),
    gap_s: float = 0.3,
    log_delay_ns: int = 2_000_000,
    frame: Frame = render_frame,
) -> BagLayout:
    """Write one episode per scene, back to back, and return the layout.

    Each episode starts with its instruction on ``instruction_topic`` (or,
    with ``reset_instead_of_instruction``, a reset message after the first
    one), followed by ``duration_s`` of frames from every camera, interleaved
    in log-time order. Episodes listed in ``bad_encoding_episodes`` carry raw
    images with an encoding no converter knows ("x-unknown-16").
    """
    if not cameras:
        raise ValueError("at least one camera is needed")
    layout = BagLayout(Path(path), [], tuple(cameras))
    t = START_NS
    with BagWriter(path, storage, overwrite=True) as writer:
        for index, spec in enumerate(scenes):
            spec = SceneSpec(spec.instruction, spec.block_color, spec.block_x, spec.bowl_x, duration_s)
            if reset_instead_of_instruction and index > 0:
                assert reset_topic is not None
                writer.write(reset_topic, empty_msg(), t)
            elif instruction_topic is not None:
                writer.write(instruction_topic, string_msg(spec.instruction), t)
            instruction = (
                layout.episodes[0].instruction if reset_instead_of_instruction and index > 0 else spec.instruction
            )
            episode = EpisodeLayout(instruction, t)
            layout.episodes.append(episode)
            start = t + 10_000_000
            pending: list[tuple[int, int, CameraSpec, int]] = []
            for cam_index, cam in enumerate(cameras):
                period = int(round(NS_PER_S / cam.rate_hz))
                count = int(duration_s * cam.rate_hz)
                for k in range(count):
                    stamp = start + cam.offset_ns + k * period
                    pending.append((stamp + log_delay_ns, cam_index, cam, stamp))
            pending.sort(key=lambda item: (item[0], item[1]))
            for log_ns, cam_index, cam, stamp in pending:
                rgb = frame(spec, (stamp - start) / NS_PER_S, cam.width, cam.height)
                if cam.kind == "compressed":
                    msg = compressed_image_msg(rgb, stamp, f"camera{cam_index}")
                else:
                    encoding = "x-unknown-16" if index in bad_encoding_episodes else cam.encoding
                    msg = image_msg(rgb, stamp, f"camera{cam_index}", encoding)
                writer.write(cam.topic, msg, log_ns)
                if cam_index == 0:
                    episode.primary_stamps_ns.append(stamp)
            t = pending[-1][0] + int(gap_s * NS_PER_S)
    return layout
