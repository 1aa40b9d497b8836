"""``RedisAPI``: what the store needs of a Redis client, whatever the deployment.

Three clients give it: ``RedisClient`` (one server), ``ClusterClient`` (Redis Cluster: routes
each call by its keys' slot, follows ``MOVED``/``ASK``) and ``SentinelClient`` (the primary
that Sentinel names, followed through failovers). The store is written against this protocol
only, so it never knows which one it holds.

Routing, for the clients that route: a command goes to the node of its first key (for
``EVAL``/``EVALSHA``, the first of its declared keys); a command without keys goes to any
primary. Calls in one ``pipeline`` or ``evalsha_many`` may go to several nodes; replies still
come back in call order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from ._connection import Arg, Command
from ._url import RedisSettings


@dataclass(frozen=True, slots=True)
class ReplicaWait:
    """Ask for ``WAIT replicas timeout`` after a write, on the connection that wrote it, in
    the same round trip. Fewer acknowledgements than ``replicas`` within ``timeout`` seconds
    raise ``ReplicationTimeout`` (the write itself was applied on the primary)."""

    replicas: int
    timeout: float


class SubscriptionAPI(Protocol):
    def __aiter__(self) -> AsyncIterator[tuple[bytes, bytes]]: ...


class RedisAPI(Protocol):
    @property
    def settings(self) -> RedisSettings:
        """For a routing client: the settings every node connection is made with."""

    @property
    def clustered(self) -> bool:
        """True when keys of different hash slots may live on different servers: scripts
        then publish with ``SPUBLISH`` and subscriptions are sharded (``SSUBSCRIBE``)."""

    def sibling(self, *, max_connections: int) -> RedisAPI:
        """A new client of the same kind and target with another pool size (per node)."""

    async def execute(self, *args: Arg) -> Any: ...

    async def pipeline(self, commands: Sequence[Command]) -> list[Any]: ...

    async def blocking(self, *args: Arg, timeout: float) -> Any: ...

    async def blocking_after(self, prelude: Sequence[Command], *args: Arg,
                             timeout: float) -> list[Any]: ...

    async def evalsha(self, script: Any, keys: Sequence[Arg] = (), args: Sequence[Arg] = (),
                      *, wait: ReplicaWait | None = None) -> Any: ...

    async def evalsha_many(self, calls: Sequence[Any], *,
                           wait: ReplicaWait | None = None) -> list[Any]:
        """With ``wait``: one ``WAIT`` per node written to, after that node's calls; a
        shortfall on any node raises ``ReplicationTimeout`` carrying all the replies."""

    def subscribe(self, *channels: str | bytes,
                  sharded: bool = False) -> AbstractAsyncContextManager[SubscriptionAPI]:
        """``sharded``: ``SSUBSCRIBE`` (Redis 7.0+); a routing client opens one connection
        per node that serves the channels' slots and merges their messages."""

    def statistics(self) -> Any: ...

    async def aclose(self) -> None: ...
