"""The command-line options the offline commands share, defined once.

``topreward bag``, ``lerobot`` and ``eval`` take the same model, scoring,
run and Ray options with the same names, defaults and meaning (the node's
parameters of the same names). Options a ROS 2 parameters file can set
(``--params-file``) default to None on the parser and are resolved by
``apply_params_file``: command line, then the file, then the default.

Exit codes shared by the commands:

* 0: everything asked for was done;
* 1: the run finished but something failed (kept results, a re-run resumes);
* 2: nothing could start (bad option, unusable input, model not loadable);
* 130: interrupted (completed episodes are kept; a re-run resumes).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_UNUSABLE = 2
EXIT_INTERRUPTED = 130

#: Node parameters ``--params-file`` may set: option dest, type, default.
MODEL_PARAMS: dict[str, tuple[str, type, Any]] = {
    "model": ("model", str, None),  # default: DEFAULT_MODEL (resolved lazily)
    "backend": ("backend", str, "transformers"),
    "device": ("device", str, "auto"),
    "dtype": ("dtype", str, "auto"),
    "local_files_only": ("local_files_only", bool, False),
    "torch_threads": ("torch_threads", int, None),
}
SCORING_PARAMS: dict[str, tuple[str, type, Any]] = {
    "sample_fps": ("sample_fps", float, 2.0),
    "max_frames": ("max_frames", int, 256),
    "sync_tolerance_s": ("sync_tolerance", float, 0.05),
    "view_size": ("view_size", int, 244),
    "rate_hz": ("rate", float, 1.0),
    "success_threshold": ("success_threshold", float, None),  # DEFAULT_SUCCESS_THRESHOLD
    "success_window": ("success_window", int, 3),
    "success_consecutive": ("success_consecutive", int, 2),
}
STAMP_PARAMS: dict[str, tuple[str, type, Any]] = {
    "stamp_jump_restart_s": ("stamp_jump_restart", float, 1.0),
    "stamp_gap_restart_s": ("stamp_gap_restart", float, 60.0),
}
#: The rig's topics as a bag holds them: the cameras in scoring order, the
#: instruction topic (the node's ``instruction_topic``) and the reset topic
#: (offline only: a recorded topic whose messages start a new episode).
TOPIC_PARAMS: dict[str, tuple[str, type, Any]] = {
    "camera_topics": ("cameras", list, None),
    "instruction_topic": ("instruction_topic", str, "/instruction"),
    "reset_topic": ("reset_topic", str, None),
}
#: Option names that are not ``--`` + the dest with dashes.
_FLAGS = {"cameras": "--camera", "sync_tolerance": "--sync-tolerance", "rate": "--rate"}


def add_model_options(p: argparse.ArgumentParser) -> None:
    from topreward_ros.scoring.config import DEFAULT_MODEL

    g = p.add_argument_group("model")
    g.add_argument("--model", help=f"hub id or local directory (default: {DEFAULT_MODEL})")
    add_backend_option(g)
    g.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    g.add_argument("--dtype", help="auto | bfloat16 | float16 | float32")
    g.add_argument("--local-files-only", action="store_true", help="never contact the hub")
    g.add_argument("--torch-threads", type=int, default=None, help="CPU threads for torch")


def add_backend_option(g: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--backend``: which scoring backend runs the model (the node's ``backend`` parameter)."""
    from topreward_ros.scoring.backends.registry import BACKEND_NAMES, DEFAULT_BACKEND

    g.add_argument(
        "--backend", choices=BACKEND_NAMES, help=f"scoring backend that runs the model (default: {DEFAULT_BACKEND})"
    )


def add_params_file_option(p: Any, params: dict[str, tuple[str, type, Any]]) -> None:
    """``--params-file``: the node's parameters file, for the ``params`` it names (``apply_params_file``)."""
    p.add_argument(
        "--params-file",
        type=Path,
        metavar="YAML",
        help="a ROS 2 parameters file of the node (the rig file, or calibrated.yaml of topreward "
        "eval): its " + ", ".join(params) + " apply unless given as options; other keys are "
        "ignored",
    )


def add_scoring_options(
    p: argparse.ArgumentParser, params: dict[str, tuple[str, type, Any]], time_axis: str, threshold: bool = True
) -> argparse._ArgumentGroup:
    """Scoring options with the node's meaning; ``--params-file`` sets those in ``params``."""
    from topreward_ros.scoring.config import DEFAULT_SUCCESS_THRESHOLD

    g = p.add_argument_group("scoring (same meaning as the node's parameters)")
    add_params_file_option(g, params)
    g.add_argument("--sample-fps", type=float, help="(default: 2.0)")
    g.add_argument("--max-frames", type=int, help="(default: 256)")
    g.add_argument("--sync-tolerance", type=float, metavar="SECONDS", help="(default: 0.05)")
    g.add_argument("--view-size", type=int, help="(default: 244)")
    g.add_argument(
        "--rate",
        type=float,
        metavar="HZ",
        help=f"the node's scoring timer rate in {time_axis} time (node: rate_hz; default: 1.0)",
    )
    if threshold:
        g.add_argument("--success-threshold", type=float, help=f"(default: {DEFAULT_SUCCESS_THRESHOLD})")
    g.add_argument("--success-window", type=int, help="(default: 3)")
    g.add_argument("--success-consecutive", type=int, help="(default: 2)")
    g.add_argument("--num-prefixes", type=int, default=15, help="K of the offline curve (default: %(default)s)")
    return g


