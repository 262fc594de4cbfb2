"""Launch the TOPReward scorer node.

    ros2 launch topreward_ros scorer.launch.py \\
        cameras:="['wrist/image_raw/compressed', 'front/image_raw']" \\
        instruction_topic:=/task/instruction device:=cuda rate:=2.0

Every argument left empty keeps the value from the parameters files, so the
files stay the single place for a rig's settings and the command line only
overrides what it names. Two files can be given: ``params_file`` (the rig's
parameters, by default the package's config/scorer.yaml) and
``calibration_file`` (e.g. calibrated.yaml from ``topreward eval``), whose
values override the first's:

    ros2 launch topreward_ros scorer.launch.py \\
        params_file:=rig.yaml calibration_file:=calibrated.yaml

The ``launch`` imports sit inside the functions: the module can then be
imported (and its argument table checked) where launch is not installed.
"""
from __future__ import annotations

from typing import Any

PACKAGE = "topreward_ros"
EXECUTABLE = "scorer_node"

#: (name, default, description) of every launch argument.
LAUNCH_ARGUMENTS: tuple[tuple[str, str, str], ...] = (
    ("model", "", "Hub id or local directory of the VLM ('' = params file value)"),
    ("cameras", "", "Camera topics as a YAML list, e.g. \"[cam/image_raw, wrist/image_raw]\", or "
     "comma-separated ('' = params file)"),
    ("instruction_topic", "instruction", "Topic of the std_msgs/String task instruction"),
    ("rate", "", "Scoring ticks per second of ROS time ('' = params file value)"),
    ("device", "", "auto | cpu | cuda | cuda:N ('' = params file value)"),
    ("params_file", "", "Parameters file ('' = the package's config/scorer.yaml)"),
    ("calibration_file", "", "Second parameters file (e.g. calibrated.yaml of topreward eval), "
     "overriding params_file ('' = none)"),
    ("use_sim_time", "", "true: follow /clock (bag replay, simulation); '' = params file value, else false"),
    ("namespace", "", "Namespace of the node and its relative topics"),
)


def parameter_overrides(args: dict[str, str]) -> dict[str, Any]:
    """Node parameters set by non-empty launch arguments (the rest: params file)."""
    overrides: dict[str, Any] = {}
    if args.get("model", "").strip():
        overrides["model"] = args["model"].strip()
    if args.get("device", "").strip():
        overrides["device"] = args["device"].strip()
    if args.get("rate", "").strip():
        try:
            overrides["rate_hz"] = float(args["rate"])
        except ValueError as exc:
            raise ValueError(f"rate must be a number of ticks per second, got {args['rate']!r}") from exc
    cameras = args.get("cameras", "").strip()
    if cameras:
        if cameras.startswith("["):
            # A YAML flow list; a Python list literal ("['a', 'b']") is one too.
            import yaml

            try:
                topics = yaml.safe_load(cameras)
            except yaml.YAMLError as exc:
                raise ValueError(f"cameras must be a list of topic names, got {cameras!r}") from exc
        else:
            topics = [t for t in cameras.replace(",", " ").split()]
        if not isinstance(topics, list) or not topics or not all(isinstance(t, str) for t in topics):
            raise ValueError(f"cameras must be a non-empty list of topic names, got {cameras!r}")
        overrides["camera_topics"] = topics
    sim = args.get("use_sim_time", "").strip().lower()
    if sim:
        if sim not in ("true", "false"):
            raise ValueError(f"use_sim_time must be true or false, got {args.get('use_sim_time')!r}")
        overrides["use_sim_time"] = sim == "true"
    return overrides


def parameter_files(args: dict[str, str], default_params_file: str) -> list[str]:
    """The parameters files in the order they apply (a later file's value wins)."""
    import os

    files = [args.get("params_file", "").strip() or default_params_file]
    calibration = args.get("calibration_file", "").strip()
    if calibration:
        files.append(calibration)
    for name, path in zip(("params_file", "calibration_file"), files):
        if not os.path.isfile(path):
            raise ValueError(f"{name}: no such file {path!r}")
    return files


def _launch_setup(context: Any) -> list[Any]:
    from ament_index_python.packages import get_package_share_directory
    from launch_ros.actions import Node

    args = {name: context.perform_substitution(_config(name)) for name, _, _ in LAUNCH_ARGUMENTS}
    files = parameter_files(args, f"{get_package_share_directory(PACKAGE)}/config/scorer.yaml")
    return [
        Node(
            package=PACKAGE,
            executable=EXECUTABLE,
            name=EXECUTABLE,
            namespace=args["namespace"],
            output="screen",
            emulate_tty=True,
            parameters=[*files, parameter_overrides(args)],
            remappings=[("instruction", args["instruction_topic"])],
        )
    ]


def _config(name: str) -> Any:
    from launch.substitutions import LaunchConfiguration

    return LaunchConfiguration(name)


def generate_launch_description() -> Any:
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    return LaunchDescription(
        [
            *(
                DeclareLaunchArgument(name, default_value=default, description=description)
                for name, default, description in LAUNCH_ARGUMENTS
            ),
            OpaqueFunction(function=_launch_setup),
        ]
    )
