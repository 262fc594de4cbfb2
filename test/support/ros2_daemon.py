"""The ``ros2`` command line's graph daemon, as the tests that drive the node through ``ros2`` use it.

Why tests need this: ``ros2 param``, ``ros2 node``, ``ros2 service`` and
``ros2 lifecycle`` ask the daemon which nodes exist whenever one is running
for the domain. The first command run on a domain finds none, starts one and
answers from its own short-lived view of the graph. The next command asks the
new daemon, whose cache may not yet have discovered the node, and ``ros2 param
set`` waits only ``--timeout`` (1 s) before answering "Node not found": on a
busy machine that is a random failure. So a test module starts the daemon
once (``fresh_daemon``) and waits until the daemon's view lists the node
(``node_listed``) before any command that looks the node up. Every later
command then reads the same view, which already holds the node.

The rules every graph test follows are in ``ros_process.py``'s docstring.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress

#: Longest one ``ros2 daemon`` / ``ros2 node list`` call may take.
COMMAND_TIMEOUT_S = 60.0


def ros2(
    *argv: str, env: Mapping[str, str] | None = None, timeout: float = COMMAND_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """``ros2 ARGV...`` to its end, output captured, in this process's domain.

    A command still running after ``timeout`` is stopped with SIGABRT, which
    makes Python's fault handler print every thread's stack: the
    ``TimeoutExpired`` raised then carries that in its ``stderr``, so a hang
    shows where the command was waiting, not only that it was.
    """
    exe = shutil.which("ros2")
    if exe is None:
        raise RuntimeError("the ros2 command line is not installed (make test installs it from ros-extras)")
    command_env = {**(env if env is not None else os.environ), "PYTHONFAULTHANDLER": "1"}
    with subprocess.Popen(
        [exe, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=command_env
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with suppress(OSError):  # the stack on stderr, no core file
                resource.prlimit(proc.pid, resource.RLIMIT_CORE, (0, 0))
            proc.send_signal(signal.SIGABRT)
            try:
                stdout, stderr = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, stderr = proc.communicate()
            raise subprocess.TimeoutExpired(proc.args, timeout, output=stdout, stderr=stderr) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@contextmanager
def fresh_daemon(env: Mapping[str, str] | None = None) -> Iterator[None]:
    """A daemon of this domain started before the block (any earlier one stopped) and stopped after it."""
    ros2("daemon", "stop", env=env)
    started = ros2("daemon", "start", env=env)
    if started.returncode != 0:
        raise RuntimeError(f"`ros2 daemon start` failed: {started.stdout}{started.stderr}")
    try:
        yield
    finally:
        ros2("daemon", "stop", env=env)


def node_listed(node_name: str, env: Mapping[str, str] | None = None) -> bool:
    """Whether ``ros2 node list`` (the daemon's view, when one runs) lists the fully qualified ``node_name``."""
    return node_name in ros2("node", "list", env=env).stdout.split()