def add_stamp_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--stamp-jump-restart", type=float, metavar="SECONDS", help="(default: 1.0)")
    g.add_argument(
        "--stamp-gap-restart",
        type=float,
        metavar="SECONDS",
        help="a primary camera stamp more than this after the previous one starts a new episode (default: 60.0)",
    )


def add_run_options(p: argparse.ArgumentParser, outputs: bool = True) -> argparse._ArgumentGroup:
    g = p.add_argument_group("run")
    g.add_argument(
        "--max-episodes", type=int, default=None, help="score at most this many episodes now; a re-run continues"
    )
    if outputs:
        g.add_argument("--no-plot", action="store_true", help="skip the PNG plots")
        g.add_argument(
            "--video",
            action="store_true",
            help="write progress.mp4 per episode: the node's progress picture at every tick",
        )
    g.add_argument("--force", action="store_true", help="redo everything even if the output directory has results")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar, summary only")
    return g


def add_ray_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Ray (optional 'scale' extra)")
    g.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="auto|local|ADDRESS",
        help="score on Ray, one episode per task: no value = RAY_ADDRESS or the cluster "
        "running on this machine, else a new local instance; auto = a running cluster "
        "only; local = always a new instance for this run; or a cluster address",
    )
    g.add_argument(
        "--replicas", type=int, default=None, help="model replicas (default: one per GPU of the cluster, else 1)"
    )
    g.add_argument("--cpus-per-replica", type=float, default=1.0, help="CPUs per replica (default: %(default)s)")
    g.add_argument(
        "--gpus-per-replica",
        type=float,
        default=None,
        help="GPUs per replica, may be a fraction (default: 1 where the cluster has "
        "GPUs and --device is not cpu, else 0)",
    )
    g.add_argument(
        "--retries",
        type=int,
        default=1,
        help="times an episode whose replica died is scored again (default: %(default)s)",
    )


def _absolute(topic: str) -> str:
    """A node-relative topic name as the bag records it (the node in the root namespace)."""
    return topic if topic.startswith("/") else f"/{topic}"


def apply_params_file(
    args: argparse.Namespace, table: dict[str, tuple[str, type, Any]], command: str = "topreward"
) -> list[str]:
    """Fill options not given on the command line from ``--params-file``, then from defaults.

    ``table`` maps node parameters to (option dest, type, default). A
    ``list`` parameter is a list of strings (``camera_topics``), whose
    relative names are taken as in the root namespace (``camera/image_raw``
    is the bag topic ``/camera/image_raw``), as are ``*_topic`` strings.
    An option given on the command line wins over the file; where the file
    holds another value, a note on stderr says so. Returns those notes.
    """
    from topreward_ros.files.params_file import ParamsFileError, read_params_file
    from topreward_ros.scoring.config import DEFAULT_MODEL, DEFAULT_SUCCESS_THRESHOLD

    params = read_params_file(args.params_file) if getattr(args, "params_file", None) else {}
    defaults = {"model": DEFAULT_MODEL, "success_threshold": DEFAULT_SUCCESS_THRESHOLD}
    notes: list[str] = []
    for key, (dest, kind, default) in table.items():
        given = getattr(args, dest, None)
        if kind is bool:
            given = given or None  # a store_true flag left off is not a choice
        if given is not None:
            if key in params and _file_value(key, kind, params[key]) != given:
                flag = _FLAGS.get(dest, "--" + dest.replace("_", "-"))
                notes.append(
                    f"{command}: note: {flag} {_shown(given)} overrides {key}: "
                    f"{_shown(params[key])} of {args.params_file}"
                )
            continue
        if key not in params:
            setattr(args, dest, defaults.get(key, default))
            continue
        value = params[key]
        ok = (
            isinstance(value, bool)
            if kind is bool
            else isinstance(value, str)
            if kind is str
            else isinstance(value, int) and not isinstance(value, bool)
            if kind is int
            else isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)
            if kind is list
            else isinstance(value, (int, float)) and not isinstance(value, bool)
        )
        if not ok:
            what = "non-empty list of topic names" if kind is list else kind.__name__
            raise ParamsFileError(f"{args.params_file}: {key} must be a {what}, got {value!r}")
        setattr(args, dest, _file_value(key, kind, value))
    for note in notes:
        print(note, file=sys.stderr)
    return notes


