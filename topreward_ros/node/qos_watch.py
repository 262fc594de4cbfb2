"""Incompatible QoS on the node's topics: said once, with what to change, and counted.

DDS never connects a publisher and a subscription whose QoS do not match
(a reliable reader and a best-effort writer, a transient-local reader and a
volatile writer, ...) and, left alone, only a generic warning says so. A
camera that never arrives or an instruction that never starts an episode
then looks like a bug in the node. ``QoSWatch`` turns rclpy's incompatible-QoS
events into one log line per topic, side and policy that names what this node
asks or offers, what the other side offers or asks, and which setting fixes
it, and keeps the counts the node reports on /diagnostics.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rclpy.qos import QoSPolicyKind


def policy_name(kind: Any) -> str:
    """'reliability', 'durability', ... for a policy kind (its number if unknown)."""
    try:
        return QoSPolicyKind(int(kind)).name.lower()
    except ValueError:
        return f"policy {int(kind)}"


def describe_profile(profile: Any) -> str:
    """The matching-relevant part of a QoS profile, e.g. 'reliable, volatile'."""
    parts = []
    for name in ("reliability", "durability"):
        value = getattr(profile, name, None)
        parts.append(getattr(value, "name", str(value)).lower())
    return ", ".join(parts)


@dataclass
class _Endpoint:
    """One of the node's own publishers or subscriptions, watched for incompatible peers."""

    topic: str
    side: str  # "subscription" or "publisher"
    profile: Any
    advice: str  # what the user can set, for the policies not named in `ignore`
    ignore: frozenset[int] = frozenset()  # policy kinds that another endpoint serves
    count: int = 0
    reported: set[int] = field(default_factory=set)


class QoSWatch:
    """Counts and explains incompatible-QoS events of the node's endpoints.

    ``logger``: called with the text once per topic, side and policy.
    ``peers``: returns the QoS profiles the other side has on a topic
    (publishers for a subscription, subscriptions for a publisher), so the
    text can say what they offer or ask.
    """

    def __init__(self, logger: Callable[[str], None], peers: Callable[[str, str], list[Any]]) -> None:
        self._logger = logger
        self._peers = peers
        self._lock = threading.Lock()
        # One record per topic, side and ignored policies: a managed node creates
        # its endpoints again at every activation, and what was counted and
        # explained before stays (once per topic, side and policy for the node's life).
        self._records: dict[tuple[str, str, frozenset[int]], _Endpoint] = {}

    @property
    def _endpoints(self) -> list[_Endpoint]:
        return list(self._records.values())

    def watch(
        self, topic: str, side: str, profile: Any, advice: str, ignore: frozenset[int] = frozenset()
    ) -> Callable[[Any], None]:
        """Register an endpoint (or take its record back); the callback for its incompatible_qos event."""
        key = (topic, side, frozenset(int(k) for k in ignore))
        with self._lock:
            endpoint = self._records.get(key)
            if endpoint is None:
                endpoint = self._records[key] = _Endpoint(topic, side, profile, advice, key[2])
            else:
                endpoint.profile, endpoint.advice = profile, advice
        return lambda event: self.on_event(endpoint, event)

    def on_event(self, endpoint: _Endpoint, event: Any) -> None:
        kind = int(event.last_policy_kind)
        if kind in endpoint.ignore:
            return
        with self._lock:
            endpoint.count += max(int(event.total_count_change), 1)
            first = kind not in endpoint.reported
            endpoint.reported.add(kind)
        if first:
            self._logger(self.explain(endpoint, kind))

    def explain(self, endpoint: _Endpoint, kind: int) -> str:
        policy = policy_name(kind)
        other = "publisher" if endpoint.side == "subscription" else "subscription"
        verb_self, verb_other = ("requests", "offer") if endpoint.side == "subscription" else ("offers", "request")
        try:
            peers = [describe_profile(p) for p in self._peers(endpoint.topic, endpoint.side)]
        except Exception:  # noqa: BLE001 - the graph query is for the message only
            peers = []
        seen = "; ".join(sorted(set(peers))) or "unknown"
        return (
            f"incompatible QoS on {endpoint.topic} ({policy}): a {other} will never "
            f"connect to this node's {endpoint.side}. This node {verb_self} "
            f"{describe_profile(endpoint.profile)}; {other}s there {verb_other}: {seen}. "
            f"{endpoint.advice}"
        )

    def counts(self) -> dict[str, int]:
        """Incompatible-QoS events per 'side topic', for /diagnostics."""
        with self._lock:
            totals: dict[str, int] = {}
            for e in self._endpoints:
                key = f"{e.side} {e.topic}"
                totals[key] = totals.get(key, 0) + e.count
            return totals

    def last_policies(self) -> list[str]:
        """'side topic: policy' for every reported incompatibility."""
        with self._lock:
            return sorted({f"{e.side} {e.topic}: {policy_name(k)}" for e in self._endpoints for k in e.reported})
