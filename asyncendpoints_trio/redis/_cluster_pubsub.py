"""Pub/sub over a cluster: one subscription connection per node, merged into one stream.

Sharded channels (``SSUBSCRIBE``) live on the node serving their slot, so each node gets
the channels of its slots. Classic channels reach every node (``PUBLISH`` is broadcast over
the cluster bus), so they go to one node. Whatever ends one node's subscription (a cut
link, or the ``sunsubscribe`` a node sends when a slot moves away) ends the whole stream
with ``RedisConnectionError``: the caller subscribes again and finds the new owners.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, TypeAlias

import trio

from .._errors import RedisConnectionError, RedisReplyError, StoreError
from ._client import RedisClient, Subscription
from ._cluster_batch import RETRY_KINDS
from ._slots import key_slot

if TYPE_CHECKING:
    from ._cluster import ClusterClient

Message: TypeAlias = tuple[bytes, bytes]


class ClusterSubscription:
    """``async for channel, data in subscription``: messages of every node, as they come."""

    def __init__(self, receive: trio.MemoryReceiveChannel[Message | StoreError],
                 channels: Sequence[str | bytes], on_failure: Callable[[], None]) -> None:
        self._receive = receive
        self._channels = tuple(channels)
        self._on_failure = on_failure

    @property
    def channels(self) -> tuple[str | bytes, ...]:
        return self._channels

    def __aiter__(self) -> ClusterSubscription:
        return self

    async def __anext__(self) -> Message:
        try:
            item = await self._receive.receive()
        except trio.EndOfChannel:
            item = RedisConnectionError("every node's subscription ended")
        if isinstance(item, StoreError):
            self._on_failure()  # a slot moved or a node went away: the map is out of date
            raise item
        return item


async def pump(subscription: Subscription,
               send: trio.MemorySendChannel[Message | StoreError]) -> None:
    """Forward one node's messages; its failure is forwarded too, as the last item."""
    async with send:
        try:
            async for message in subscription:
                await send.send(message)
        except StoreError as exc:
            await send.send(exc)


@asynccontextmanager
async def open_subscription(router: ClusterClient, channels: Sequence[str | bytes],
                            sharded: bool, *, tries: int) -> AsyncIterator[ClusterSubscription]:
    """Subscribe on every node the channels need (again, bounded, if the map was out of
    date), then merge their messages."""
    failures = 0
    while True:
        stack = AsyncExitStack()
        try:
            subscriptions = [
                await stack.enter_async_context(node.subscribe(*group, sharded=sharded))
                for node, group in await _channel_groups(router, channels, sharded)]
            break
        except (RedisConnectionError, RedisReplyError) as exc:
            await stack.aclose()
            router._mark_stale()
            retry = isinstance(exc, RedisConnectionError) or exc.kind in (
                "MOVED", "ASK", *RETRY_KINDS)
            if not retry or failures + 1 >= tries:
                raise
            failures += 1
            await router._backoff(failures)
        except BaseException:
            await stack.aclose()
            raise
    error: BaseException | None = None
    async with stack:
        send, receive = trio.open_memory_channel[Message | StoreError](0)
        async with trio.open_nursery() as nursery:
            async with send:
                for subscription in subscriptions:
                    nursery.start_soon(pump, subscription, send.clone())
            try:
                yield ClusterSubscription(receive, channels, router._mark_stale)
            except BaseException as exc:
                # Raised again outside the nursery: inside, it would come out wrapped in an
                # ExceptionGroup, and a caller's ``except StoreUnavailable`` would miss it.
                error = exc
            finally:
                nursery.cancel_scope.cancel()
        if error is not None:
            raise error


async def _channel_groups(router: ClusterClient, channels: Sequence[str | bytes],
                          sharded: bool) -> list[tuple[RedisClient, list[str | bytes]]]:
    if not sharded:
        return [(await router._node(key_slot(channels[0])), list(channels))]
    groups: dict[int, tuple[RedisClient, list[str | bytes]]] = {}
    for channel in channels:
        node = await router._node(key_slot(channel))
        groups.setdefault(id(node), (node, []))[1].append(channel)
    return list(groups.values())
