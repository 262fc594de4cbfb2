"""The frames of the current episode, as the model will see them.

One code path for the live node and the offline runner: both hand every
camera frame to an ``EpisodeWindow`` in arrival order and read back complete
samples. That is what makes a recording scored offline give the same numbers
as the node that watched it live.

Cost model: ``wants()`` is a few integer comparisons, so a camera callback
can drop the frames the 2 fps schedule does not need. A kept frame may be
handed over unconverted (any object with a ``view()`` method, such as
``topreward_ros.episode.camera_view.CameraView``): it is converted when its sample is
composed in ``finalize``, on the scoring thread, and only the small
model-sized view is stored in ``samples``. A frame whose conversion fails is
left out and listed in ``bad_frames``: a sample without its primary view is
dropped, a secondary view becomes grey like a missing one.

Several cameras: camera 0 is the primary and drives the schedule. Every other
camera contributes, to each primary sample, its frame nearest in stamp within
``sync_tolerance_ns``; a camera with no frame that close (it stalled, or lags)
gives a grey view and counts a sync miss, never an older frame from another
moment. The views are placed side by side in one image (each at
the model's view size), so every camera keeps its full resolution and the VLM
sees one synchronised video, rather than two videos whose frames it would have
to pair itself.

Memory: at most ``max_frames`` samples. When full, the window keeps every
other sample, always including the first one (the episode start is what the
model compares the present against), and halves the sampling rate from then
on. Consumers notice through ``generation`` and rescore from the kept frames.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from topreward_ros.scoring.schedule import FrameSampler

# Grey used for a camera that has no frame within the sync tolerance of a sample.
MISSING_VIEW_VALUE = 127


class LazyView(Protocol):
    """A frame converted on demand; ``view()`` raises ValueError if it is unusable."""

    def view(self) -> np.ndarray: ...


#: What ``add`` takes: a ready view, or one converted when its sample is composed.
ViewSource = np.ndarray | LazyView


@dataclass(frozen=True)
class BadFrame:
    """A kept frame whose conversion failed when its sample was composed."""

    camera: int
    stamp_ns: int
    error: str


class AddResult(enum.Enum):
    """What the window did with a frame."""

    KEPT = "kept"
    SKIPPED = "skipped"  # not needed by the schedule
    STALE = "stale"  # not newer than that camera's last frame: clock jump or reordering
    OTHER_EPISODE = "other episode"  # a new episode began after the caller decided to add it


@dataclass(frozen=True)
class Sample:
    """One sampled time step: every camera's view, composed side by side."""

    stamp_ns: int
    image: np.ndarray
    frame_id: str
    view_stamps_ns: tuple[int | None, ...]


@dataclass
class _PendingSample:
    stamp_ns: int
    frame_id: str
    views: list[ViewSource | None]
    view_stamps_ns: list[int | None]
    resolved: list[bool]


@dataclass
class _CameraBuffer:
    """Recent kept frames of a secondary camera, oldest first."""

    frames: deque = field(default_factory=deque)  # (stamp_ns, view)
    newest_ns: int | None = None


