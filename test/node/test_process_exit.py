"""exit_now: the node's way out after Ctrl-C skips joining busy threads, but not its output."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# A process whose only other thread is a non-daemon worker that never ends,
# like an executor thread inside a model forward: a normal exit would join it
# and hang; exit_now must end the process with the code, output flushed.
CHILD = textwrap.dedent("""
    import ctypes, threading, sys
    from topreward_ros.node.process_exit import exit_now
    never = threading.Event()
    threading.Thread(target=never.wait, daemon=False).start()
    sys.stdout.write("python text without a newline")
    ctypes.CDLL(None).printf(b" | C stdio text without a newline")
    exit_now(3)
""")


def test_exit_now_ends_the_process_despite_a_busy_thread_and_keeps_its_output() -> None:
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "python text without a newline | C stdio text without a newline"


def test_a_normal_exit_would_wait_for_that_thread() -> None:
    """The control: the same child ending with sys.exit is still running when given time to end."""
    child = CHILD.replace("exit_now(3)", "sys.exit(3)")
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.wait(timeout=5)
        raise AssertionError("a normal exit did not wait for the non-daemon thread")
    except subprocess.TimeoutExpired:
        pass
    finally:
        proc.kill()
        proc.wait()
