"""Package hygiene: the manifest parses as a ROS package, the code passes ruff (lint, import order, format)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_package_xml_is_a_valid_format3_manifest():
    from catkin_pkg.package import parse_package

    package = parse_package(str(ROOT / "package.xml"))
    package.validate()
    assert package.name == "topreward_ros"
    assert package.package_format == 3
    assert package.get_build_type() == "ament_cmake"
    names = {d.name for d in package.exec_depends}
    assert {"rclpy", "sensor_msgs", "std_srvs", "diagnostic_msgs"} <= names


def test_setup_py_version_matches_package_xml():
    from catkin_pkg.package import parse_package

    version = parse_package(str(ROOT / "package.xml")).version
    assert f'version="{version}"' in (ROOT / "setup.py").read_text()


LINTED = ["topreward_ros", "test", "bench", "launch", "tools"]


def ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--config", str(ROOT / "ruff.toml"), *LINTED],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_ruff_lint_and_import_order_clean():
    result = ruff("check", "--no-cache", "--output-format", "concise")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_clean():
    """`ruff format` leaves every file as it is (run it to fix a failure)."""
    result = ruff("format", "--no-cache", "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_setup_py_requirements_carry_the_tested_versions():
    """pip users get the versions the suite runs with: every requirement of setup.py names the
    version requirements/*.txt pins (``~=`` that version, or ``==`` it), none is left open."""
    import ast
    import re

    calls = [
        n
        for n in ast.walk(ast.parse((ROOT / "setup.py").read_text()))
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup"
    ]
    keywords = {
        k.arg: ast.literal_eval(k.value) for k in calls[0].keywords if k.arg in ("install_requires", "extras_require")
    }
    declared = [*keywords["install_requires"], *(r for reqs in keywords["extras_require"].values() for r in reqs)]

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    pins = {}
    for path in (ROOT / "requirements").glob("*.txt"):
        for line in path.read_text().splitlines():
            match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)==([^\s;#]+).*", line)
            if match:
                pins[norm(match[1])] = match[2]
    for requirement in declared:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)(~=|==)([^\s;,]+)", requirement)
        assert match, f"setup.py: {requirement!r} names no tested version (use ~= or == the pinned one)"
        assert pins.get(norm(match[1])) == match[3], (
            f"setup.py: {requirement!r}, but requirements/*.txt pin {match[1]}=={pins.get(norm(match[1]))}"
        )