class EpisodeWindow:
    """Sampled, camera-synchronised frames of one episode."""

    def __init__(
        self, num_cameras: int = 1, sample_fps: float = 2.0, max_frames: int = 256, sync_tolerance_ns: int = 50_000_000
    ) -> None:
        if num_cameras < 1:
            raise ValueError(f"num_cameras must be >= 1, got {num_cameras}")
        if max_frames < 2:
            raise ValueError(f"max_frames must be >= 2, got {max_frames}")
        if sync_tolerance_ns < 0:
            raise ValueError(f"sync_tolerance_ns must be >= 0, got {sync_tolerance_ns}")
        self.num_cameras = num_cameras
        self.max_frames = max_frames
        self.sync_tolerance_ns = int(sync_tolerance_ns)
        self._sampler = FrameSampler(sample_fps)
        self.generation = 0
        self.reset()

    # -- state ---------------------------------------------------------------
    def reset(self) -> None:
        """Start a new, empty episode."""
        self._sampler.reset()
        self.samples: list[Sample] = []
        self._pending: list[_PendingSample] = []
        self._buffers = [_CameraBuffer() for _ in range(self.num_cameras)]
        self.thinned = 0
        # Per camera (index 0, the primary, never misses): samples given a grey view.
        self.sync_misses_by_camera = [0] * self.num_cameras
        self.bad_frames: list[BadFrame] = []
        self._reported_bad: set[tuple[int, int]] = set()
        self.generation += 1

    @property
    def sync_misses(self) -> int:
        """Samples, summed over secondary cameras, that got a grey view."""
        return sum(self.sync_misses_by_camera)

    @property
    def sample_period_ns(self) -> int:
        return self._sampler.period_ns

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    # -- input ---------------------------------------------------------------
    def wants(self, camera: int, stamp_ns: int) -> bool:
        """Would a frame of ``camera`` at ``stamp_ns`` be used? No state change."""
        self._check_camera(camera)
        buffer = self._buffers[camera]
        if buffer.newest_ns is not None and stamp_ns <= buffer.newest_ns:
            return False
        if camera == 0:
            return self._sampler.wants(stamp_ns)
        tol = self.sync_tolerance_ns
        for pending in self._pending:
            if not pending.resolved[camera] and stamp_ns >= pending.stamp_ns - tol:
                return True
        next_slot = self._sampler.next_slot_ns
        if next_slot is None:
            return True  # no primary frame yet: any frame may become the match
        return stamp_ns >= next_slot - self._sampler.slack_ns - tol

    def add(self, camera: int, stamp_ns: int, view: ViewSource, frame_id: str = "") -> AddResult:
        """Hand over a frame: its model view, or a ``LazyView`` converted in ``finalize``."""
        self._check_camera(camera)
        stamp_ns = int(stamp_ns)
        buffer = self._buffers[camera]
        if buffer.newest_ns is not None and stamp_ns <= buffer.newest_ns:
            return AddResult.STALE
        if camera == 0:
            if not self._sampler.offer(stamp_ns):
                return AddResult.SKIPPED
            buffer.newest_ns = stamp_ns
            views: list[ViewSource | None] = [None] * self.num_cameras
            stamps: list[int | None] = [None] * self.num_cameras
            resolved = [False] * self.num_cameras
            views[0], stamps[0], resolved[0] = view, stamp_ns, True
            self._pending.append(_PendingSample(stamp_ns, frame_id, views, stamps, resolved))
        else:
            if not self.wants(camera, stamp_ns):
                return AddResult.SKIPPED
            buffer.newest_ns = stamp_ns
            buffer.frames.append((stamp_ns, view))
        self._match_pending()
        return AddResult.KEPT

    # -- output --------------------------------------------------------------
    def finalize(self) -> list[Sample]:
        """Move every complete sample, in order, into ``samples``; return them."""
        self._match_pending(final=False)
        done: list[Sample] = []
        while self._pending and all(self._pending[0].resolved):
            sample = self._compose(self._pending.pop(0))
            if sample is not None:
                done.append(sample)
        if done:
            self.samples.extend(done)
            while len(self.samples) > self.max_frames:
                self._thin()
        self._prune_buffers()
        return done

    def lazy_views(self) -> list[Any]:
        """Lazy views of the pending samples, so a caller can convert them outside its lock."""
        return [v for p in self._pending for v in p.views if v is not None and not isinstance(v, np.ndarray)]

    def take_bad_frames(self) -> list[BadFrame]:
        """The frames found unusable since the last call."""
        bad, self.bad_frames = self.bad_frames, []
        return bad

    def flush(self) -> list[Sample]:
        """Complete every pending sample with what has arrived (end of a bag)."""
        self._match_pending(final=True)
        return self.finalize()

    # -- internals -------------------------------------------------------------
    def _check_camera(self, camera: int) -> None:
        if not 0 <= camera < self.num_cameras:
            raise IndexError(f"camera index {camera} out of range (0..{self.num_cameras - 1})")

    def _newest_any_ns(self) -> int | None:
        stamps = [b.newest_ns for b in self._buffers if b.newest_ns is not None]
        return max(stamps) if stamps else None

    def _match_pending(self, final: bool = False) -> None:
        """Settle each secondary view once no better-matching frame can come.

        A camera's nearest frame to a sample is settled once that camera has
        delivered a frame at or after the sample's stamp (frames arrive in
        stamp order), or once any camera has moved past the sample by more
        than the tolerance (a late frame could no longer be within it).
        """
        tol = self.sync_tolerance_ns
        newest_any = self._newest_any_ns()
        for pending in self._pending:
            for camera in range(1, self.num_cameras):
                if pending.resolved[camera]:
                    continue
                buffer = self._buffers[camera]
                settled = (
                    final
                    or (buffer.newest_ns is not None and buffer.newest_ns >= pending.stamp_ns)
                    or (newest_any is not None and newest_any > pending.stamp_ns + tol)
                )
                if not settled:
                    continue
                best = min(buffer.frames, key=lambda item: abs(item[0] - pending.stamp_ns), default=None)
                if best is None or abs(best[0] - pending.stamp_ns) > tol:
                    # A frame from another moment would show the model a scene
                    # that is not the primary's: grey says "no view" instead.
                    self.sync_misses_by_camera[camera] += 1
                else:
                    pending.view_stamps_ns[camera], pending.views[camera] = best
                pending.resolved[camera] = True

    def _converted(self, camera: int, stamp_ns: int | None, view: ViewSource | None) -> np.ndarray | None:
        """The view as an array; None (the failure listed once in ``bad_frames``) if unusable."""
        if view is None or isinstance(view, np.ndarray):
            return view
        try:
            return view.view()
        except ValueError as exc:
            key = (camera, int(stamp_ns or 0))
            if key not in self._reported_bad:
                self._reported_bad.add(key)
                self.bad_frames.append(BadFrame(camera, key[1], str(exc)))
            return None

    def _compose(self, pending: _PendingSample) -> Sample | None:
        converted = [
            self._converted(camera, pending.view_stamps_ns[camera], view) for camera, view in enumerate(pending.views)
        ]
        primary = converted[0]
        if primary is None:
            return None  # the primary frame is unusable: no sample at this step
        views = [v if v is not None else np.full_like(primary, MISSING_VIEW_VALUE) for v in converted]
        image = views[0] if len(views) == 1 else np.concatenate(views, axis=1)
        # An unusable secondary frame was not seen: its stamp is not reported.
        stamps = tuple(s if c is not None else None for s, c in zip(pending.view_stamps_ns, converted))
        return Sample(pending.stamp_ns, image, pending.frame_id, stamps)

    def _thin(self) -> None:
        self.samples = self.samples[::2]
        self._sampler.coarsen(2)
        self.thinned += 1
        self.generation += 1

    def _prune_buffers(self) -> None:
        """Drop secondary frames no pending or future sample can match.

        Every frame older than the cut is outside the tolerance of every
        pending and future sample, so none is kept as a stand-in.
        """
        if self._pending:
            horizon = self._pending[0].stamp_ns
        else:
            horizon = self._sampler.next_slot_ns
            if horizon is None:
                return
            horizon -= self._sampler.slack_ns
        cut = horizon - self.sync_tolerance_ns
        for buffer in self._buffers[1:]:
            frames = buffer.frames
            while frames and frames[0][0] < cut:
                frames.popleft()
