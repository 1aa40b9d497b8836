"""``ClusterMap``: a cluster client's slot map, and its refresh: asked of any node known
(seeds included), one refresh at a time, the others waiting for it."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence

import trio

from .._errors import RedisConnectionError, RedisReplyError, StoreError
from ._client import RedisClient
from ._slots import Address, SlotMap, parse_shards, parse_slots

log = logging.getLogger("asyncendpoints_trio.redis")


def unsent_error(message: str) -> RedisConnectionError:
    error = RedisConnectionError(message)
    error.sent = False  # nothing was sent: the caller may try again
    return error


class ClusterMap:
    """``owner(slot)``; ``stale`` after a redirect or failure: ``ensure()`` reloads it."""

    def __init__(self, seeds: Sequence[Address], client_for: Callable[[Address], RedisClient],
                 failing: Callable[[Address], bool], *, tls: bool) -> None:
        """``client_for(address)``: the node's pool; ``failing(address)``: whether its
        last connect failed (such nodes are asked last)."""
        self._seeds = list(dict.fromkeys(seeds))
        self._client_for = client_for
        self._failing_node = failing
        self._tls = tls
        self._map = SlotMap()
        self._primaries: list[Address] = []
        self.loaded = False
        self.stale = True
        self._prefer: Address | None = None  # ask this node first at the next refresh
        self._refreshing: trio.Event | None = None
        self._failing = False
        self.refreshes = 0
        self.refresh_failures = 0

    @property
    def seeds(self) -> list[Address]:
        return list(self._seeds)

    def primaries(self) -> list[Address]:
        return list(self._primaries)

    def owner(self, slot: int | None) -> Address:
        """The slot's primary; for None (a keyless call), any primary."""
        if slot is None:
            return random.choice(self._primaries)
        owner = self._map.owners[slot]
        if owner is None:
            self.stale = True
            raise unsent_error(f"no cluster node serves slot {slot}")
        return owner

    def moved(self, slot: int | None, address: Address) -> None:
        """A ``MOVED``: this slot at once, the whole map before the next call."""
        if slot is not None:
            self._map.owners[slot] = address
            if address not in self._primaries:
                self._primaries = sorted({*self._primaries, address})
        self.mark_stale(address)

    def mark_stale(self, prefer: Address | None = None) -> None:
        self.stale = True
        if prefer is not None:
            self._prefer = prefer

    async def ensure(self) -> None:
        if self.stale or not self.loaded:
            await self.refresh()

    async def refresh(self) -> None:
        """Load the map now; if a refresh is running, wait for that one instead."""
        if self._refreshing is not None:
            await self._refreshing.wait()
            if not self.loaded:
                raise unsent_error("no Redis cluster node answered for the slot map")
            return
        done = self._refreshing = trio.Event()
        try:
            await self._load()
        finally:
            self._refreshing = None
            done.set()

    def _order(self) -> list[Address]:
        known = self._map.primaries()
        random.shuffle(known)
        others = sorted(self._map.nodes - set(known))
        order = [*([self._prefer] if self._prefer else []), *known, *others, *self._seeds]
        # Nodes failing to connect are asked last: they most likely are why we ask.
        return sorted(dict.fromkeys(order), key=self._failing_node)

    async def _load(self) -> None:
        problems: list[str] = []
        for address in self._order():
            try:
                slot_map = await self._ask(address)
            except StoreError as exc:
                problems.append(f"{address[0]}:{address[1]}: {exc}")
                continue
            if not slot_map.covered():
                problems.append(f"{address[0]}:{address[1]}: serves no slots yet")
                continue
            changed = sum(a != b for a, b in zip(self._map.owners, slot_map.owners,
                                                 strict=True))
            if self.loaded and changed:
                log.info("Redis cluster: %d slots have a new primary (now %d primaries)",
                         changed, len(slot_map.primaries()))
            elif self._failing:
                log.warning("Redis cluster: the slot map is readable again")
            self._map, self._primaries = slot_map, slot_map.primaries()
            self.loaded, self.stale, self._prefer, self._failing = True, False, None, False
            self.refreshes += 1
            return
        self.refresh_failures += 1
        # One warning per outage, not one per try.
        log.log(logging.DEBUG if self._failing else logging.WARNING,
                "Redis cluster: no node gave a slot map (%s)", "; ".join(problems[:3]))
        self._failing = True
        raise unsent_error("no Redis cluster node gave a slot map: " + "; ".join(problems[:6]))

    async def _ask(self, address: Address) -> SlotMap:
        client = self._client_for(address)
        try:
            reply = await client.execute("CLUSTER", "SHARDS")
        except RedisReplyError as exc:
            if "cluster support disabled" in str(exc):
                raise
            # Before Redis 7.0: no CLUSTER SHARDS.
            return parse_slots(await client.execute("CLUSTER", "SLOTS"), address)
        return parse_shards(reply, address, tls=self._tls)
