"""``SentinelClient``: the primary that Redis Sentinel names, followed through failovers.

    redis = SentinelClient.from_url("redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/jobs")

Every call goes to a ``RedisClient`` pool on the current primary (see ``_sentinel_group``
for how it is found and followed). When the primary changes:

- calls in flight on the old one are cut (their connections closed) and raise
  ``RedisConnectionError``: like any cut call, they may or may not have run;
- subscriptions on the old one end with ``RedisConnectionError``: subscribe again;
- new calls go to the new primary, on a new pool.

Nothing that may have run is sent twice. The one retry: a call the node refused with
``READONLY`` (it was demoted to a replica, so nothing was written: a replica refuses every
write, and only reads ran) is sent once more to the primary the sentinels name now, if they
name another node. For a pipeline or a script batch, one ``READONLY`` reply sends the whole
batch again. A blocked pop the demotion ended (``UNBLOCKED``) took nothing and is sent again
the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import trio

from .._errors import RedisConnectionError, RedisReplyError, ReplicationTimeout
from ._api import ReplicaWait
from ._client import RedisClient, RedisStatistics, Script, ScriptCall, Subscription
from ._connection import Arg, Command
from ._sentinel_group import SentinelGroup, _text
from ._sentinel_url import SentinelConfig, parse_sentinel_url
from ._url import RedisSettings

T = TypeVar("T")
# Replies that mean "this node is a replica now, and the call did not run": READONLY for a
# write, UNBLOCKED for a pop that the demotion ended before it took anything.
_DEMOTED = frozenset({"READONLY", "UNBLOCKED"})
_READONLY = frozenset({"READONLY"})


@dataclass(frozen=True, slots=True)
class SentinelStatistics:
    service: str
    primary: str | None  # host:port of the primary in use; None before the first discovery
    sentinels: tuple[str, ...]  # in the order they are asked next
    failovers_followed: int  # changes of primary since the first discovery
    discoveries: int  # rounds of questions to the sentinels, and how many found no primary
    discovery_failures: int
    switch_messages: int  # +switch-master messages about this service
    monitoring: bool  # the +switch-master subscription is open now
    readonly_retries: int  # calls refused by a demoted node and sent to the new primary
    pool: RedisStatistics | None  # this client's pool on the primary


def _demotion(exc: object, kinds: frozenset[str]) -> bool:
    return isinstance(exc, RedisReplyError) and exc.kind in kinds


def _any_demotion(replies: object, kinds: frozenset[str]) -> bool:
    return isinstance(replies, list) and any(_demotion(reply, kinds) for reply in replies)


class SentinelClient:
    """A ``RedisAPI`` on the primary of ``config.service``; connects lazily.

    Usable as ``async with SentinelClient(config) as redis:``, or call ``aclose()``.
    """

    def __init__(self, config: SentinelConfig, *, group: SentinelGroup | None = None) -> None:
        self._config = config
        self._group = group if group is not None else SentinelGroup(config)
        self._pool: RedisClient | None = None
        self._pool_epoch = -1
        self._retired: list[RedisClient] = []
        self._calls: set[trio.CancelScope] = set()  # calls and subscriptions in flight
        self._readonly_retries = 0
        self._closed = False
        self._group.listeners.add(self._primary_changed)

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> SentinelClient:
        return cls(parse_sentinel_url(url, **overrides))

    @property
    def config(self) -> SentinelConfig:
        return self._config

    @property
    def settings(self) -> RedisSettings:
        """The data nodes' settings, with the current primary's address once it is known."""
        primary = self._group.primary
        if primary is None:
            return self._config.node
        return self._config.node_settings(primary)

    def describe(self) -> str:
        """Where we connect, for messages and logs (never carries credentials)."""
        sentinels = ",".join(_text(sentinel) for sentinel in self._config.sentinels)
        primary = self._group.primary
        now = f", primary {_text(primary)}" if primary is not None else ""
        return (f"redis+sentinel://{sentinels}/{self._config.service}/{self._config.node.db}"
                f"{now}")

    @property
    def clustered(self) -> bool:
        return False  # one primary holds every key

    def sibling(self, *, max_connections: int) -> SentinelClient:
        """Another pool size, the same sentinels: the two follow a failover together."""
        config = dataclasses.replace(self._config, node=dataclasses.replace(
            self._config.node, max_connections=max_connections))
        return SentinelClient(config, group=self._group)

    # -- commands --------------------------------------------------------------------------

    async def execute(self, *args: Arg) -> Any:
        return await self._call(lambda pool: pool.execute(*args))

    async def pipeline(self, commands: Sequence[Command]) -> list[Any]:
        return await self._call(lambda pool: pool.pipeline(commands))

    async def blocking(self, *args: Arg, timeout: float) -> Any:
        return await self._call(lambda pool: pool.blocking(*args, timeout=timeout))

    async def blocking_after(self, prelude: Sequence[Command], *args: Arg,
                             timeout: float) -> list[Any]:
        # READONLY only: after UNBLOCKED the prelude had run, so it must not be sent again.
        return await self._call(
            lambda pool: pool.blocking_after(prelude, *args, timeout=timeout), _READONLY)

    async def evalsha(self, script: Script, keys: Sequence[Arg] = (),
                      args: Sequence[Arg] = (), *, wait: ReplicaWait | None = None) -> Any:
        return await self._call(lambda pool: pool.evalsha(script, keys, args, wait=wait))

    async def evalsha_many(self, calls: Sequence[ScriptCall], *,
                           wait: ReplicaWait | None = None) -> list[Any]:
        return await self._call(lambda pool: pool.evalsha_many(calls, wait=wait))

    async def _call(self, run: Callable[[RedisClient], Awaitable[T]],
                    demotions: frozenset[str] = _DEMOTED) -> T:
        pool, epoch = await self._pool_now()
        try:
            reply = await self._guarded(epoch, lambda: run(pool))
        except (RedisReplyError, ReplicationTimeout) as exc:
            refused = exc.reply if isinstance(exc, ReplicationTimeout) else exc
            if not (_demotion(refused, demotions) or _any_demotion(refused, demotions)):
                raise
            return await self._after_demotion(run, epoch, exc)
        except RedisConnectionError:
            self._group.suspect(epoch)
            raise
        if _any_demotion(reply, demotions):
            return await self._after_demotion(run, epoch, None)
        return reply

    async def _after_demotion(self, run: Callable[[RedisClient], Awaitable[T]], epoch: int,
                              exc: Exception | None) -> T:
        demoted = self._group.primary
        self._group.demoted(epoch)
        pool, new_epoch = await self._pool_now()
        if new_epoch == epoch:  # the sentinels name no other node (yet)
            raise RedisConnectionError(
                f"Sentinel: the primary of {self._config.service!r} "
                f"({_text(demoted) if demoted else '?'}) was demoted, and no new primary "
                "is known yet") from exc
        self._readonly_retries += 1
        try:
            return await self._guarded(new_epoch, lambda: run(pool))
        except RedisConnectionError:
            self._group.suspect(new_epoch)
            raise

    async def _guarded(self, epoch: int, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, cut short with ``RedisConnectionError`` if the primary changes."""
        if epoch != self._group.epoch:
            await trio.lowlevel.checkpoint()
            raise self._changed_error(cut=False)
        scope = trio.CancelScope()
        self._calls.add(scope)
        try:
            with scope:
                return await call()
        finally:
            self._calls.discard(scope)
        # Only our own cancel gets here (a caller's cancellation is not caught by our
        # scope): the call was cut, and its connection closed, by a change of primary.
        raise self._changed_error(cut=True)

    def _changed_error(self, *, cut: bool) -> RedisConnectionError:
        now = self._group.primary
        what = "the call was cut and may or may not have run" if cut else "nothing was sent"
        return RedisConnectionError(
            f"Sentinel: the primary of {self._config.service!r} changed "
            f"(now {_text(now) if now else 'unknown'}); {what}")

    async def _pool_now(self) -> tuple[RedisClient, int]:
        if self._closed:
            raise RedisConnectionError("the Redis client is closed")
        while self._retired:
            await self._retired.pop().aclose()
        address, epoch = await self._group.current()
        if self._pool is None or self._pool_epoch != epoch:
            if self._pool is not None:
                self._retired.append(self._pool)
            self._pool = RedisClient(self._config.node_settings(address))
            self._pool_epoch = epoch
        return self._pool, epoch

    def _primary_changed(self) -> None:
        # Synchronous, called by the group as it adopts the new primary: nothing can start
        # on the old one after this.
        for scope in self._calls:
            scope.cancel()
        if self._pool is not None:
            self._retired.append(self._pool)
            self._pool = None

    # -- pub/sub ---------------------------------------------------------------------------

    @asynccontextmanager
    async def subscribe(self, *channels: str | bytes,
                        sharded: bool = False) -> AsyncIterator[SentinelSubscription]:
        """On the primary; ends with ``RedisConnectionError`` when the primary changes."""
        pool, epoch = await self._pool_now()
        try:
            async with pool.subscribe(*channels, sharded=sharded) as inner:
                yield SentinelSubscription(self, inner, epoch)
        except RedisConnectionError:
            self._group.suspect(epoch)
            raise

    # -- lifetime --------------------------------------------------------------------------

    def statistics(self) -> SentinelStatistics:
        group = self._group
        return SentinelStatistics(
            service=self._config.service,
            primary=None if group.primary is None else _text(group.primary),
            sentinels=tuple(_text(sentinel) for sentinel in group.sentinels),
            failovers_followed=group.failovers,
            discoveries=group.discoveries,
            discovery_failures=group.discovery_failures,
            switch_messages=group.switch_messages,
            monitoring=group.monitoring,
            readonly_retries=self._readonly_retries,
            pool=None if self._pool is None else self._pool.statistics(),
        )

    async def aclose(self) -> None:
        """Close idle connections now (calls still running close theirs when they end);
        the last client of a group also ends its ``+switch-master`` subscription."""
        self._closed = True
        self._group.listeners.discard(self._primary_changed)
        pools = [*self._retired, *([self._pool] if self._pool is not None else [])]
        self._retired.clear()
        for pool in pools:
            await pool.aclose()
        if not self._group.listeners:
            await self._group.stop_monitor()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> SentinelClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()


class SentinelSubscription:
    """A subscription on the primary; iterate for ``(channel, data)``."""

    def __init__(self, client: SentinelClient, inner: Subscription, epoch: int) -> None:
        self._client = client
        self._inner = inner
        self._epoch = epoch

    @property
    def channels(self) -> tuple[str | bytes, ...]:
        return self._inner.channels

    def __aiter__(self) -> SentinelSubscription:
        return self

    async def __anext__(self) -> tuple[bytes, bytes]:
        return await self._client._guarded(self._epoch, self._inner.__anext__)
