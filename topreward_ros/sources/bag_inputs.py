"""Which bags a `topreward bag` run scores: paths, directories of bags, list files.

A lab's recordings come as one bag, a handful of bags named on the command
line, a directory the recorders write into, or a list kept next to the data.
All of them resolve to an ordered list of bags, each with the name its
results go under (``OUT_DIR/<name>/``):

* a ``.mcap`` / ``.db3`` file is one bag, named after the file's stem;
* a directory with ``metadata.yaml`` is one bag, named after the directory;
* a directory without ``metadata.yaml`` is one bag, read from its storage
  files as before, when it holds a single storage file and no bag
  subdirectory, or when its storage files are all named
  ``<directory name>[_<N>].mcap|db3`` (how rosbag2 names a recording's
  files; a recorder killed before writing the metadata leaves exactly that);
* any other directory is a directory of bags: every subdirectory that is a
  bag (``metadata.yaml`` or storage files inside) and every ``.mcap`` /
  ``.db3`` file in it, in name order;
* ``@FILE`` (or ``--list FILE``) reads one path per line; blank lines and
  lines starting with ``#`` are ignored; relative paths are taken relative
  to the list file's directory. Listed directories are resolved by the same
  rules.

The output layout follows the *form* of the input, never the number of bags
it happens to hold today, so a re-run into the same output directory always
finds its earlier results: exactly one path naming one bag keeps the
single-bag layout (results directly in ``OUT_DIR``); anything else (several
paths, a directory of bags, a list file) writes ``OUT_DIR/<name>/`` per bag.
Two bags with the same name get the name plus a short hash of their path; a
bag named twice is scored once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from topreward_ros.bag.reader import STORAGE_SUFFIXES, BagError

LIST_PREFIX = "@"
# Names the per-bag output directories may not take: the top-level files of a fleet run.
RESERVED_NAMES = frozenset({"runs.json", "frames.parquet", "frames.csv", "manifest.json"})


class InputError(BagError):
    """An input path, directory or list file does not name any usable bag."""


@dataclass(frozen=True)
class BagInput:
    """One bag to score and the name of its output subdirectory."""

    name: str
    path: Path


@dataclass(frozen=True)
class InputSet:
    """The bags of a run, in order, and whether they use the single-bag layout."""

    bags: tuple[BagInput, ...]
    single: bool
    duplicates: tuple[str, ...] = ()  # paths named more than once (scored once)


def _storage_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in STORAGE_SUFFIXES)


def _split_name_pattern(directory: Path) -> re.Pattern[str]:
    return re.compile(re.escape(directory.name) + r"(_\d+)?")


def is_bag_directory(directory: Path) -> bool:
    """A rosbag2 directory: ``metadata.yaml``, or only the files of one recording."""
    if (directory / "metadata.yaml").is_file():
        return True
    files = _storage_files(directory)
    if not files:
        return False
    if len(files) == 1 and not any(p.is_dir() and _is_bag_like(p) for p in directory.iterdir()):
        return True
    pattern = _split_name_pattern(directory)
    return all(pattern.fullmatch(f.stem) for f in files)


def _is_bag_like(path: Path) -> bool:
    """A directory member that is a bag: a storage file or a directory holding one."""
    if path.is_file():
        return path.suffix in STORAGE_SUFFIXES
    return path.is_dir() and ((path / "metadata.yaml").is_file() or bool(_storage_files(path)))


def _bag_name(path: Path) -> str:
    return path.stem if path.is_file() else path.name


def _expand_path(path: Path) -> list[Path]:
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_file():
        if path.suffix not in STORAGE_SUFFIXES:
            raise InputError(
                f"{path}: not a rosbag2 storage file (expected .mcap or .db3, a bag directory, "
                f"a directory of bags, or @LIST for a list file)"
            )
        return [path]
    if is_bag_directory(path):
        return [path]
    members = sorted(p for p in path.iterdir() if not p.name.startswith(".") and _is_bag_like(p))
    if not members:
        raise InputError(
            f"{path}: no bag found (neither metadata.yaml, nor .mcap/.db3 files, nor subdirectories holding them)"
        )
    return members


def read_list_file(list_file: Path) -> list[Path]:
    """The paths a list file names: one per line, ``#`` comments, relative to the file."""
    try:
        text = list_file.read_text()
    except OSError as exc:
        raise InputError(f"list file {list_file}: {exc.strerror or exc}") from exc
    paths = []
    for line in text.splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = Path(entry).expanduser()
        paths.append(path if path.is_absolute() else list_file.parent / path)
    if not paths:
        raise InputError(f"list file {list_file} names no path")
    return paths


def expand_inputs(arguments: Sequence[str | Path], list_files: Sequence[str | Path] = ()) -> InputSet:
    """Resolve command-line inputs (paths, ``@LIST``) and ``--list`` files into bags."""
    entries: list[Path] = []
    from_list = bool(list_files)
    for argument in arguments:
        text = str(argument)
        if text.startswith(LIST_PREFIX) and len(text) > 1:
            entries.extend(read_list_file(Path(text[1:]).expanduser()))
            from_list = True
        else:
            entries.append(Path(text))
    for list_file in list_files:
        entries.extend(read_list_file(Path(list_file).expanduser()))
    if not entries:
        raise InputError("no input: give a bag, a directory of bags, or a list file")
    bags: list[Path] = []
    single = len(entries) == 1 and not from_list
    for entry in entries:
        expanded = _expand_path(entry)
        if expanded != [entry]:
            single = False
        bags.extend(expanded)
    seen: dict[Path, Path] = {}
    duplicates = []
    for bag in bags:
        key = bag.resolve()
        if key in seen:
            duplicates.append(str(bag))
        else:
            seen[key] = bag
    unique = list(seen.values())
    names = [_bag_name(b) for b in unique]
    counts = {n: names.count(n) for n in names}
    resolved = []
    for bag, name in zip(unique, names):
        if counts[name] > 1 or name in RESERVED_NAMES or name.startswith("."):
            digest = hashlib.sha1(str(bag.resolve()).encode()).hexdigest()[:8]
            name = f"{name.lstrip('.') or 'bag'}-{digest}"
        resolved.append(BagInput(name, bag))
    return InputSet(tuple(resolved), single, tuple(duplicates))
