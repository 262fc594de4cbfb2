"""What every offline input gives the runner: episodes, each a stream of frames.

A rosbag, a LeRobot dataset, a video file and a folder of frames differ in
how they store pictures and where episodes begin, and in nothing else the
scoring needs. An ``EpisodeSource`` hides that difference behind three
calls:

* ``plan()``: every episode of the input, in order, by a stable index, with
  its instruction and its time span (``EpisodeSpec``). It is cheap (a bag
  reads its instruction and reset topics and the primary camera's header
  stamps, a dataset its tables) and it is what an engine spreads over
  replicas.
* ``frames(spec)``: one episode's frames in time order (``SourceFrame``),
  each decoded only when the runner asks for it, so frames the 2 fps
  schedule drops are never decoded. It can run on another machine: a
  source holds paths and options only and opens its files on use.
* ``walk()``: ``plan()`` and ``frames()`` in one pass, for an engine that
  takes the episodes in order in this process. The default calls the two;
  a source that must read its whole input to plan (a bag) walks it once.

A source also names its cameras, its fingerprint (what a resumed run checks
the input against) and the options that change its outputs (recorded in
the manifest). Adding a source means one new class in ``topreward_ros.sources``
implementing this interface: no runner, engine or output code changes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class SourceError(Exception):
    """The input cannot be used at all with these options (message for the user)."""


class SourceReadError(SourceError):
    """Reading stopped part-way: everything delivered before it stands."""


def check_camera_names(field_name: str, names: tuple[str, ...], noun: str) -> None:
    """A source's camera list names at least one camera and none twice (``ValueError`` if not)."""
    if not names:
        raise ValueError(f"{field_name} must name at least one {noun}")
    if len(set(names)) != len(names):
        raise ValueError(f"{field_name} repeat a {noun.split()[-1]}: {list(names)}")


class FrameDecodeError(ValueError):
    """One frame's bytes cannot be turned into a picture (it is left out and reported)."""


@dataclass
class EpisodeSpec:
    """One episode of a source, as the plan gives it.

    index: the episode's stable number in its source (bag: order of
        episodes in the recording; dataset: its ``episode_index``); it names
        the output folder and the manifest entry.
    table_index: ``episode_index`` written in the per-frame tables (the
        index plus a bag's ``--episode-offset``).
    instruction: the task text ("" when the source could not read it).
    start_ns, end_ns: the episode's span on the source's time axis (bag log
        time, dataset timestamps): ticks of the node's timer fire at
        ``tick_phase_ns + k * period`` inside ``(start_ns, end_ns]``.
    end_reason: why the episode ended (next instruction, reset, end of bag...).
    error: the episode cannot be read (it is recorded as failed).
    key: what ``frames()`` needs to find the episode again (opaque to the
        runner and the engines; must pickle).
    record: fields added to the episode's ``curve.json`` (e.g. ``bag_episode``).
    num_frames: primary camera frames, where the plan counted them (reports
        an episode an earlier run did).
    episode_id: the id the TaskProgress / EpisodeSuccess messages of
        ``progress.mcap`` carry (the node's field of that name), named by the
        source so messages of different inputs are told apart.
    """

    index: int
    instruction: str
    start_ns: int
    end_ns: int
    tick_phase_ns: int
    end_reason: str = ""
    table_index: int | None = None
    error: str | None = None
    key: Any = None
    record: dict[str, Any] = field(default_factory=dict)
    num_frames: int | None = None
    episode_id: str = ""

    @property
    def episode_index(self) -> int:
        """The number the tables give this episode."""
        return self.index if self.table_index is None else self.table_index


@dataclass
class SourceFrame:
    """One camera frame of an episode.

    camera: position in the source's camera list (0 is the primary).
    stamp_ns: the frame's own stamp (header stamp, dataset timestamp); None
        when it cannot be read, with ``error`` saying why.
    log_ns: when it was recorded (bag log time; elsewhere the stamp), the
        axis the timer ticks on.
    label: how reports name the frame (``/camera frame stamped N ns``).
    decode: given the view size, returns the view the window keeps (an
        array, or a lazy view converted when its sample is composed) and
        the frame's frame id;
        raises ``FrameDecodeError`` (a ``ValueError``) for a frame that
        cannot be decoded. Called only for frames the schedule wants, and
        only while the frame is the current one (a source may let its
        decoder go once the next frame is read).
    """

    camera: int
    stamp_ns: int | None
    log_ns: int
    label: str
    decode: Callable[[int], tuple[Any, str]] | None = None
    error: str | None = None


@dataclass
class SourceNotes:
    """What a source found outside any one episode, for the run summary."""

    notes: list[str] = field(default_factory=list)
    frames_outside_episodes: int = 0
    read_error: str | None = None


class EpisodeSource(ABC):
    """An input whose episodes the offline runner scores (see the module doc)."""

    #: what a report calls this kind of input ("bag", "dataset", "video")
    kind: str = "input"
    #: the input's path (recorded in the manifest)
    path: Path
    #: camera names (topics, feature keys), primary first
    cameras: tuple[str, ...]

    @abstractmethod
    def check(self) -> None:
        """Raise ``SourceError`` saying what to change if the options do not fit the input."""

    @abstractmethod
    def fingerprint(self) -> str:
        """A cheap identity of the input's content (sizes and sampled blocks)."""

    @abstractmethod
    def settings_record(self) -> dict[str, Any]:
        """The source options that change the outputs (a resumed run must match)."""

    @abstractmethod
    def plan(self) -> tuple[list[EpisodeSpec], SourceNotes]:
        """Every episode, in order; and what was found outside them."""

    @abstractmethod
    def frames(self, spec: EpisodeSpec) -> Iterator[SourceFrame]:
        """The episode's frames in time order; raises ``SourceReadError`` if reading breaks."""

    def walk(self, notes: SourceNotes) -> Iterator[tuple[EpisodeSpec, Iterator[SourceFrame]]]:
        """Each episode with its frames, in order; the caller reads each stream before the next.

        What the walk finds outside the episodes goes into ``notes``. A spec's
        ``end_ns`` and ``end_reason`` are final once its frames are read.
        """
        specs, found = self.plan()
        notes.notes.extend(found.notes)
        notes.frames_outside_episodes += found.frames_outside_episodes
        notes.read_error = notes.read_error or found.read_error
        for spec in specs:
            yield spec, (iter(()) if spec.error else self.frames(spec))

    def rabc_index(self, frames: Any) -> tuple[Any, dict[str, str]]:
        """The dataset ``index`` of each row of a frame table (None: rows counted), and metadata."""
        return None, {}