def _file_value(key: str, kind: type, value: Any) -> Any:
    """A parameters file's value as the option would hold it."""
    if key == "torch_threads" and value == 0:
        return None  # the node's 0 = torch's default
    if kind is list and isinstance(value, list):
        return [_absolute(str(v)) for v in value]
    if kind is str and key.endswith("_topic") and isinstance(value, str):
        return _absolute(value) if value else None  # '' = no such topic
    try:
        return kind(value) if value is not None else None
    except (TypeError, ValueError):
        return value


def _shown(value: Any) -> str:
    return ",".join(value) if isinstance(value, list) else str(value)


def task_thresholds(args: argparse.Namespace) -> tuple[tuple[str, float], ...]:
    """The per-task thresholds of ``--params-file`` (``calibrated.yaml``), none without one."""
    if not getattr(args, "params_file", None):
        return ()
    from topreward_ros.files.params_file import read_params_file
    from topreward_ros.scoring.config import DEFAULT_SUCCESS_THRESHOLD
    from topreward_ros.scoring.thresholds import thresholds_from_params

    return thresholds_from_params(read_params_file(args.params_file), DEFAULT_SUCCESS_THRESHOLD).per_task


#: Settings fields whose option has another name (the flags keep the node's
#: parameter spelling, without the unit suffix).
FIELD_OPTIONS = {
    "sync_tolerance_s": "sync_tolerance",
    "tick_rate_hz": "rate",
    "stamp_jump_restart_s": "stamp_jump_restart",
    "stamp_gap_restart_s": "stamp_gap_restart",
    "video_tolerance_frames": "video_tolerance",
    "fixed_instruction": "instruction",
}


def from_options(settings_type: type, args: argparse.Namespace, **values: Any) -> Any:
    """A settings dataclass filled from the options, field by field.

    Each field takes the option of its name (or ``FIELD_OPTIONS``'s); an
    option the command lacks, or left unset, keeps the field's default, and
    ``values`` win over both. Copying by field means a field added to the
    settings is read from its option without another list to keep in step.
    """
    for field in dataclasses.fields(settings_type):
        value = getattr(args, FIELD_OPTIONS.get(field.name, field.name), None)
        if field.name not in values and value is not None:
            values[field.name] = value
    return settings_type(**values)


def episode_settings(args: argparse.Namespace) -> Any:
    from topreward_ros.episode.records import EpisodeSettings

    return from_options(EpisodeSettings, args, task_thresholds=task_thresholds(args))


def scorer_config(args: argparse.Namespace) -> Any:
    from topreward_ros.scoring import ScorerConfig

    return from_options(ScorerConfig, args)


def offline_settings(args: argparse.Namespace, plot: bool | None = None) -> Any:
    """The runner's settings from the options (``plot`` forces the plots on or off)."""
    from topreward_ros.offline.engine import OfflineSettings
    from topreward_ros.offline.outputs import OutputOptions
    from topreward_ros.offline.runner import RunnerOptions

    return OfflineSettings(
        episode=episode_settings(args),
        runner=RunnerOptions(tick_rate_hz=args.rate, num_prefixes=args.num_prefixes),
        outputs=OutputOptions(
            plot=(not getattr(args, "no_plot", False)) if plot is None else plot, video=getattr(args, "video", False)
        ),
        max_episodes=args.max_episodes,
    )


def ray_inputs(args: argparse.Namespace, inputs: list[Any]) -> list[Any]:
    """The command's inputs, made absolute when the run goes to Ray (``absolute_inputs``).

    ``--ray`` takes an optional value, so in ``--ray INPUT ...`` argparse
    hands the first input to it: a value that names an existing path is put
    back in front of the inputs and ``--ray`` means "start a local cluster".
    """
    if args.ray and Path(args.ray).exists():
        inputs.insert(0, args.ray)
        args.ray = ""
    return absolute_inputs(inputs) if args.ray is not None else inputs


def absolute_inputs(inputs: list[Any]) -> list[str]:
    """Input paths (``@LIST`` too) made absolute for Ray: a replica on a cluster this command
    did not start runs in its own working directory and would resolve a relative path there."""
    made = []
    for item in inputs:
        text = str(item)
        if text.startswith("@"):
            made.append("@" + str(Path(text[1:]).expanduser().absolute()))
        else:
            made.append(str(Path(text).expanduser().absolute()))
    return made


def ray_options(args: argparse.Namespace) -> Any:
    """``RayOptions`` from the options, or None without ``--ray``."""
    if getattr(args, "ray", None) is None:
        return None
    from topreward_ros.scale.engine import RayOptions

    return RayOptions(
        address=args.ray or None,
        replicas=args.replicas,
        cpus_per_replica=args.cpus_per_replica,
        gpus_per_replica=args.gpus_per_replica,
        retries=args.retries,
    )
