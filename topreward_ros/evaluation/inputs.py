"""What ``topreward eval`` reads, and how its episodes are named.

An input is a rosbag2 bag (a bag directory, or a single ``.mcap`` /
``.db3`` file), a video file, or a folder of frames. Episode names, used
by the labels file and every output:

* a bag holds many episodes, cut where ``topreward bag`` (and the node)
  cut them: ``<bag name>/<episode index>``, the bag name being the bag
  directory's name (or the file's stem for a single ``.mcap`` / ``.db3``)
  and the index counting the bag's episodes from 0 in log-time order, the
  ``N`` of ``topreward bag``'s ``episode_NNNN`` directories;
* a video file is one episode named by its file stem (``runs/pick_03.mp4``
  -> ``pick_03``);
* a folder of frames is one episode named by the folder's name.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from topreward_ros.evaluation.labels import Label

BAG_SUFFIXES = (".mcap", ".db3")
InputKind = Literal["bag", "video", "frames"]


class EvalInputError(ValueError):
    """An input or label does not fit (message for the user)."""


@dataclass(frozen=True)
class EvalInput:
    """One input path, its kind and its name (the bag name, video stem or folder name)."""

    path: Path
    kind: InputKind
    name: str


def classify(path: Path) -> EvalInput:
    """Decide whether ``path`` is a bag, a video or a frame folder."""
    path = Path(path)
    if not path.exists():
        raise EvalInputError(f"input {path} does not exist")
    if path.is_file():
        if path.suffix.lower() in BAG_SUFFIXES:
            return EvalInput(path, "bag", path.stem)
        return EvalInput(path, "video", path.stem)
    name = path.resolve().name
    if (path / "metadata.yaml").is_file() or any(
            p.suffix.lower() in BAG_SUFFIXES for p in path.iterdir() if p.is_file()):
        return EvalInput(path, "bag", name)
    return EvalInput(path, "frames", name)


def episode_name(source: EvalInput, bag_episode: int | None = None) -> str:
    """The name of an episode of ``source`` (``bag_episode`` for bags)."""
    if source.kind == "bag":
        if bag_episode is None:
            raise ValueError("a bag episode needs its index")
        return f"{source.name}/{bag_episode}"
    return source.name


def expand_arguments(arguments: Sequence[str | Path]) -> list[Path]:
    """The input paths the command line names, as ``topreward bag`` reads them.

    ``@LIST`` is a list file (one path per line, ``#`` comments, relative to
    the file); a directory that is not a bag itself but holds bags (bag
    directories or single ``.mcap`` / ``.db3`` files) stands for those bags,
    in name order. Anything else is one input as given.
    """
    from topreward_ros.bag.inputs import InputError, is_bag_directory, read_list_file

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
        if path.is_dir() and not is_bag_directory(path):
            bags = sorted(p for p in path.iterdir() if not p.name.startswith(".") and (
                (p.is_dir() and is_bag_directory(p)) or (p.is_file() and p.suffix.lower() in BAG_SUFFIXES)))
            if bags:
                paths.extend(bags)
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
                f"episodes are named after their input, so rename or copy one of them")
        seen[item.name] = item
    return inputs


def check_labels(inputs: Sequence[EvalInput], labels: dict[str, Label], fixed_instruction: str | None) -> None:
    """Refuse, before any scoring, labels that name no input and videos without a label.

    Whether a bag really has the episode index a label names is known only
    once the bag is read; that check comes after its scoring.
    """
    singles = {i.name: i for i in inputs if i.kind != "bag"}
    bags = {i.name: i for i in inputs if i.kind == "bag"}
    unknown = []
    for name in labels:
        if name in singles:
            continue
        head, sep, tail = name.rpartition("/")
        if sep and head in bags and tail.isdigit():
            continue
        unknown.append(name)
    if unknown:
        names = ", ".join(repr(n) for n in sorted(unknown)[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise EvalInputError(
            f"the labels name episode(s) that no input holds: {names}{more}. Episodes are named "
            f"<bag name>/<episode index> for bags ({', '.join(sorted(bags)) or 'none given'}), "
            f"by the file stem for videos and the folder name for frame folders "
            f"({', '.join(sorted(singles)) or 'none given'})")
    missing = sorted(n for n in singles if n not in labels)
    if missing:
        raise EvalInputError(f"no label for {', '.join(repr(n) for n in missing)}: add a row "
                             f"'<name>,<0|1>' to the labels file")
    without = sorted(n for n in singles if labels[n].instruction is None and fixed_instruction is None)
    if without:
        raise EvalInputError(
            f"no instruction for {', '.join(repr(n) for n in without)}: give it in the labels file's "
            f"instruction column or with --instruction (bags take theirs from the instruction topic)")
