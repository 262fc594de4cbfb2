"""A rosbag2 bag as an episode source: episodes cut where the node would cut them.

The bag's messages are read in log-time order and cut into episodes by the
rules of ``bag.episodes`` (instruction and reset messages, primary camera
stamps jumping back or far forward, a fixed instruction). Every camera
message becomes a ``SourceFrame`` whose header stamp is read from its bytes
(``header_stamp_ns``); the message is deserialised and converted only when
the 2 fps schedule keeps it.

Two ways to read, one set of rules:

* ``walk()`` reads the bag once, cutting as it goes (the in-process engine);
* ``plan()`` reads only the topics that cut (instruction, reset, the
  primary camera's header stamps), decodes nothing, and notes per episode
  the message it starts at. ``frames(spec)`` then reads only the episode's
  log-time range (the storage index finds it) and picks up the cut exactly
  there, so a replica on another machine reads one episode, not the bag.

Episode numbers count the bag's episodes from 0 in log-time order (the
``N`` of ``episode_NNNN``); the tables add ``episode_offset``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from topreward_ros.bag.base import BagError, BagReadError, bag_fingerprint
from topreward_ros.bag.stamps import StampError, header_stamp_ns
from topreward_ros.episode.cameras import CAMERA_TYPE_NAMES
from topreward_ros.episode.cuts import EpisodeEvent, EpisodeSplitter, stamp_cut
from topreward_ros.offline import source as src
from topreward_ros.scoring.prompt import validate_instruction

STRING_TYPE = "std_msgs/msg/String"


class BagSetupError(BagError, src.SourceError):
    """The options do not fit the bag (missing topic, wrong type, no instruction)."""


@dataclass(frozen=True)
class BagSourceOptions:
    """What to read from the bag and where episodes end.

    camera_topics: image topics (sensor_msgs/Image or CompressedImage); the
        first is the primary camera that drives the 2 fps schedule and the
        per-frame table.
    instruction_topic: std_msgs/String topic carrying the task instruction.
    instruction: fixed instruction for the whole bag (overrides the topic).
    reset_topic: a message of any type here ends the episode and starts a
        new one with the same instruction.
    stamp_jump_restart_s: a primary camera stamp this much older than the
        previous one starts a new episode (the node's parameter of that name).
    stamp_gap_restart_s: a primary camera stamp more than this after the
        episode's previous primary frame starts a new episode (the node's
        parameter of that name): stamps that are zero for a while and then
        real would otherwise put decades between two samples of one video.
    episode_offset: added to the bag's episode numbers in the tables, to
        match a LeRobot dataset assembled from several bags.
    """

    camera_topics: tuple[str, ...]
    instruction_topic: str | None = "/instruction"
    instruction: str | None = None
    reset_topic: str | None = None
    stamp_jump_restart_s: float = 1.0
    stamp_gap_restart_s: float = 60.0
    episode_offset: int = 0

    def __post_init__(self) -> None:
        src.check_camera_names("camera_topics", self.camera_topics, "image topic")
        if self.instruction is not None and not self.instruction.strip():
            raise ValueError("instruction must not be empty (omit it to read the instruction topic)")
        if self.instruction is not None:
            # The core's own check (control-token syntax such as <|im_end|>),
            # so a bad fixed instruction is refused before any model loads.
            validate_instruction(self.instruction)
        if self.instruction is None and not self.instruction_topic:
            raise ValueError("give an instruction topic or a fixed instruction")
        if not (math.isfinite(self.stamp_jump_restart_s) and self.stamp_jump_restart_s >= 0):
            raise ValueError(f"stamp_jump_restart_s must be a finite number >= 0, got {self.stamp_jump_restart_s!r}")
        if not (math.isfinite(self.stamp_gap_restart_s) and self.stamp_gap_restart_s > 0):
            raise ValueError(f"stamp_gap_restart_s must be a finite number > 0, got {self.stamp_gap_restart_s!r}")
        if self.episode_offset < 0:
            raise ValueError(f"episode_offset must be >= 0, got {self.episode_offset!r}")

    @property
    def topics(self) -> set[str]:
        """Every topic the episodes are read from."""
        topics = set(self.camera_topics)
        if self.instruction is None and self.instruction_topic:
            topics.add(self.instruction_topic)
        if self.reset_topic:
            topics.add(self.reset_topic)
        return topics


def check_bag(reader: Any, options: BagSourceOptions) -> None:
    """Raise ``BagSetupError`` (saying what to change) if the options do not fit the bag."""
    if reader.message_count == 0 or not reader.topics:
        raise BagSetupError(f"{reader.path}: the bag is empty (no messages)")
    topics = reader.topics
    image_topics = sorted(t for t, i in topics.items() if i.msgtype in CAMERA_TYPE_NAMES)
    for topic in options.camera_topics:
        if topic not in topics:
            raise BagSetupError(
                f"camera topic {topic} is not in the bag; image topics there: {', '.join(image_topics) or 'none'}"
            )
        if topics[topic].msgtype not in CAMERA_TYPE_NAMES:
            raise BagSetupError(
                f"camera topic {topic} carries {topics[topic].msgtype}, expected {' or '.join(CAMERA_TYPE_NAMES)}"
            )
        if topics[topic].message_count == 0:
            raise BagSetupError(
                f"camera topic {topic} has no messages: nothing to score; image topics with "
                f"messages: {', '.join(t for t in image_topics if topics[t].message_count) or 'none'}"
            )
    if options.instruction is None:
        topic = options.instruction_topic
        assert topic is not None
        strings = sorted(t for t, i in topics.items() if i.msgtype == STRING_TYPE)
        if topic not in topics:
            raise BagSetupError(
                f"missing instruction: the bag has no topic {topic}; std_msgs/String topics "
                f"there: {', '.join(strings) or 'none'}; pass --instruction-topic TOPIC or "
                f"--instruction TEXT"
            )
        if topics[topic].msgtype != STRING_TYPE:
            raise BagSetupError(f"instruction topic {topic} carries {topics[topic].msgtype}, expected {STRING_TYPE}")
        if topics[topic].message_count == 0:
            raise BagSetupError(
                f"instruction topic {topic} has no messages, so no episode starts; pass "
                f"--instruction TEXT to score the whole bag as one task"
            )
    if options.reset_topic and options.reset_topic not in topics:
        raise BagSetupError(f"reset topic {options.reset_topic} is not in the bag")


def pick_cameras(bag: Path, cameras: Sequence[str] | None) -> tuple[str, ...]:
    """The camera topics to use: those given, else the bag's only image topic."""
    from topreward_ros.bag.reader import BagReader

    if cameras:
        return tuple(cameras)
    with BagReader(bag) as reader:
        images = sorted(t for t, i in reader.topics.items() if i.msgtype in CAMERA_TYPE_NAMES)
    if len(images) == 1:
        return (images[0],)
    if not images:
        raise BagSetupError(f"{bag}: the bag has no camera topic ({' or '.join(CAMERA_TYPE_NAMES)})")
    raise BagSetupError(
        f"{bag}: several image topics ({', '.join(images)}); choose with --camera "
        f"(repeat it for several cameras, the first is the primary)"
    )


