"""The launch file, the parameters file and the install tree they point into.

What can be checked without launch / launch_ros is checked here: the file
compiles, its arguments and their defaults, the executable and parameters
file it refers to exist where colcon installed them, how the arguments turn
into node parameters, and that the parameters file, the node's parameter
table and the docs agree. The launch file run by launch itself, with the
node checked on the graph, is test_launch_graph.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from support.install_tree import LIB_DIR, SHARE_DIR

from topreward_ros.node.params import PARAMETERS

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILE = ROOT / "launch" / "scorer.launch.py"
CONFIG_FILE = ROOT / "config" / "scorer.yaml"
INSTALL_SHARE = SHARE_DIR
INSTALL_EXE = LIB_DIR / "scorer_node"
DOCS = ROOT / "docs" / "node.md"

EXPECTED_ARGUMENTS = {
    "model": "",
    "cameras": "",
    "instruction_topic": "",
    "rate": "",
    "device": "",
    "params_file": "",
    "calibration_file": "",
    "use_sim_time": "",
    "namespace": "",
    "managed": "false",
    "autostart": "true",
    "release_model_on_deactivate": "",
}


@pytest.fixture(scope="module")
def launch_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scorer_launch", LAUNCH_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # launch imports are deferred: works without launch
    return module


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if called == name:
                found.append(node)
    return found


def test_launch_file_compiles_and_builds_the_node_action() -> None:
    source = LAUNCH_FILE.read_text()
    tree = ast.parse(source, filename=str(LAUNCH_FILE))
    compile(tree, str(LAUNCH_FILE), "exec")
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    assert _calls(tree, "DeclareLaunchArgument"), "no DeclareLaunchArgument in the launch file"
    # One set of node arguments, used by the plain and the managed node alike.
    (common,) = [c for c in _calls(tree, "dict") if any(k.arg == "package" for k in c.keywords)]
    keywords = {k.arg: k.value for k in common.keywords}
    assert {"package", "name", "namespace", "parameters"} <= set(keywords)
    assert ast.unparse(keywords["package"]) == "PACKAGE"
    for action, executable in (("Node", "EXECUTABLE"), ("LifecycleNode", "MANAGED_EXECUTABLE")):
        (call,) = _calls(tree, action)
        given = {k.arg: ast.unparse(k.value) for k in call.keywords}
        assert given == {"executable": executable, None: "common"}, action


def test_declared_arguments_and_defaults(launch_module: ModuleType) -> None:
    declared = {name: default for name, default, _ in launch_module.LAUNCH_ARGUMENTS}
    assert declared == EXPECTED_ARGUMENTS
    assert all(description for _, _, description in launch_module.LAUNCH_ARGUMENTS)
    assert launch_module.PACKAGE == "topreward_ros"
    assert launch_module.EXECUTABLE == "scorer_node"


def test_launch_description_when_launch_is_installed(launch_module: ModuleType) -> None:
    pytest.importorskip("launch")
    pytest.importorskip("launch_ros")
    description = launch_module.generate_launch_description()
    got = {a.name: a.default_value for a in description.get_launch_arguments()}
    assert set(got) == set(EXPECTED_ARGUMENTS)


def test_install_tree_holds_executable_params_and_launch_file() -> None:
    if not INSTALL_EXE.exists():
        pytest.fail(f"{INSTALL_EXE} missing: run `make build`")
    assert os.access(INSTALL_EXE, os.X_OK), f"{INSTALL_EXE} is not executable"
    assert (INSTALL_SHARE / "config" / "scorer.yaml").read_text() == CONFIG_FILE.read_text()
    assert (INSTALL_SHARE / "launch" / "scorer.launch.py").exists()


def test_default_params_file_is_found_through_the_ament_index() -> None:
    from ament_index_python.packages import get_package_share_directory

    share = Path(get_package_share_directory("topreward_ros"))
    assert (share / "config" / "scorer.yaml").is_file()
    # share/topreward_ros -> the package prefix, where lib/topreward_ros holds the executable.
    assert (share.parents[1] / "lib" / "topreward_ros" / "scorer_node").exists()


def test_empty_arguments_keep_the_params_file_values(launch_module: ModuleType) -> None:
    args = dict(EXPECTED_ARGUMENTS)
    assert launch_module.parameter_overrides(args) == {}
    # use_sim_time too: an absent or empty argument keeps the file's value.
    assert launch_module.parameter_overrides({}) == {}
    assert launch_module.parameter_overrides(dict(args, use_sim_time="false")) == {"use_sim_time": False}


def test_arguments_become_parameters(launch_module: ModuleType) -> None:
    args = dict(
        EXPECTED_ARGUMENTS,
        model="/models/qwen3-vl-8b",
        cameras="['wrist/image_raw/compressed', 'front/image_raw']",
        rate="2.5",
        device="cuda:1",
        use_sim_time="true",
        release_model_on_deactivate="true",
        instruction_topic="/task/instruction",
    )
    assert launch_module.parameter_overrides(args) == {
        "release_model_on_deactivate": True,
        "instruction_topic": "/task/instruction",
        "model": "/models/qwen3-vl-8b",
        "camera_topics": ["wrist/image_raw/compressed", "front/image_raw"],
        "rate_hz": 2.5,
        "device": "cuda:1",
        "use_sim_time": True,
    }
    plain = launch_module.parameter_overrides(dict(args, cameras="a/image_raw, b/image_raw"))
    assert plain["camera_topics"] == ["a/image_raw", "b/image_raw"]


@pytest.mark.parametrize(
    "text",
    [
        "[wrist/image_raw/compressed, front/image_raw]",  # YAML flow list, no quotes
        "['wrist/image_raw/compressed', \"front/image_raw\"]",  # Python literal: valid YAML too
        "[ wrist/image_raw/compressed ,\n  front/image_raw ]",
    ],
)
def test_cameras_is_parsed_as_a_yaml_list(launch_module: ModuleType, text: str) -> None:
    got = launch_module.parameter_overrides(dict(EXPECTED_ARGUMENTS, cameras=text))
    assert got == {"camera_topics": ["wrist/image_raw/compressed", "front/image_raw"]}


def test_calibration_file_comes_after_the_params_file(launch_module: ModuleType, tmp_path: Path) -> None:
    rig, calibrated = tmp_path / "rig.yaml", tmp_path / "calibrated.yaml"
    rig.write_text("/**: {ros__parameters: {max_frames: 17}}\n")
    calibrated.write_text("/**: {ros__parameters: {success_threshold: -3.5}}\n")
    default = str(CONFIG_FILE)
    files = launch_module.parameter_files
    assert files(dict(EXPECTED_ARGUMENTS), default) == [default]
    assert files(dict(EXPECTED_ARGUMENTS, params_file=str(rig)), default) == [str(rig)]
    assert files(dict(EXPECTED_ARGUMENTS, calibration_file=str(calibrated)), default) == [default, str(calibrated)]
    assert files(dict(EXPECTED_ARGUMENTS, params_file=str(rig), calibration_file=str(calibrated)), default) == [
        str(rig),
        str(calibrated),
    ]
    with pytest.raises(ValueError, match="calibration_file: no such file"):
        files(dict(EXPECTED_ARGUMENTS, calibration_file=str(tmp_path / "missing.yaml")), default)


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("rate", "fast", "rate must be a number"),
        ("cameras", "[1, 2]", "cameras must be a non-empty list of topic names"),
        ("cameras", "['a'", "cameras must be a list of topic names"),
        ("use_sim_time", "yes", "use_sim_time must be true or false"),
        ("release_model_on_deactivate", "1", "release_model_on_deactivate must be true or false"),
    ],
)
def test_bad_arguments_are_named(launch_module: ModuleType, name: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        launch_module.parameter_overrides(dict(EXPECTED_ARGUMENTS, **{name: value}))


def test_params_file_matches_the_node_parameter_table() -> None:
    loaded = yaml.safe_load(CONFIG_FILE.read_text())
    assert list(loaded) == ["/**"], "the params file must apply to the node under any name"
    values = loaded["/**"]["ros__parameters"]
    table = {p.name: p.default for p in PARAMETERS}
    assert set(values) == set(table), (
        f"only in file: {set(values) - set(table)}, only in node: {set(table) - set(values)}"
    )
    for name, default in table.items():
        assert values[name] == default, f"{name}: file has {values[name]!r}, node default {default!r}"
        assert type(values[name]) is type(default), f"{name}: type differs from the declared one"


def test_docs_cover_every_parameter_and_launch_argument(launch_module: ModuleType) -> None:
    text = DOCS.read_text()
    for spec in PARAMETERS:
        assert f"`{spec.name}`" in text, f"docs/node.md does not describe parameter {spec.name}"
    for name, _, _ in launch_module.LAUNCH_ARGUMENTS:
        assert f"`{name}`" in text, f"docs/node.md does not describe launch argument {name}"


def test_params_file_points_at_existing_docs() -> None:
    for line in CONFIG_FILE.read_text().splitlines():
        for word in line.replace("(", " ").replace(")", " ").split():
            if word.startswith("docs/"):
                assert (ROOT / word.rstrip(".,;")).is_file(), f"config/scorer.yaml names {word}, which is missing"
