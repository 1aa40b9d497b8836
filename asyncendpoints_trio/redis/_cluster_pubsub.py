"""Pub/sub over a cluster: one subscription connection per node, merged into one stream.

Sharded channels (``SSUBSCRIBE``) live on the node serving their slot, so each node gets
the channels of its slots. Classic channels reach every node (``PUBLISH`` is broadcast over
the cluster bus), so they go to one node. Whatever ends one node's subscription (a cut
link, or the ``sunsubscribe`` a node sends when a slot moves away) ends the whole stream
with ``RedisConnectionError``: the caller subscribes again and finds the new owners.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeAlias

import trio

from .._errors import RedisConnectionError, StoreError
from ._client import Subscription

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
