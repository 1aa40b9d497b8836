"""``ClusterClient``: Redis Cluster, on one ``RedisClient`` (one pool) per node.

Each call goes to the primary serving the hash slot of its first key (``_slots``); keyless
calls to any primary. The slot map comes from ``CLUSTER SHARDS`` (``CLUSTER SLOTS`` before
Redis 7), asked of any node we know, seeds included; one refresh runs at a time and the
others wait for it.

What is followed and retried, at most ``_REDIRECTS`` redirects and ``_UNAVAILABLE_TRIES``
tries after failures per call:

- ``MOVED``: the slot has a new owner. The map entry is updated at once, the call goes
  there, and the next call refreshes the whole map first (one move often means more).
- ``ASK``: the slot is migrating and this key is already at the target: ``ASKING`` and the
  command go to the target on one connection, once.
- ``TRYAGAIN``, ``CLUSTERDOWN``, and connection failures where nothing was sent (refused,
  connect timeout, a node backing off): the map is refreshed and the call tried again after
  a short backoff, for about a second in all. That covers a failover once the replica is
  promoted; during the gap before, calls fail with ``RedisConnectionError``.

Not retried: a connection that failed after the command was written (it may have run). It
raises ``RedisConnectionError`` and the map is refreshed before the next call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Final, TypeVar

import trio

from .._backoff import backoff_delay
from .._errors import (
    ConfigurationError,
    RedisConnectionError,
    RedisReplyError,
)
from ._api import ReplicaWait
from ._client import RedisClient, Script, ScriptCall
from ._cluster_batch import RETRY_KINDS, GroupRunner, asking_scripts, scatter, unavailable
from ._cluster_map import ClusterMap, unsent_error
from ._cluster_pubsub import ClusterSubscription, open_subscription
from ._cluster_stats import ClusterStatistics as ClusterStatistics
from ._cluster_stats import cluster_statistics
from ._cluster_url import parse_cluster_url
from ._connection import Arg, Command
from ._slots import Address, command_slot, key_slot
from ._url import RedisSettings

T = TypeVar("T")

_REDIRECTS: Final = 5  # MOVED/ASK followed per call; one more raises
# Tries per call that meet TRYAGAIN, CLUSTERDOWN or "nothing was sent"; the last one raises.
# Counted apart from redirects: in a migrating slot every try may be an ASK, then TRYAGAIN.
_UNAVAILABLE_TRIES: Final = 5
_BACKOFF_BASE: Final = 0.05  # 0.05, 0.1, 0.2, 0.4 (times 0.5-1.0): about a second in all
_BACKOFF_CAP: Final = 0.4


def _redirect(error: RedisReplyError, via: Address) -> Address | None:
    """The address of a ``MOVED``/``ASK`` reply (``MOVED 3999 host:port``)."""
    if error.kind not in ("MOVED", "ASK"):
        return None
    parts = str(error).split()
    if len(parts) != 3:
        return None
    host, _, port = parts[2].rpartition(":")
    if not port.isdigit():
        return None
    return (host or via[0], int(port))


def _raise_if_error(reply: Any) -> Any:
    if isinstance(reply, RedisReplyError):
        raise reply
    return reply


class ClusterClient:
    """A Redis Cluster client: ``ClusterClient(settings, seeds)`` or ``from_url``.

    ``settings`` is the template every node connection is made with (host and port
    replaced by the node's); ``max_connections`` is per node.
    """

    def __init__(self, settings: RedisSettings, seeds: Sequence[Address]) -> None:
        if not seeds:
            raise ConfigurationError("a cluster client needs at least one seed node")
        self._settings = settings
        self._clients: dict[Address, RedisClient] = {}
        self._slots = ClusterMap(seeds, self._client, self._failing, tls=settings.tls)
        self._closed = False
        self._moved = 0
        self._asked = 0
        self._retries = 0

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> ClusterClient:
        settings, seeds = parse_cluster_url(url)
        try:
            settings = dataclasses.replace(settings, **overrides)
        except TypeError as exc:  # an unknown keyword
            raise ConfigurationError(str(exc)) from None
        return cls(settings, seeds)

    def describe(self) -> str:
        """Where we connect, for messages and logs (never carries credentials)."""
        seeds = ",".join(f"{host}:{port}" for host, port in self._slots.seeds)
        return f"redis+cluster://{seeds}/"

    @property
    def settings(self) -> RedisSettings:
        return self._settings

    @property
    def clustered(self) -> bool:
        return True

    def sibling(self, *, max_connections: int) -> ClusterClient:
        known = [*self._slots.primaries(), *self._slots.seeds]
        return ClusterClient(dataclasses.replace(self._settings, max_connections=max_connections),
                             known)

    # -- nodes and the map ---------------------------------------------------------------

    def _closed_error(self) -> RedisConnectionError:
        return unsent_error("the Redis cluster client is closed")

    def _client(self, address: Address) -> RedisClient:
        client = self._clients.get(address)
        if client is None:
            if self._closed:
                raise self._closed_error()
            client = RedisClient(dataclasses.replace(
                self._settings, host=address[0], port=address[1]))
            self._clients[address] = client
        return client

    def _failing(self, address: Address) -> bool:
        client = self._clients.get(address)
        return client is not None and client.statistics().consecutive_connect_failures > 0

    async def node_for(self, key: Arg) -> RedisClient:
        """The client of the primary serving ``key``'s slot (as the map has it now)."""
        return await self._node(key_slot(key))

    async def primaries(self) -> list[RedisClient]:
        """The clients of every primary serving slots (as the map has it now)."""
        await self._slots.ensure()
        return [self._client(address) for address in self._slots.primaries()]

    async def _node(self, slot: int | None) -> RedisClient:
        await self._slots.ensure()
        return self._client(self._slots.owner(slot))

    def _lookup(self, slot: int | None) -> RedisClient:
        return self._client(self._slots.owner(slot))

    async def _ensure_map(self) -> None:
        await self._slots.ensure()

    def _mark_stale(self, prefer: Address | None = None) -> None:
        self._slots.mark_stale(prefer)

    async def refresh(self) -> None:
        """Load the slot map now; if a refresh is running, wait for that one instead."""
        await self._slots.refresh()

    # -- routing ---------------------------------------------------------------------------

    async def _backoff(self, failures: int) -> None:
        if self._closed:  # every retry passes here: a closed client stops retrying
            raise self._closed_error()
        self._retries += 1
        await trio.sleep(backoff_delay(failures, _BACKOFF_CAP, base=_BACKOFF_BASE))

    async def _routed(self, slot: int | None,
                      attempt: Callable[[RedisClient, bool], Awaitable[T]]) -> T:
        """Run ``attempt(node, asking)`` on the slot's node, following redirects."""
        target: RedisClient | None = None  # set by a redirect: go straight there
        asking = False
        failures = redirects = 0
        while True:
            try:
                node = target if target is not None else await self._node(slot)
                was_asking, target, asking = asking, None, False
                return await attempt(node, was_asking)
            except RedisReplyError as exc:
                follow = self._follow(exc, node, slot, was_asking)
                if follow is not None:
                    redirects += 1
                    if redirects > _REDIRECTS:
                        # The cluster is moving slots faster than we follow.
                        raise unavailable(exc) from exc
                    target, asking = follow
                elif exc.kind in RETRY_KINDS:
                    self._mark_stale()
                    if failures + 1 >= _UNAVAILABLE_TRIES:
                        raise unavailable(exc) from exc
                    failures += 1
                    await self._backoff(failures)
                else:
                    raise
            except RedisConnectionError as exc:
                self._mark_stale()
                if exc.sent or failures + 1 >= _UNAVAILABLE_TRIES:
                    raise
                failures += 1
                await self._backoff(failures)

    async def execute(self, *args: Arg) -> Any:
        async def attempt(node: RedisClient, asking: bool) -> Any:
            if asking:
                return _raise_if_error((await node.pipeline([("ASKING",), args]))[1])
            return await node.execute(*args)
        return await self._routed(command_slot(args), attempt)

    async def blocking(self, *args: Arg, timeout: float) -> Any:
        async def attempt(node: RedisClient, asking: bool) -> Any:
            if asking:
                return (await node.blocking_after([("ASKING",)], *args, timeout=timeout))[1]
            return await node.blocking(*args, timeout=timeout)
        return await self._routed(command_slot(args), attempt)

    async def blocking_after(self, prelude: Sequence[Command], *args: Arg,
                             timeout: float) -> list[Any]:
        slot = command_slot(args)
        for command in prelude:
            other = command_slot(command)
            if other is not None and other != slot:
                raise ValueError(f"blocking_after: {command[0]!r} is in slot {other}, the "
                                 f"blocking command in slot {slot}: they must share one slot")

        async def attempt(node: RedisClient, asking: bool) -> list[Any]:
            if not asking:
                return await node.blocking_after(prelude, *args, timeout=timeout)
            asked: list[Command] = []
            for command in prelude:
                asked += [("ASKING",), command]
            replies = await node.blocking_after([*asked, ("ASKING",)], *args, timeout=timeout)
            return [*replies[1:len(asked):2], replies[-1]]
        return await self._routed(slot, attempt)

    async def evalsha(self, script: Script, keys: Sequence[Arg] = (),
                      args: Sequence[Arg] = (), *, wait: ReplicaWait | None = None) -> Any:
        slot = key_slot(keys[0]) if keys else None

        async def attempt(node: RedisClient, asking: bool) -> Any:
            if asking:
                replies = await asking_scripts(node, [(script, keys, args)], wait)
                return _raise_if_error(replies[0])
            return await node.evalsha(script, keys, args, wait=wait)
        return await self._routed(slot, attempt)

    # -- batches ---------------------------------------------------------------------------

    async def pipeline(self, commands: Sequence[Command]) -> list[Any]:
        """Commands grouped by node, the groups run at once; replies in call order (errors
        in place). A connection failure on any node raises after every group is done."""
        async def run(node: RedisClient, indices: list[int], asking: bool) -> list[Any]:
            if not asking:
                return await node.pipeline([commands[i] for i in indices])
            asked: list[Command] = []
            for i in indices:
                asked += [("ASKING",), commands[i]]
            return (await node.pipeline(asked))[1::2]
        return await self._scatter([command_slot(c) for c in commands], run)

    async def evalsha_many(self, calls: Sequence[ScriptCall], *,
                           wait: ReplicaWait | None = None) -> list[Any]:
        """As ``RedisClient.evalsha_many``, per node; with ``wait``, each node's group ends
        with its ``WAIT``, and a shortfall on any raises ``ReplicationTimeout`` with every
        reply."""
        async def run(node: RedisClient, indices: list[int], asking: bool) -> list[Any]:
            group = [calls[i] for i in indices]
            if asking:
                return await asking_scripts(node, group, wait)
            return await node.evalsha_many(group, wait=wait)
        return await self._scatter([key_slot(keys[0]) if keys else None
                                    for _, keys, _ in calls], run)

    async def _scatter(self, slots: list[int | None], run: GroupRunner) -> list[Any]:
        return await scatter(self, slots, run, redirects=_REDIRECTS,
                             unavailable_tries=_UNAVAILABLE_TRIES)

    def _follow(self, error: RedisReplyError, via: RedisClient, slot: int | None,
                asking: bool) -> tuple[RedisClient, bool] | None:
        """Where a ``MOVED``/``ASK`` reply sends the call: (node, asking); None when it is
        no redirect, or an ``ASK`` after ``ASKING`` (not followed twice)."""
        address = _redirect(error, (via.settings.host, via.settings.port))
        if address is None:
            return None
        if error.kind == "MOVED":
            self._moved += 1
            self._slots.moved(slot, address)
            return self._client(address), False
        if asking:
            return None
        self._asked += 1
        return self._client(address), True

    # -- pub/sub ---------------------------------------------------------------------------

    def subscribe(self, *channels: str | bytes, sharded: bool = False
                  ) -> AbstractAsyncContextManager[ClusterSubscription]:
        """``sharded``: ``SSUBSCRIBE`` on each node serving the channels' slots, messages
        merged. Classic channels: ``SUBSCRIBE`` on one node (the first channel's), which
        hears every ``PUBLISH`` in the cluster. Any node's failure raises
        ``RedisConnectionError`` from the iteration: subscribe again."""
        if not channels:
            raise ValueError("subscribe needs at least one channel")
        return open_subscription(self, channels, sharded, tries=_UNAVAILABLE_TRIES)

    # -- lifetime --------------------------------------------------------------------------

    def statistics(self) -> ClusterStatistics:
        return cluster_statistics(
            {client.settings.address: client.statistics()
             for client in self._clients.values()},
            primaries=len(self._slots.primaries()), map_refreshes=self._slots.refreshes,
            map_refresh_failures=self._slots.refresh_failures, moved=self._moved,
            asked=self._asked, retries=self._retries)

    async def aclose(self) -> None:
        self._closed = True
        for client in self._clients.values():
            await client.aclose()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> ClusterClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()