@dataclass(frozen=True)
class _Start:
    """The message an episode starts at, found again whatever else is read beside it.

    ``topic`` and ``nth``: the ``nth`` message (from 0) of that topic logged
    at ``log_ns``; None for an episode that starts before the bag's first
    message (a fixed instruction). ``included``: that message is the
    episode's first frame (a stamp cut), not an instruction or reset, which
    belong to no episode. Messages of other topics logged at the same time
    fall before or after it as the storage orders them, in every read.
    """

    log_ns: int
    topic: str | None
    nth: int
    included: bool


class _Cut:
    """The cutting state of one read of the bag (the whole bag, or one episode's range)."""

    def __init__(self, source: BagSource, reader: Any, notes: src.SourceNotes | None) -> None:
        self.source = source
        self.options = source.options
        self.reader = reader
        self.notes = notes
        self.cameras = {topic: i for i, topic in enumerate(self.options.camera_topics)}
        self.splitter = EpisodeSplitter(self.options.instruction)
        self.next_index = 0
        self.current: src.EpisodeSpec | None = None
        self.last_primary_ns: int | None = None
        self.phase_ns: int | None = None
        # Messages of each topic already handled at the log time of the one being handled.
        self.time_ns: int | None = None
        self.at_time: dict[str, int] = {}
        self.topic: str | None = None

    def events(
        self,
        messages: Iterator[Any],
        first_spec: src.EpisodeSpec | None = None,
        phase_ns: int | None = None,
        last_ns: Callable[[int], int] | None = None,
    ) -> Iterator[tuple[str, Any]]:
        """("start", spec), ("frame", SourceFrame) and ("end", spec), in stream order.

        ``phase_ns``: the bag's first log time when ``messages`` leave out
        topics that could hold it; ``last_ns``: the bag's last log time given
        the last one of ``messages`` (the end of the last episode).
        """
        opts = self.options
        last_log_ns = 0
        if first_spec is not None:
            self.current, self.phase_ns = first_spec, first_spec.tick_phase_ns
            self.splitter.continue_episode(first_spec.instruction)
        elif phase_ns is not None:
            self.phase_ns = phase_ns
            yield from self._handle(self.splitter.begin(phase_ns), skip_self=False)
        try:
            for message in messages:
                t = message.log_time_ns
                last_log_ns = max(last_log_ns, t)
                if t != self.time_ns:
                    self.time_ns, self.at_time = t, {}
                topic = self.topic = message.topic
                if self.phase_ns is None:
                    self.phase_ns = t
                    yield from self._handle(self.splitter.begin(t), skip_self=False)
                if topic in self.cameras:
                    yield from self._camera(message, self.cameras[topic])
                elif topic == opts.reset_topic:
                    yield from self._handle(self.splitter.on_reset(t), skip_self=True)
                else:
                    text = str(self.reader.deserialize(message).data)
                    yield from self._handle(self.splitter.on_instruction(text, t), skip_self=True)
                self.at_time[topic] = self.at_time.get(topic, 0) + 1
            if last_ns is not None:
                last_log_ns = last_ns(last_log_ns)
            yield from self._handle(self.splitter.finish(last_log_ns), skip_self=False)
        except BagReadError as exc:
            raise src.SourceReadError(str(exc)) from exc
        if self.notes is not None:
            if self.splitter.ignored_empty:
                self.notes.notes.append(
                    f"{self.splitter.ignored_empty} empty instruction message(s) ignored (as the "
                    f"node does: the episode goes on)"
                )
            if self.splitter.ignored_resets:
                self.notes.notes.append(f"{self.splitter.ignored_resets} reset(s) before any instruction ignored")

    def _camera(self, message: Any, camera: int) -> Iterator[tuple[str, Any]]:
        t, topic = message.log_time_ns, message.topic
        opts_jump_s = self.options.stamp_jump_restart_s
        opts_gap_s = self.options.stamp_gap_restart_s
        if self.current is None:
            if camera == 0 and self.notes is not None:
                self.notes.frames_outside_episodes += 1
            return
        try:
            stamp_ns = header_stamp_ns(message.data)
        except StampError as exc:
            yield "frame", src.SourceFrame(camera, None, t, f"{topic} at log time {t}", error=str(exc))
            return
        if camera == 0:
            previous = self.last_primary_ns
            cut = stamp_cut(previous, stamp_ns, opts_jump_s, opts_gap_s)
            if cut is not None:
                ended = self.current.index
                yield from self._handle(self.splitter.on_stamp_cut(t, cut), skip_self=False)
                if cut.direction == "forward" and self.notes is not None:
                    self.notes.notes.append(
                        f"episode {ended} ended at log time {t}: the primary camera stamp jumped "
                        f"forward by {cut.seconds:.3f} s "
                        f"(from {previous} to {stamp_ns} ns, more than stamp_gap_restart_s); "
                        f"the frames from there on are a new episode with the same instruction"
                    )
            self.last_primary_ns = stamp_ns
            if self.notes is not None:  # reading the whole bag: the plan counts the frames
                self.current.num_frames = (self.current.num_frames or 0) + 1
        reader = self.reader

        def decode(view_size: int, message: Any = message) -> tuple[Any, str]:
            # Converted when the tick composes its sample, as in the node.
            from topreward_ros.episode.camera_view import CameraView

            try:
                msg = reader.deserialize(message)
            except BagError as exc:
                raise src.FrameDecodeError(str(exc)) from exc
            return CameraView(msg, view_size), getattr(msg.header, "frame_id", "")

        yield "frame", src.SourceFrame(camera, stamp_ns, t, f"{topic} frame stamped {stamp_ns} ns", decode=decode)

    def _handle(self, events: list[EpisodeEvent], skip_self: bool) -> Iterator[tuple[str, Any]]:
        for event in events:
            if event.action == "end":
                if self.current is not None:
                    self.current.end_ns, self.current.end_reason = event.log_time_ns, event.reason
                    yield "end", self.current
                self.current = None
                continue
            index = self.next_index
            self.next_index += 1
            self.last_primary_ns = None
            assert self.phase_ns is not None
            # An instruction or reset message is not part of its episode; a
            # camera frame that starts one (a stamp cut) is its first frame.
            if event.reason in ("fixed instruction",) or self.topic is None:
                start = _Start(event.log_time_ns, None, 0, True)
            else:
                start = _Start(event.log_time_ns, self.topic, self.at_time.get(self.topic, 0), included=not skip_self)
            self.current = src.EpisodeSpec(
                index,
                event.instruction,
                event.log_time_ns,
                event.log_time_ns,
                self.phase_ns,
                table_index=index + self.options.episode_offset,
                key=start,
                record={"bag_episode": index},
                episode_id=f"bag-episode-{index:04d}",
            )
            yield "start", self.current


