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
    (
        "cameras",
        "",
        'Camera topics as a YAML list, e.g. "[cam/image_raw, wrist/image_raw]", or '
        "comma-separated ('' = params file)",
    ),
    (
        "instruction_topic",
        "",
        "Topic of the std_msgs/String task instruction ('' = params file value, else instruction)",
    ),
    ("rate", "", "Scoring ticks per second of ROS time ('' = params file value)"),
    ("device", "", "auto | cpu | cuda | cuda:N ('' = params file value)"),
    ("params_file", "", "Parameters file ('' = the package's config/scorer.yaml)"),
    (
        "calibration_file",
        "",
        "Second parameters file (e.g. calibrated.yaml of topreward eval), overriding params_file ('' = none)",
    ),
    ("use_sim_time", "", "true: follow /clock (bag replay, simulation); '' = params file value, else false"),
    ("namespace", "", "Namespace of the node and its relative topics"),
    (
        "managed",
        "false",
        "Start the managed (lifecycle) scorer: configure loads the model, "
        "activate scores, deactivate pauses (and frees the model if release_model_on_deactivate)",
    ),
    ("autostart", "true", "With managed:=true, configure and activate it at once"),
    (
        "release_model_on_deactivate",
        "",
        "With managed:=true: true frees the model (and the CUDA cache) on deactivate ('' = params file value)",
    ),
)
MANAGED_EXECUTABLE = "managed_scorer_node"


def _flag(args: dict[str, str], name: str) -> bool:
    value = args.get(name, "false").strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"{name} must be true or false, got {args.get(name)!r}")
    return value == "true"


def parameter_overrides(args: dict[str, str]) -> dict[str, Any]:
    """Node parameters set by non-empty launch arguments (the rest: params file)."""
    overrides: dict[str, Any] = {}
    if args.get("model", "").strip():
        overrides["model"] = args["model"].strip()
    if args.get("device", "").strip():
        overrides["device"] = args["device"].strip()
    if args.get("instruction_topic", "").strip():
        overrides["instruction_topic"] = args["instruction_topic"].strip()
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
    release = args.get("release_model_on_deactivate", "").strip().lower()
    if release:
        if release not in ("true", "false"):
            raise ValueError(
                f"release_model_on_deactivate must be true or false, got {args.get('release_model_on_deactivate')!r}"
            )
        overrides["release_model_on_deactivate"] = release == "true"
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
    common = dict(
        package=PACKAGE,
        name=EXECUTABLE,  # the same node name either way: topics, parameters and tools do not change
        namespace=args["namespace"],
        output="screen",
        emulate_tty=True,
        parameters=[*files, parameter_overrides(args)],
    )
    if not _flag(args, "managed"):
        return [Node(executable=EXECUTABLE, **common)]
    return _managed(common, autostart=_flag(args, "autostart"))


def _managed(common: dict[str, Any], autostart: bool) -> list[Any]:
    """The lifecycle node, and (autostart) the configure and then activate transitions."""
    from launch.actions import EmitEvent, RegisterEventHandler
    from launch.events import matches_action
    from launch_ros.actions import LifecycleNode
    from launch_ros.event_handlers import OnStateTransition
    from launch_ros.events.lifecycle import ChangeState
    from lifecycle_msgs.msg import Transition

    node = LifecycleNode(executable=MANAGED_EXECUTABLE, **common)
    if not autostart:
        return [node]

    def change(transition: int) -> Any:
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition))

    return [
        node,
        RegisterEventHandler(
            OnStateTransition(
                target_lifecycle_node=node, goal_state="inactive", entities=[change(Transition.TRANSITION_ACTIVATE)]
            )
        ),
        change(Transition.TRANSITION_CONFIGURE),
    ]


def _config(name: str) -> Any:
    from launch.substitutions import LaunchConfiguration

    return LaunchConfiguration(name)


def generate_launch_description() -> Any:
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    from launch import LaunchDescription

    return LaunchDescription(
        [
            *(
                DeclareLaunchArgument(name, default_value=default, description=description)
                for name, default, description in LAUNCH_ARGUMENTS
            ),
            OpaqueFunction(function=_launch_setup),
        ]
    )
