"""Ending a node process on Ctrl-C without the interpreter's teardown.

``ros2 launch`` gives a node 5 s after SIGINT before it escalates to SIGTERM
and logs an error. A scorer node returning from ``main`` normally spends that
time, and more, on work nobody needs once it has left the ROS graph:

* the interpreter joins the executor's worker threads before it exits, so a
  scoring tick inside a model forward runs to its end first (tens of seconds
  with a large VLM on a CPU, or a big window) and its result can no longer
  be published;
* then it finalizes torch, transformers and the loaded model (2-4 s measured
  with the small test model on a 2-core machine, even with no tick running).

So once the node is destroyed and the ROS context is shut down, the process
flushes what it has written and ends right there; the operating system
reclaims memory and threads. The model-loading thread is a daemon and needs
nothing either.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from typing import NoReturn


def exit_now(code: int) -> NoReturn:
    """Flush output streams and end the process with ``code``, skipping the teardown."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing left to save
            pass
    try:
        ctypes.CDLL(None).fflush(None)  # C stdio buffers (ROS logging from C) too
    except OSError:
        pass
    os._exit(code)
