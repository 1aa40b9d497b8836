"""``ClusterStatistics``: a cluster client's pools summed over its nodes, each node's own
figures, and the routing counters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ._client import RedisStatistics


@dataclass(frozen=True, slots=True)
class ClusterStatistics:
    """Pool figures summed over the nodes (as ``RedisStatistics``), each node's own, and
    the routing counters."""

    max_connections: int
    connections_open: int
    connections_idle: int
    connections_in_use: int
    slots_available: int
    tasks_waiting: int
    subscriptions: int
    commands_sent: int
    connects: int
    reconnects: int
    connection_errors: int
    timeouts: int
    reply_errors: int
    consecutive_connect_failures: int  # the worst node's
    next_connect_at: float | None  # the soonest of the nodes backing off
    primaries: int
    map_refreshes: int
    map_refresh_failures: int
    moved: int
    asked: int
    retries: int  # tries again after TRYAGAIN, CLUSTERDOWN or a connect that failed
    nodes: dict[str, RedisStatistics]


def cluster_statistics(nodes: Mapping[str, RedisStatistics], *, primaries: int,
                       map_refreshes: int, map_refresh_failures: int, moved: int,
                       asked: int, retries: int) -> ClusterStatistics:
    figures = list(nodes.values())

    def total(name: str) -> int:
        return sum(getattr(figure, name) for figure in figures)

    backing_off = [f.next_connect_at for f in figures if f.next_connect_at is not None]
    return ClusterStatistics(
        max_connections=total("max_connections"),
        connections_open=total("connections_open"),
        connections_idle=total("connections_idle"),
        connections_in_use=total("connections_in_use"),
        slots_available=total("slots_available"),
        tasks_waiting=total("tasks_waiting"),
        subscriptions=total("subscriptions"),
        commands_sent=total("commands_sent"),
        connects=total("connects"),
        reconnects=total("reconnects"),
        connection_errors=total("connection_errors"),
        timeouts=total("timeouts"),
        reply_errors=total("reply_errors"),
        consecutive_connect_failures=max(
            (f.consecutive_connect_failures for f in figures), default=0),
        next_connect_at=min(backing_off) if backing_off else None,
        primaries=primaries,
        map_refreshes=map_refreshes,
        map_refresh_failures=map_refresh_failures,
        moved=moved,
        asked=asked,
        retries=retries,
        nodes=dict(nodes),
    )
