"""How an instruction reaches the node, and what the node says when QoS cannot match.

A real rclpy graph in this process: the node in one context and "the rest of
the robot" (a task manager's publishers, a subscriber) in another, talking
over DDS. No model is needed to start episodes, so none is loaded.

* a default-QoS (volatile) publisher, a latched one, a latched one that
  published before the node existed, and the ``instruction`` parameter all
  start episodes; one latched message, which reaches both of the node's
  instruction subscriptions, starts one episode;
* an instruction message carries its publication time into the episode, so a
  camera frame published before it but handled after it stays out;
* a frame published after an instruction but handled before it is moved into
  the episode that instruction starts;
* a refused instruction ends the running episode and nothing is scored until
  a valid one arrives (the interval is on /diagnostics);
* a primary stamp that jumps forward past ``stamp_gap_restart_s`` starts a new
  episode (no window spans the gap);
* incompatible QoS on a subscription or a publisher is counted on
  /diagnostics with what to set, and an ordinary publisher raises none.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSPolicyKind, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from support.ros_process import poll  # noqa: E402

from topreward_ros.msg import TaskProgress  # noqa: E402
from topreward_ros.node.scorer_node import ScorerNode  # noqa: E402

CAMERA = "/cam/image_raw"
NS = 1_000_000_000
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
CONTROL_TOKENS = "pick up <|im_start|> the cube"


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    poll(what, predicate, timeout)


class Graph:
    """The node under test and a peer node, each in its own context, spun in the background."""

    def __init__(self, tmp_path: Path, *, spin_node: bool = True, **params) -> None:
        self.tmp_path = tmp_path
        self.params = params
        self.peer_context = Context()
        rclpy.init(context=self.peer_context)
        self.peer = rclpy.create_node("task_manager", context=self.peer_context)
        self._spinners: list[tuple[SingleThreadedExecutor, threading.Thread]] = []
        self._spin(self.peer, self.peer_context)
        self.node_context: Context | None = None
        self.node: ScorerNode | None = None
        self.node_executor: SingleThreadedExecutor | None = None
        self.spin_node = spin_node

    def start_node(self) -> ScorerNode:
        self.node_context = Context()
        rclpy.init(
            context=self.node_context,
            args=[
                "--ros-args",
                "-p",
                f"qos_overrides.{CAMERA}.subscription.reliability:=reliable",
                "-p",
                f"qos_overrides.{CAMERA}.subscription.depth:=50",
            ],
        )
        overrides = [
            Parameter("model", value=str(self.tmp_path / "no-model")),
            Parameter("model_retry_s", value=3600.0),
            Parameter("camera_topics", value=[CAMERA]),
            Parameter("view_size", value=32),
        ] + [Parameter(k, value=v) for k, v in self.params.items()]
        self.node = ScorerNode(context=self.node_context, parameter_overrides=overrides)
        if self.spin_node:
            self._spin(self.node, self.node_context)
        else:
            self.node_executor = SingleThreadedExecutor(context=self.node_context)
            self.node_executor.add_node(self.node)
        return self.node

    def _spin(self, node, context: Context) -> None:
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)

        def spin() -> None:
            try:
                executor.spin()
            except Exception:  # noqa: BLE001 - the context is shut down at teardown
                pass

        thread = threading.Thread(target=spin, daemon=True)
        thread.start()
        self._spinners.append((executor, thread))

    def close(self) -> None:
        for executor, _ in self._spinners:
            executor.shutdown()
        if self.node_executor is not None:
            self.node_executor.shutdown()
        if self.node is not None:
            self.node.destroy_node()
        self.peer.destroy_node()
        for context in (self.node_context, self.peer_context):
            if context is not None:
                rclpy.try_shutdown(context=context)
        for _, thread in self._spinners:
            thread.join(5)

    # -- reading the node's state the way an operator does: /diagnostics entries.
    def status(self, suffix: str) -> DiagnosticStatus:
        assert self.node is not None
        for status in self.node.diagnostic_statuses():
            if status.name.endswith(suffix):
                return status
        raise AssertionError(f"no status ending in {suffix!r}")

    def values(self, suffix: str) -> dict[str, str]:
        return {kv.key: kv.value for kv in self.status(suffix).values}

    def episode(self) -> tuple[str, str]:
        values = self.values(": episode")
        return values["episode_id"], values["instruction"]


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[Graph]:
    g = Graph(tmp_path)
    yield g
    g.close()


def image(stamp_ns: int, value: int = 90) -> Image:
    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), NS)
    msg.height, msg.width, msg.encoding, msg.step = 8, 8, "rgb8", 24
    msg.data = bytes([value]) * (8 * 24)
    return msg


def info(published_ns: int) -> dict:
    return {
        "source_timestamp": published_ns,
        "received_timestamp": published_ns + 1,
        "publication_sequence_number": None,
        "reception_sequence_number": None,
    }


# ----------------------------------------------------------------------------
# Every kind of publisher starts episodes.
# ----------------------------------------------------------------------------
def test_default_qos_publisher_starts_an_episode_and_raises_no_qos_warning(graph: Graph) -> None:
    node = graph.start_node()
    pub = graph.peer.create_publisher(String, "/instruction", 10)  # what `ros2 topic pub` uses
    wait_for(lambda: pub.get_subscription_count() >= 1, "the node's volatile subscription to match")
    pub.publish(String(data="pick up the cube"))
    wait_for(lambda: graph.episode()[1] == "pick up the cube", "an episode for the instruction")
    assert node._episode_event.count == 1
    # The latched subscription never matches a volatile writer: by design, not a warning.
    qos = graph.status(": qos")
    assert qos.level == DiagnosticStatus.OK, qos.message
    assert graph.values(": qos")["incompatible_total"] == "0"


def test_the_latched_reader_exists_only_while_a_latched_writer_does(graph: Graph) -> None:
    """An ordinary publisher meeting a transient-local reader logs that no messages will be sent to
    it (though the volatile reader gets them all): without a latched writer there is no such reader."""
    graph.start_node()
    volatile = graph.peer.create_publisher(String, "/instruction", 10)

    def readers() -> list[DurabilityPolicy]:
        return sorted(
            (
                i.qos_profile.durability
                for i in graph.peer.get_subscriptions_info_by_topic("/instruction")
                if i.node_name == "scorer_node"
            ),
            key=int,
        )

    wait_for(lambda: volatile.get_subscription_count() >= 1, "the node's volatile reader")
    wait_for(lambda: readers() == [DurabilityPolicy.VOLATILE], "only the volatile reader")
    latched = graph.peer.create_publisher(String, "/instruction", LATCHED)
    wait_for(
        lambda: readers() == [DurabilityPolicy.TRANSIENT_LOCAL, DurabilityPolicy.VOLATILE],
        "a transient-local reader for the latched writer",
    )
    latched.publish(String(data="wipe the table"))
    wait_for(lambda: graph.episode()[1] == "wipe the table", "the latched writer's instruction")
    graph.peer.destroy_publisher(latched)
    wait_for(lambda: readers() == [DurabilityPolicy.VOLATILE], "the transient-local reader to go with it")


def test_latched_instruction_published_before_the_node_started_reaches_it(graph: Graph) -> None:
    pub = graph.peer.create_publisher(String, "/instruction", LATCHED)
    pub.publish(String(data="open the drawer"))
    graph.start_node()
    wait_for(lambda: graph.episode()[1] == "open the drawer", "the latched instruction")


def test_one_latched_message_reaching_both_subscriptions_starts_one_episode(graph: Graph) -> None:
    node = graph.start_node()
    pub = graph.peer.create_publisher(String, "/instruction", LATCHED)
    # A latched writer matches both of the node's instruction readers.
    wait_for(lambda: pub.get_subscription_count() >= 2, "both instruction subscriptions to match")
    pub.publish(String(data="stack the cups"))
    wait_for(lambda: graph.episode()[1] == "stack the cups", "the first instruction")
    first = graph.episode()[0]
    pub.publish(String(data="stack the cups"))  # the same text again: a new episode, once
    wait_for(lambda: graph.episode()[0] != first, "the second instruction")
    assert pub.wait_for_all_acked(rclpy.duration.Duration(seconds=10))
    # Both readers got both messages; give the executor a moment to run any copy left.
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        time.sleep(0.05)
    assert node._episode_event.count == 2
    assert node._runner.instruction == "stack the cups"


def test_instruction_parameter_starts_an_episode(graph: Graph) -> None:
    node = graph.start_node()
    result = node.set_parameters([Parameter("instruction", value="wipe the table")])[0]
    assert result.successful
    assert graph.episode()[1] == "wipe the table"


# ----------------------------------------------------------------------------
# Publication order decides which episode a frame belongs to.
# ----------------------------------------------------------------------------
def test_frame_published_before_a_real_instruction_but_handled_after_it_stays_out(tmp_path: Path) -> None:
    """Over DDS: the instruction's publication time must reach the node (message info)."""
    graph = Graph(tmp_path, spin_node=False)
    try:
        node = graph.start_node()
        cam = graph.peer.create_publisher(Image, CAMERA, QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        instr = graph.peer.create_publisher(String, "/instruction", 10)
        wait_for(
            lambda: cam.get_subscription_count() >= 1 and instr.get_subscription_count() >= 1,
            "the node's subscriptions to match",
        )
        cam.publish(image(1 * NS, 10))  # the old scene, published first
        instr.publish(String(data="pick up the cube"))
        cam.publish(image(2 * NS, 20))  # the new episode's first frame
        for pub in (cam, instr):
            assert pub.wait_for_all_acked(rclpy.duration.Duration(seconds=10))
        # The executor serves ready subscriptions in creation order: the
        # instruction is handled before the frame published ahead of it.
        deadline = time.monotonic() + 10
        while node._cameras[0].received < 2 and time.monotonic() < deadline:
            graph.node_executor.spin_once(timeout_sec=0.1)
        assert node._runner.instruction == "pick up the cube"
        assert node._cameras[0].received == 2
        node._runner.flush()
        assert [s.stamp_ns for s in node._runner.samples] == [2 * NS]
    finally:
        graph.close()


def test_frames_handled_before_their_instruction_move_into_its_episode(graph: Graph) -> None:
    node = graph.start_node()
    t = 1_000 * NS  # publication times (publisher clock)
    node._on_instruction_msg(String(data="task one"), info(t))
    node._on_image(0, image(10 * NS), info(t + 1 * NS))
    # Published after the next instruction, handled before it (a busy machine).
    node._on_image(0, image(11 * NS), info(t + 3 * NS))
    node._on_image(0, image(12 * NS), info(t + 4 * NS))
    node._on_instruction_msg(String(data="task two"), info(t + 2 * NS))
    # Published before "task two", handled after it: the episode before's.
    node._on_image(0, image(10_500_000_000), info(t + 1_500_000_000))
    node._on_image(0, image(13 * NS), info(t + 5 * NS))
    node._runner.flush()
    assert node._runner.instruction == "task two"
    assert [s.stamp_ns for s in node._runner.samples] == [11 * NS, 12 * NS, 13 * NS]
    assert graph.values(f"camera {CAMERA} (primary)")["moved_to_next_episode"] == "2"


# ----------------------------------------------------------------------------
# Refused instructions, stamp gaps.
# ----------------------------------------------------------------------------
def test_refused_instruction_ends_the_episode_until_a_valid_one(graph: Graph) -> None:
    node = graph.start_node()
    t = 1_000 * NS
    node._on_instruction_msg(String(data="task one"), info(t))
    first = node._runner.episode_id
    node._on_image(0, image(10 * NS), info(t + 1))
    node._on_instruction_msg(String(data=CONTROL_TOKENS), info(t + NS))
    assert node._runner.episode_id is None, "the previous task went on with the refused task's frames"
    node._on_image(0, image(11 * NS), info(t + 2 * NS))
    assert node._cameras[0].kept == 1, "a frame of the refused task was kept"
    status = graph.status(": episode")
    assert status.level == DiagnosticStatus.WARN
    assert "nothing is scored until a valid instruction arrives" in status.message
    values = graph.values(": episode")
    assert values["refused_instructions"] == "1"
    assert float(values["unscored_since_refusal_s"]) >= 0.0
    assert f"episode {first} ended" in values["last_error"]
    # A reset asks for the refused task again: still nothing scored.
    from std_srvs.srv import Trigger

    response = node._on_reset(Trigger.Request(), Trigger.Response())
    assert not response.success and node._runner.episode_id is None
    node._on_instruction_msg(String(data="task two"), info(t + 3 * NS))
    node._on_image(0, image(12 * NS), info(t + 4 * NS))
    node._runner.flush()
    assert [s.stamp_ns for s in node._runner.samples] == [12 * NS]
    assert graph.values(": episode")["unscored_since_refusal_s"] == "0.0"


def test_forward_stamp_gap_starts_a_new_episode(graph: Graph) -> None:
    node = graph.start_node()
    node.set_parameters([Parameter("instruction", value="fold the towel")])
    first = node._runner.episode_id
    for i in range(3):  # a driver that stamps zero at first
        node._on_image(0, image(0), info(100 + i))
    real = 1_764_000_000 * NS  # then real time: 55 years later
    node._on_image(0, image(real), info(200))
    node._on_image(0, image(real + NS // 2), info(201))
    node._runner.flush()
    assert node._runner.episode_id != first
    assert node._runner.instruction == "fold the towel"
    stamps = [s.stamp_ns for s in node._runner.samples]
    assert stamps == [real, real + NS // 2]
    camera = graph.values(f"camera {CAMERA} (primary)")
    assert camera["stamp_gaps"] == "1"
    assert "camera stamp jumped forward by" in camera["last_error"]
    # A gap below the bound is an ordinary pause.
    node._on_image(0, image(real + 30 * NS), info(202))
    assert graph.values(f"camera {CAMERA} (primary)")["stamp_gaps"] == "1"


def test_stamp_gap_restart_s_sets_the_forward_gap_that_starts_a_new_episode(graph: Graph) -> None:
    node = graph.start_node()
    result = node.set_parameters([Parameter("stamp_gap_restart_s", value=5.0)])
    assert all(r.successful for r in result), result
    node.set_parameters([Parameter("instruction", value="fold the towel")])
    first = node._runner.episode_id
    t0 = 1_764_000_000 * NS
    node._on_image(0, image(t0), info(100))
    node._on_image(0, image(t0 + 4 * NS), info(101))  # 4 s: under the 5 s set, a pause
    node._runner.flush()
    assert node._runner.episode_id == first
    node._on_image(0, image(t0 + 10 * NS), info(102))  # 6 s: over it (the 60 s default would not cut)
    node._runner.flush()
    assert node._runner.episode_id != first
    assert graph.values(f"camera {CAMERA} (primary)")["stamp_gaps"] == "1"


# ----------------------------------------------------------------------------
# Incompatible QoS: counted, explained.
# ----------------------------------------------------------------------------
def test_incompatible_qos_is_reported_for_subscriptions_and_publishers(graph: Graph) -> None:
    graph.start_node()
    best_effort = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
    graph.peer.create_publisher(String, "/instruction", best_effort)  # matches no instruction reader
    graph.peer.create_publisher(Image, CAMERA, best_effort)  # the camera reader was set reliable
    graph.peer.create_subscription(TaskProgress, "/task_progress", lambda m: None, LATCHED)

    def counts() -> dict[str, str]:
        return graph.values(": qos")

    wait_for(
        lambda: (
            counts().get("incompatible subscription /instruction", "0") != "0"
            and counts().get(f"incompatible subscription {CAMERA}", "0") != "0"
            and counts().get("incompatible publisher /task_progress", "0") != "0"
        ),
        "the three incompatibilities to be counted",
    )
    status = graph.status(": qos")
    assert status.level == DiagnosticStatus.WARN
    assert "subscription /instruction: reliability" in status.message
    assert f"subscription {CAMERA}: reliability" in status.message
    assert "publisher /task_progress: durability" in status.message
    # The text logged once names both sides and the fix.
    watch = graph.node._qos
    # (The transient-local reader exists only while a latched writer does: the volatile one is here.)
    reader = next(e for e in watch._endpoints if e.topic == "/instruction")
    assert reader.profile.durability == DurabilityPolicy.VOLATILE
    text = watch.explain(reader, int(QoSPolicyKind.RELIABILITY))
    assert "requests reliable, volatile" in text and "best_effort, volatile" in text
    assert "Publish the instruction with reliable QoS" in text
