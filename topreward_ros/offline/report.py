"""What an offline run did to each episode of one source, for the summary and the exit code."""

from __future__ import annotations

from dataclasses import dataclass, field

STATUSES = ("scored", "skipped", "empty", "refused", "failed")


@dataclass
class EpisodeOutcome:
    """What happened to one episode of the source in this run."""

    index: int
    instruction: str
    # "scored", "skipped" (done by an earlier run), "empty", "refused" (the
    # instruction cannot be put to the model), "failed"
    status: str
    message: str = ""
    directory: str = ""
    num_frames: int = 0
    num_samples: int = 0
    num_ticks: int = 0
    # Per camera: frames whose stamp did not increase over that camera's
    # previous frame (never sampled); samples that got a grey view because a
    # secondary camera had no frame within the sync tolerance.
    stamps_not_increasing: dict[str, int] = field(default_factory=dict)
    sync_misses: dict[str, int] = field(default_factory=dict)
    # Source times the episode spans (set for refused episodes: the interval not scored).
    start_log_ns: int | None = None
    end_log_ns: int | None = None


@dataclass
class RunReport:
    """Everything a run of one source did, for the CLI summary and for callers."""

    bag: str  # the input's path (a bag, a dataset, a video)
    output: str
    episodes: list[EpisodeOutcome] = field(default_factory=list)
    read_error: str | None = None
    interrupted: bool = False
    stopped_early: bool = False
    notes: list[str] = field(default_factory=list)
    frames_outside_episodes: int = 0
    model_s: float = 0.0  # wall time spent inside the model (ticks and offline curves)
    kind: str = "bag"

    @property
    def input(self) -> str:
        return self.bag

    def by_status(self, status: str) -> list[EpisodeOutcome]:
        return [e for e in self.episodes if e.status == status]

    @property
    def nothing_scored(self) -> bool:
        """The run finished without a single scored (or earlier scored) episode."""
        return not (self.interrupted or self.by_status("scored") or self.by_status("skipped"))

    @property
    def ok(self) -> bool:
        return not (
            self.read_error
            or self.interrupted
            or self.by_status("failed")
            or self.by_status("refused")
            or self.nothing_scored
        )

    def summary(self) -> str:
        lines = [f"{self.kind} {self.bag} -> {self.output}"]
        for e in self.episodes:
            detail = f" ({e.message})" if e.message else ""
            lines.append(
                f"  episode {e.index:4d} {e.status:8s} {e.num_frames:5d} frames "
                f"{e.num_samples:4d} samples {e.num_ticks:4d} ticks  {e.instruction!r}{detail}"
            )
        counts = ", ".join(f"{len(self.by_status(s))} {s}" for s in STATUSES)
        lines.append(f"episodes: {counts}")
        for e in self.episodes:
            for topic, count in e.stamps_not_increasing.items():
                lines.append(
                    f"WARNING: episode {e.index}: {count} of {topic}'s frames have a header stamp "
                    f"that does not increase over the previous frame (a driver publishing zero or "
                    f"repeated stamps?); they were never sampled"
                )
            for topic, count in e.sync_misses.items():
                lines.append(
                    f"note: episode {e.index}: {count} of {e.num_samples} samples have no {topic} "
                    f"frame within the sync tolerance (grey view)"
                )
        if self.nothing_scored and self.by_status("failed"):
            # Failures name their own cause (a replica that cannot open the input, a model error).
            empty = len(self.by_status("empty"))
            lines.append(
                f"NOTHING SCORED: {len(self.by_status('failed'))} episode(s) of the {self.kind} "
                "failed (their errors are above)" + (f", {empty} had no usable camera frame" if empty else "")
            )
        elif self.nothing_scored:
            lines.append(
                f"NOTHING SCORED: no episode of the {self.kind} had a usable camera frame (see the episodes above)"
            )
        if self.frames_outside_episodes:
            lines.append(
                f"note: {self.frames_outside_episodes} primary camera frames arrived outside any "
                f"episode (before the first instruction or after an empty one) and were ignored"
            )
        lines.extend(f"note: {n}" for n in self.notes)
        if self.read_error:
            lines.append(f"READ ERROR: {self.read_error}")
        if self.interrupted:
            lines.append("INTERRUPTED: completed episodes are kept; re-run to continue")
        if self.stopped_early:
            lines.append("stopped after --max-episodes; re-run to continue")
        return "\n".join(lines)
