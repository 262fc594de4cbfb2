"""Package hygiene: the manifest parses as a ROS package, the code passes flake8."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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


@pytest.mark.parametrize("target", ["topreward_ros", "test", "bench", "launch", "tools"])
def test_flake8_clean(target):
    path = ROOT / target
    if not path.exists():
        pytest.skip(f"{target}/ not present")
    result = subprocess.run(
        [sys.executable, "-m", "flake8", "--jobs", "1", "--config", str(ROOT / "setup.cfg"), str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
