"""The labels file of ``topreward eval``: episode name -> success 0/1, task, instruction.

Two formats, chosen by the file's suffix:

* CSV (``.csv``) with a header row; columns ``episode`` and ``success``
  are required, ``task`` and ``instruction`` optional, other columns are
  ignored; blank lines and lines starting with ``#`` are skipped.
* YAML (``.yaml`` / ``.yml``): a mapping from episode name to either the
  label (``1`` / ``0`` / ``true`` / ``false``) or a mapping with
  ``success`` and optional ``task`` / ``instruction``; or a list of such
  mappings each with an ``episode`` key.

``success`` accepts 1/0, true/false, yes/no (any case). Episode names are
those of ``inputs.episode_name``: ``<bag name>/<episode index>`` for an
episode of a bag, ``<dataset name>/<episode_index>`` for an episode of a
LeRobot dataset, the file stem of a video, the folder name of a frame
folder. A bag or dataset episode index may be written with leading zeros
(``3`` and ``0003`` are the same episode).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TRUE_WORDS = ("1", "true", "yes")
FALSE_WORDS = ("0", "false", "no")


class LabelsError(ValueError):
    """The labels file is missing, malformed or names an episode twice (message for the user)."""


@dataclass(frozen=True)
class Label:
    """One labelled episode: its name, the verdict, and optional task / instruction."""

    episode: str
    success: bool
    task: str | None = None
    instruction: str | None = None
    where: str = ""


def canonical_name(name: str) -> str:
    """``bag/0007`` -> ``bag/7``: one spelling per episode; other names unchanged."""
    name = name.strip()
    head, sep, tail = name.rpartition("/")
    if sep and tail.isdigit():
        return f"{head}/{int(tail)}"
    return name


def _success(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower() if value is not None else ""
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise LabelsError(f"{where}: success must be 1/0, true/false or yes/no, got {value!r}")


def _optional_text(value: Any, field: str, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, int, float)):
        raise LabelsError(f"{where}: {field} must be text, got {value!r}")
    text = str(value).strip()
    return text or None


def _label(episode: Any, success: Any, task: Any, instruction: Any, where: str) -> Label:
    if episode is None or not str(episode).strip():
        raise LabelsError(f"{where}: the episode name is empty")
    return Label(
        canonical_name(str(episode)),
        _success(success, where),
        _optional_text(task, "task", where),
        _optional_text(instruction, "instruction", where),
        where,
    )


def _read_csv(path: Path, text: str) -> list[Label]:
    lines = [
        (n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise LabelsError(f"{path} holds no labels (expected a header 'episode,success[,task]' and rows)")
    rows = list(csv.reader(io.StringIO("\n".join(line for _, line in lines))))
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in ("episode", "success") if c not in header]
    if missing:
        raise LabelsError(
            f"{path}:{lines[0][0]}: the header {rows[0]} lacks column(s) {', '.join(missing)} "
            f"(expected 'episode,success' and optionally 'task', 'instruction')"
        )
    col = {name: header.index(name) for name in ("episode", "success", "task", "instruction") if name in header}
    labels = []
    for (number, _), row in zip(lines[1:], rows[1:]):
        where = f"{path}:{number}"
        if len(row) < len(header):
            raise LabelsError(f"{where}: {len(row)} field(s), the header has {len(header)}")

        def get(name: str, row: list[str] = row) -> str | None:
            return row[col[name]] if name in col else None

        labels.append(_label(get("episode"), get("success"), get("task"), get("instruction"), where))
    return labels


def _refuse_duplicate_keys(path: Path, text: str) -> None:
    """Raise ``LabelsError`` for a key given twice in one YAML mapping.

    ``yaml.safe_load`` keeps the last of two equal keys without a word, so an
    episode labelled twice in the mapping form (or ``success`` given twice in
    one entry) would silently lose a label; CSV duplicates are refused, so
    YAML ones are too, naming the episode and both lines.
    """
    import yaml

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    episodes = root
    if (
        isinstance(root, yaml.MappingNode)
        and len(root.value) == 1
        and isinstance(root.value[0][0], yaml.ScalarNode)
        and root.value[0][0].value == "episodes"
    ):
        episodes = root.value[0][1]
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
            continue
        if not isinstance(node, yaml.MappingNode):
            continue
        first_line: dict[str, int] = {}
        for key, value in node.value:
            stack.append(value)
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            line = key.start_mark.line + 1
            if key.value in first_line:
                what = (
                    f"episode {canonical_name(key.value)!r} is labelled twice"
                    if node is episodes
                    else f"key {key.value!r} is given twice in one mapping"
                )
                raise LabelsError(f"{path}:{line}: {what} (first at {path}:{first_line[key.value]})")
            first_line[key.value] = line


def _read_yaml(path: Path, text: str) -> list[Label]:
    import yaml

    try:
        _refuse_duplicate_keys(path, text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LabelsError(f"{path} is not valid YAML: {exc}") from exc
    if isinstance(data, dict) and set(data) == {"episodes"}:
        data = data["episodes"]
    labels = []
    if isinstance(data, dict):
        for name, value in data.items():
            where = f"{path}: episode {name!r}"
            if isinstance(value, dict):
                unknown = set(value) - {"success", "task", "instruction"}
                if "success" not in value or unknown:
                    raise LabelsError(
                        f"{where}: expected keys success and optionally task, instruction; got {sorted(value)}"
                    )
                labels.append(_label(name, value["success"], value.get("task"), value.get("instruction"), where))
            else:
                labels.append(_label(name, value, None, None, where))
    elif isinstance(data, list):
        for number, item in enumerate(data, 1):
            where = f"{path}: entry {number}"
            if not isinstance(item, dict) or "episode" not in item or "success" not in item:
                raise LabelsError(f"{where}: expected a mapping with episode and success, got {item!r}")
            labels.append(_label(item["episode"], item["success"], item.get("task"), item.get("instruction"), where))
    else:
        raise LabelsError(
            f"{path}: expected a mapping episode -> label, or a list of "
            f"{{episode, success, task}} entries; got {type(data).__name__}"
        )
    if not labels:
        raise LabelsError(f"{path} holds no labels")
    return labels


def read_labels(path: Path) -> dict[str, Label]:
    """Labels by canonical episode name; raises ``LabelsError`` saying what to fix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".yaml", ".yml"):
        raise LabelsError(f"labels file {path}: use a .csv, .yaml or .yml file")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LabelsError(f"cannot read the labels file {path}: {exc.strerror or exc}") from exc
    labels = _read_csv(path, text) if suffix == ".csv" else _read_yaml(path, text)
    by_name: dict[str, Label] = {}
    for label in labels:
        if label.episode in by_name:
            raise LabelsError(
                f"{label.where}: episode {label.episode!r} is labelled twice (first at {by_name[label.episode].where})"
            )
        by_name[label.episode] = label
    return by_name