class BagSource(src.EpisodeSource):
    """One bag with its scoring options (see the module doc); picklable, opens the bag on use."""

    kind = "bag"

    def __init__(self, path: Path | str, options: BagSourceOptions) -> None:
        self.path = Path(path)
        self.options = options
        self.cameras = options.camera_topics

    def _open(self) -> Any:
        from topreward_ros.bag.reader import BagReader

        return BagReader(self.path)

    def check(self) -> None:
        with self._open() as reader:
            check_bag(reader, self.options)

    def fingerprint(self) -> str:
        return bag_fingerprint(self.path)

    def settings_record(self) -> dict[str, Any]:
        record = asdict(self.options)
        record["camera_topics"] = list(self.options.camera_topics)
        return record

    def plan(self) -> tuple[list[src.EpisodeSpec], src.SourceNotes]:
        """The episodes and where each starts, from the instruction, reset and primary topics.

        Those topics decide every cut (the primary camera's header stamps
        decide the stamp cuts and are read from the raw bytes); the other
        cameras are read only for the bag's first and last log times, which
        the timer's phase and the last episode's end need: their first
        message and their tail after the planned topics end.
        """
        notes = src.SourceNotes()
        specs: list[src.EpisodeSpec] = []
        opts = self.options
        planned = opts.topics - set(opts.camera_topics[1:])
        others = opts.topics - planned
        try:
            with self._open() as reader:
                notes.notes.extend(reader.notes)
                check_bag(reader, opts)
                firsts = [m.log_time_ns for t in sorted(opts.topics) for m in _first(reader.messages({t}))]

                def last_ns(planned_last: int) -> int:
                    tail = reader.messages(others, start_ns=planned_last) if others else ()
                    return max([planned_last, *(m.log_time_ns for m in tail)])

                cut = _Cut(self, reader, notes)
                for kind, item in cut.events(reader.messages(planned), phase_ns=min(firsts), last_ns=last_ns):
                    if kind == "start":
                        specs.append(item)
        except (src.SourceReadError, BagReadError) as exc:
            notes.read_error = str(exc)
            if specs and specs[-1].end_reason == "":  # the episode the damage cut short
                specs[-1].error = f"bag unreadable before the episode ended: {exc}"
        except BagSetupError:
            raise
        except BagError as exc:  # unopenable since it was checked: the input fails, not the run
            raise src.SourceError(str(exc)) from exc
        return specs, notes

    def walk(self, notes: src.SourceNotes) -> Iterator[tuple[src.EpisodeSpec, Iterator[src.SourceFrame]]]:
        with self._open() as reader:
            notes.notes.extend(reader.notes)
            check_bag(reader, self.options)
            cut = _Cut(self, reader, notes)
            stream = cut.events(reader.messages(self.options.topics))
            for kind, item in stream:
                if kind != "start":
                    continue
                frames = _episode_frames(stream)
                yield item, frames
                for _ in frames:  # what the caller left of the episode
                    pass

    def frames(self, spec: src.EpisodeSpec) -> Iterator[src.SourceFrame]:
        start = spec.key
        if not isinstance(start, _Start):
            raise ValueError(f"episode {spec.index} was not planned by a BagSource")
        with self._open() as reader:
            cut = _Cut(self, reader, None)
            messages = reader.messages(self.options.topics, start.log_ns, spec.end_ns + 1)
            try:
                rest = _from_start(messages, start)
                yield from _episode_frames(cut.events(rest, first_spec=spec))
            except BagReadError as exc:
                raise src.SourceReadError(str(exc)) from exc


def _first(messages: Iterator[Any]) -> list[Any]:
    for message in messages:
        return [message]
    return []


def _from_start(messages: Iterator[Any], start: _Start) -> Iterator[Any]:
    """The messages of a range read from the episode's first one on (see ``_Start``)."""
    if start.topic is not None:
        seen = 0
        for message in messages:
            if message.log_time_ns == start.log_ns and message.topic == start.topic:
                if seen == start.nth:
                    if start.included:
                        yield message
                    break
                seen += 1
    yield from messages


def _episode_frames(stream: Iterator[tuple[str, Any]]) -> Iterator[src.SourceFrame]:
    """The frames of the episode that just started, up to its end."""
    for kind, item in stream:
        if kind == "frame":
            yield item
        elif kind == "end":
            return
