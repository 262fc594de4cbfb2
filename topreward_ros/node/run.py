"""Running a scorer node as a process: signals, the executor, a clean and prompt end.

SIGINT and SIGTERM are handled here, not by rclpy (whose handlers shut the
ROS context down at once): the node is destroyed while its context still
runs, so the running episode's EpisodeResult is published before the node
leaves the graph; then ``exit_now`` ends the process inside ``ros2 launch``'s
grace period (see ``topreward_ros.node.process_exit``).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import rclpy
from rclpy.exceptions import InvalidHandle, ParameterException
from rclpy.executors import Executor, ExternalShutdownException, MultiThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from topreward_ros.node.process_exit import exit_now

if TYPE_CHECKING:
    from topreward_ros.node.base import ScorerNodeBase

#: The name a configuration error is logged under (the node's, which may not exist yet).
LOGGER_NAME = "scorer_node"
#: How often the main thread looks up from spinning, so that a signal is handled promptly.
SPIN_POLL_S = 0.1


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def spin_until_shutdown(executor: Executor, keep_going: Callable[[], bool] = rclpy.ok) -> None:
    """Spin ``executor`` in this thread while ``keep_going()``, surviving entities destroyed meanwhile.

    The node destroys subscriptions and publishers with QoS event handlers
    from executor threads: on deactivate, cleanup and shutdown, and when the
    latched-instruction subscription is replaced. rclpy's executor enters each
    event handler and then adds it to the wait set in two steps; a destroy
    requested between the two raises ``InvalidHandle`` out of ``spin_once``
    (an open rclpy bug, ros2/rclpy#1206, in Jazzy and Kilted), and uncaught
    it ended the node. The entity is gone from the node by then, so the next
    ``spin_once`` builds a wait set without it and nothing else is lost.
    """
    while keep_going():  # the signal handler runs between two waits
        try:
            executor.spin_once(timeout_sec=SPIN_POLL_S)
        except InvalidHandle:
            continue


def run(node_class: type[ScorerNodeBase], args: list[str] | None = None) -> NoReturn:
    """Run the node until Ctrl-C or SIGTERM, then end the process with its exit code.

    Does not return once the node ran: after the node is destroyed and the
    context shut down, ``exit_now`` ends the process at once. A bad
    configuration is logged and ends the process with code 2.
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    node: ScorerNodeBase | None = None
    code = 0
    try:
        node = node_class()
        executor = MultiThreadedExecutor(num_threads=max(4, node.num_cameras + 3))
        executor.add_node(node)
        spin_until_shutdown(executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, ParameterException) as exc:  # a bad configuration, named in the message
        rclpy.logging.get_logger(LOGGER_NAME).fatal(f"invalid configuration: {exc}")
        code = 2
    finally:
        # Shutting down: a second Ctrl-C must not break off the clean-up. A terminal
        # sends SIGINT to the whole process group and ``ros2 launch`` forwards its
        # own, so a node under ``ros2 launch`` gets two.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # launch's escalation ends the process
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    exit_now(code)
