"""The DDS domain each test module claims: two holders never get the same id."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import claim_domain


def in_a_child_process(variable: str) -> str:
    """The value a child process of this test sees for ``variable``."""
    code = f"import os; print(os.environ[{variable!r}])"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_module_domain_is_exported_for_child_processes(ros_domain: int) -> None:
    assert os.environ["ROS_DOMAIN_ID"] == str(ros_domain)
    assert in_a_child_process("ROS_DOMAIN_ID") == str(ros_domain)


def test_a_held_domain_is_skipped_by_this_and_other_processes(ros_domain: int) -> None:
    domain, lock = claim_domain(ros_domain)  # this module already holds ros_domain
    try:
        assert domain != ros_domain
        # Another process (another test run) starting from the same id skips both.
        test_root = str(Path(__file__).resolve().parents[1])
        code = (
            f"import sys; sys.path.insert(0, {test_root!r}); from conftest import claim_domain; "
            f"print(claim_domain({ros_domain})[0])"
        )
        other = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
        assert other not in (ros_domain, domain)
    finally:
        lock.close()
    # Released: the next claim from there gets it back.
    again, lock = claim_domain(domain)
    lock.close()
    assert again == domain


def test_child_processes_keep_their_dds_discovery_on_this_machine() -> None:
    """tools/env.sh leaves the discovery range to the user; the suite sets LOCALHOST for itself.

    conftest's pytest_configure sets it unless the environment already names a
    range, and every process a test starts inherits it.
    """
    root = Path(__file__).resolve().parents[2]
    shell = subprocess.run(
        [
            "bash",
            "-c",
            'unset ROS_AUTOMATIC_DISCOVERY_RANGE; source tools/env.sh; echo "${ROS_AUTOMATIC_DISCOVERY_RANGE-unset}"',
        ],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert shell.strip() == "unset", "tools/env.sh must not hide other machines' cameras from a user's shell"
    given = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE")
    assert given, "conftest.py must set ROS_AUTOMATIC_DISCOVERY_RANGE for the suite's processes"
    assert in_a_child_process("ROS_AUTOMATIC_DISCOVERY_RANGE") == given
