"""ROS 2 parameters files (``--params-file``) read and written without ROS.

One file serves the node (``scorer.launch.py params_file:=``, ``--ros-args
--params-file``) and the offline tools (``topreward bag --params-file``), so
a threshold calibrated by ``topreward eval`` means the same thing in both.
The format is the ROS one: top-level keys name nodes (``/**`` for every
node, or a node name), each holding ``ros__parameters``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

WILDCARD = "/**"


class ParamsFileError(ValueError):
    """The parameters file cannot be read or is not in the ROS 2 layout."""


def read_params_file(path: Path) -> dict[str, Any]:
    """All ``ros__parameters`` of the file, merged over its node sections.

    A key given with different values in two sections is refused (the file
    would mean different things to different nodes, and an offline tool has
    no node name to choose by).
    """
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ParamsFileError(f"cannot read the parameters file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ParamsFileError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not data:
        raise ParamsFileError(f"{path} is not a ROS 2 parameters file (expected '/**: ros__parameters: {{...}}')")
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for node, section in data.items():
        params = section.get("ros__parameters") if isinstance(section, dict) else None
        if not isinstance(params, dict):
            raise ParamsFileError(f"{path}: section {node!r} has no 'ros__parameters' mapping")
        for key, value in params.items():
            if key in merged and merged[key] != value:
                raise ParamsFileError(
                    f"{path}: {key} is {merged[key]!r} under {origin[key]!r} but {value!r} under {node!r}"
                )
            merged[key], origin[key] = value, str(node)
    return merged


def params_file_text(params: dict[str, Any], header: str = "") -> str:
    """The text of a ``/**`` parameters file holding ``params`` (floats keep their point, lists inline).

    A list holds strings or floats only (ROS arrays have one type; a float
    array written with an integer in it would not load).
    """
    import yaml

    for key, value in params.items():
        if (
            isinstance(value, list)
            and value
            and (all(isinstance(v, str) for v in value) or all(type(v) is float for v in value))
        ):
            continue
        if not isinstance(value, (str, bool, int, float)):
            raise ValueError(
                f"parameter {key} must be a string, bool, int, float or a list of strings or of floats, got {value!r}"
            )
    body = yaml.safe_dump({WILDCARD: {"ros__parameters": dict(params)}}, sort_keys=False, default_flow_style=None)
    comments = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    return comments + body
