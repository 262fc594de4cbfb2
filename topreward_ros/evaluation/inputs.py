"""What ``topreward eval`` reads, and how its episodes are named.

An input is a rosbag2 bag (a bag directory, or a single ``.mcap`` /
``.db3`` file), a local LeRobot v3 dataset (a directory holding
``meta/info.json``), a video file, or a folder of frames. Episode names,
used by the labels file and every output:

* a bag holds many episodes, cut where ``topreward bag`` (and the node)
  cut them: ``<bag name>/<episode index>``, the bag name being the bag
  directory's name (or the file's stem for a single ``.mcap`` / ``.db3``)
  and the index counting the bag's episodes from 0 in log-time order, the
  ``N`` of ``topreward bag``'s ``episode_NNNN`` directories;
* a dataset holds many episodes too: ``<dataset name>/<episode_index>``,
  the dataset name being its root directory's name and the index the
  dataset's own ``episode_index`` (the one LeRobot, its viewer and
  ``topreward lerobot`` use), so a label is written once against the
  dataset and never depends on which episodes a run selects;
* a video file is one episode named by its file stem (``runs/pick_03.mp4``
  -> ``pick_03``);
* a folder of frames is one episode named by the folder's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from topreward_ros.evaluation.labels import Label
from topreward_ros.sources.kinds import BAG_SUFFIXES, SourceKind, is_dataset_directory, kind_of, source_kind


class EvalInputError(ValueError):
    """An input or label does not fit (message for the user)."""


@dataclass(frozen=True)
class EvalInput:
    """One input path, its kind (a name in ``sources.kinds.KINDS``) and its name.

    The name is a bag's or dataset's directory name, a video's stem, a frame
    folder's name.
    """

    path: Path
    kind: str
    name: str

    @property
    def source_kind(self) -> SourceKind:
        return source_kind(self.kind)

    @property
    def multi_episode(self) -> bool:
        """Holds several episodes, each named ``<name>/<index>`` (a bag or a dataset)."""
        return self.source_kind.multi_episode


def classify(path: Path) -> EvalInput:
    """Decide which kind of input ``path`` is (the first of ``KINDS`` that recognises it)."""
    path = Path(path)
    if not path.exists():
        raise EvalInputError(f"input {path} does not exist")
    kind = kind_of(path)
    if kind is None:
        raise EvalInputError(f"input {path} is neither a file nor a directory")
    return EvalInput(path, kind.name, path.stem if path.is_file() else path.resolve().name)


def episode_name(source: EvalInput, index: int | None = None) -> str:
    """The name of an episode of ``source`` (``index``: a bag's episode or a dataset's episode_index)."""
    if source.multi_episode:
        if index is None:
            raise ValueError(f"an episode of a {source.kind} needs its index")
        return f"{source.name}/{index}"
    return source.name


def expand_arguments(arguments: Sequence[str | Path]) -> list[Path]:
    """The input paths the command line names, as ``topreward bag`` reads them.

    ``@LIST`` is a list file (one path per line, ``#`` comments, relative to
    the file); a directory that is neither a bag nor a dataset itself but
    holds bags (bag directories or single ``.mcap`` / ``.db3`` files) or
    LeRobot datasets stands for those, in name order, so a fleet's folder of
    recordings is one argument. Anything else is one input as given.
    """
    from topreward_ros.sources.bag_inputs import InputError, is_bag_directory, read_list_file

    def holds_episodes(p: Path) -> bool:
        if p.is_file():
            return p.suffix.lower() in BAG_SUFFIXES
        return p.is_dir() and (is_bag_directory(p) or is_dataset_directory(p))

    paths: list[Path] = []
    for argument in arguments:
        text = str(argument)
        if text.startswith("@") and len(text) > 1:
            try:
                paths.extend(read_list_file(Path(text[1:]).expanduser()))
            except InputError as exc:
                raise EvalInputError(str(exc)) from exc
            continue
        path = Path(text)
        if path.is_dir() and not is_bag_directory(path) and not is_dataset_directory(path):
            members = sorted(p for p in path.iterdir() if not p.name.startswith(".") and holds_episodes(p))
            if members:
                paths.extend(members)
                continue
        paths.append(path)
    return paths


def classify_all(paths: Sequence[str | Path]) -> list[EvalInput]:
    """Classify every input (after ``expand_arguments``); names must be unique."""
    inputs = [classify(p) for p in expand_arguments(paths)]
    seen: dict[str, EvalInput] = {}
    for item in inputs:
        if item.name in seen:
            raise EvalInputError(
                f"inputs {seen[item.name].path} and {item.path} have the same name {item.name!r}; "
                f"episodes are named after their input, so rename or copy one of them"
            )
        seen[item.name] = item
    return inputs


def check_labels(inputs: Sequence[EvalInput], labels: dict[str, Label], fixed_instruction: str | None) -> None:
    """Refuse, before any scoring, labels that name no input and videos without a label.

    Whether a bag or a dataset really has the episode index a label names is
    checked after its scoring, with the other problems of the run (a
    dataset's list is cheap to read, a bag's is not; both are reported the
    same way).
    """
    singles = {i.name: i for i in inputs if not i.multi_episode}
    bags = sorted(i.name for i in inputs if i.kind == "bag")
    datasets = sorted(i.name for i in inputs if i.kind == "dataset")
    multi = {i.name for i in inputs if i.multi_episode}
    unknown = []
    for name in labels:
        if name in singles:
            continue
        head, sep, tail = name.rpartition("/")
        if sep and head in multi and tail.isdigit():
            continue
        unknown.append(name)
    if unknown:
        names = ", ".join(repr(n) for n in sorted(unknown)[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise EvalInputError(
            f"the labels name episode(s) that no input holds: {names}{more}. Episodes are named "
            f"<bag name>/<episode index> for bags ({', '.join(bags) or 'none given'}), "
            f"<dataset name>/<episode_index> for LeRobot datasets ({', '.join(datasets) or 'none given'}), "
            f"by the file stem for videos and the folder name for frame folders "
            f"({', '.join(sorted(singles)) or 'none given'})"
        )
    missing = sorted(n for n in singles if n not in labels)
    if missing:
        raise EvalInputError(
            f"no label for {', '.join(repr(n) for n in missing)}: add a row '<name>,<0|1>' to the labels file"
        )
    without = sorted(n for n in singles if labels[n].instruction is None and fixed_instruction is None)
    if without:
        raise EvalInputError(
            f"no instruction for {', '.join(repr(n) for n in without)}: give it in the labels file's "
            f"instruction column or with --instruction (bags take theirs from the instruction topic, "
            f"datasets from their tasks)"
        )
