"""``SentinelGroup``: which node is the primary now, as the sentinels tell it.

One group is shared by a ``SentinelClient`` and its siblings (a store's data and control
pools), so they follow a failover together and open one ``+switch-master`` subscription.

How the primary is found: the sentinels are asked in turn (``SENTINEL
get-master-addr-by-name``), each under the connect and read timeouts; the one that answered
moves to the front. The node named must then say ``ROLE`` = master: a sentinel that has not
heard of a failover yet (or was partitioned through it) still names the demoted node.

How it is followed, two ways, because either alone has a gap:

- a subscription to a sentinel's ``+switch-master`` channel, in a background task, adopts a
  new primary the moment the sentinels promote it;
- a connection error on the primary marks it suspect, and a ``READONLY`` reply marks it
  demoted: the next call asks the sentinels again (after a failed discovery, not before a
  backoff of ``backoff_initial`` doubling to ``backoff_max``; a demotion does not wait).

The background task is a Trio *system task*, started by the first call and cancelled when
the last client of the group closes. A system task because the group has no nursery of its
own to borrow: the clients are made synchronously (``open_client(url)``) and handed to a
store that may be used from any task. It never raises (a system task that raised would crash
the run): every error it meets is logged and followed by a backoff.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import trio

from .._backoff import backoff_delay
from .._errors import RedisConnectionError, RedisReplyError, StoreError
from ._client import RedisClient
from ._connection import open_connection
from ._sentinel_url import Address, SentinelConfig

log = logging.getLogger("asyncendpoints_trio.redis")

SWITCH_CHANNEL = "+switch-master"


def _text(address: Address) -> str:
    host = f"[{address[0]}]" if ":" in address[0] else address[0]
    return f"{host}:{address[1]}"


class SentinelGroup:
    def __init__(self, config: SentinelConfig) -> None:
        self.config = config
        self.sentinels = list(config.sentinels)
        self.primary: Address | None = None
        self.epoch = 0  # grows with every change of primary
        self.stale = False  # the primary may be gone: ask the sentinels before the next call
        self.failovers = 0
        self.discoveries = 0
        self.discovery_failures = 0
        self.switch_messages = 0
        self.monitoring = False
        # Told (synchronously) of every change of primary: the clients' own switch.
        self.listeners: set[Callable[[], None]] = set()
        self._discovery: trio.Event | None = None
        self._failures = 0
        self._next_discovery = -math.inf
        self._last_error = ""
        self._monitor: trio.CancelScope | None = None
        self._monitor_done = trio.Event()

    # -- the primary to use ------------------------------------------------------------------

    async def current(self) -> tuple[Address, int]:
        """The primary to send the next call to, and its epoch."""
        self._start_monitor()
        while True:
            now = trio.current_time()
            primary = self.primary
            if primary is not None and (not self.stale or now < self._next_discovery):
                # Suspect but asked too recently: the node's own pool fails fast meanwhile.
                return primary, self.epoch
            if primary is None and now < self._next_discovery:
                await trio.lowlevel.checkpoint()
                raise RedisConnectionError(
                    f"Sentinel: no primary known for {self.config.service!r}; asking again "
                    f"in {self._next_discovery - now:.2f}s (last error: {self._last_error})")
            if self._discovery is not None:  # one discovery at a time: wait for its answer
                await self._discovery.wait()
                continue
            await self._rediscover()

    def suspect(self, epoch: int) -> None:
        """A call on the primary of ``epoch`` failed on its connection."""
        if epoch == self.epoch:
            self.stale = True

    def demoted(self, epoch: int) -> None:
        """The primary of ``epoch`` answered READONLY: it is a replica now. Ask at once."""
        if epoch == self.epoch:
            self.stale = True
            self._next_discovery = -math.inf

    async def _rediscover(self) -> None:
        self._discovery = event = trio.Event()
        epoch = self.epoch
        try:
            self.discoveries += 1
            address = await self.discover()
        except RedisConnectionError as exc:
            self.discovery_failures += 1
            if not self._failures:
                log.warning("%s", exc)
            self._failures += 1
            self._last_error = str(exc)
            self._next_discovery = trio.current_time() + backoff_delay(
                self._failures, self.config.node.backoff_max,
                base=self.config.node.backoff_initial)
        else:
            self._failures = 0
            # Even a good answer is not asked for again at once: a flapping link must not
            # turn every failed call into a round of questions to the sentinels.
            self._next_discovery = trio.current_time() + self.config.node.backoff_initial
            if self.epoch == epoch:  # the monitor did not adopt a newer primary meanwhile
                self.adopt(address)
        finally:
            self._discovery = None
            event.set()

    async def discover(self) -> Address:
        """Ask the sentinels in turn for a primary that says it is one."""
        service = self.config.service
        problems: list[str] = []
        checked: dict[Address, str | None] = {}
        for sentinel in list(self.sentinels):
            try:
                reply = await self._ask(sentinel)
            except (RedisConnectionError, RedisReplyError) as exc:
                problems.append(f"sentinel {_text(sentinel)}: {exc}")
                continue
            if reply is None:
                problems.append(f"sentinel {_text(sentinel)} does not monitor {service!r}")
                continue
            address = (reply[0].decode(), int(reply[1]))
            if address not in checked:
                checked[address] = await self._not_primary(address)
            problem = checked[address]
            if problem is not None:
                problems.append(f"sentinel {_text(sentinel)} names {_text(address)}, "
                                f"which {problem}")
                continue
            if self.sentinels[0] != sentinel:  # the one that answered is asked first next
                self.sentinels.remove(sentinel)
                self.sentinels.insert(0, sentinel)
            return address
        raise RedisConnectionError(f"Sentinel: no primary found for {service!r}: "
                                   + "; ".join(problems))

    async def _ask(self, sentinel: Address) -> list[bytes] | None:
        connection = await open_connection(self.config.sentinel_settings(sentinel))
        try:
            reply: list[bytes] | None = await connection.execute(
                "SENTINEL", "get-master-addr-by-name", self.config.service)
            return reply
        finally:
            connection.abort()

    async def _not_primary(self, address: Address) -> str | None:
        """None if ``address`` is a primary; otherwise what it is."""
        try:
            connection = await open_connection(self.config.node_settings(address))
        except RedisConnectionError as exc:
            return f"cannot be reached ({exc})"
        try:
            role = await connection.execute("ROLE")
        except StoreError as exc:
            return f"did not answer ROLE ({exc})"
        finally:
            connection.abort()
        if role[0] != b"master":
            return f"is a {role[0].decode()}, not a primary"
        return None

    def adopt(self, address: Address) -> None:
        self.stale = False
        if address == self.primary:
            return
        old, self.primary = self.primary, address
        self.epoch += 1
        if old is not None:
            self.failovers += 1
            log.warning("Sentinel: the primary of %r moved from %s to %s; following it",
                        self.config.service, _text(old), _text(address))
        for listener in list(self.listeners):
            listener()

    # -- the +switch-master subscription ----------------------------------------------------

    def _start_monitor(self) -> None:
        if self._monitor is None and self.listeners:
            self._monitor = trio.CancelScope()
            self._monitor_done = trio.Event()
            trio.lowlevel.spawn_system_task(self._monitor_task, self._monitor,
                                            name=f"sentinel monitor {self.config.service}")

    async def stop_monitor(self) -> None:
        """Cancel the subscription task and wait until it is gone (its connection closed)."""
        monitor, self._monitor = self._monitor, None
        if monitor is None:
            await trio.lowlevel.checkpoint()
            return
        monitor.cancel()
        await self._monitor_done.wait()

    async def _monitor_task(self, scope: trio.CancelScope) -> None:
        try:
            with scope:
                failures = 0
                while True:
                    if await self._watch_one(self.sentinels[0], resubscribed=failures > 0):
                        failures = 0
                    failures += 1
                    # Next time the next sentinel, after a pause: a failing sentinel must
                    # not be hammered, and the group's calls still rediscover meanwhile.
                    self.sentinels.append(self.sentinels.pop(0))
                    await trio.sleep(backoff_delay(failures, self.config.node.backoff_max,
                                                   base=self.config.node.backoff_initial))
        finally:
            self.monitoring = False
            self._monitor_done.set()

    async def _watch_one(self, sentinel: Address, *, resubscribed: bool) -> bool:
        """Follow ``sentinel``'s switch messages until its link fails; True if it was
        subscribed for a while (so the next try needs no long pause)."""
        client = RedisClient(self.config.sentinel_settings(sentinel))
        subscribed = False
        try:
            async with client.subscribe(SWITCH_CHANNEL) as subscription:
                subscribed = self.monitoring = True
                if resubscribed and self.primary is not None:
                    # A switch may have happened while we were not listening.
                    self.stale = True
                async for _, data in subscription:
                    await self._on_switch(data)
        except (StoreError, ValueError, IndexError) as exc:
            log.debug("Sentinel %s: the %s subscription ended: %s", _text(sentinel),
                      SWITCH_CHANNEL, exc)
        except Exception:  # never out of a system task: it would crash the whole run
            log.exception("Sentinel %s: the %s subscription failed", _text(sentinel),
                          SWITCH_CHANNEL)
        finally:
            self.monitoring = False
            await client.aclose()
        return subscribed

    async def _on_switch(self, data: bytes) -> None:
        # "<service> <old ip> <old port> <new ip> <new port>"
        service, _, _, host, port = data.decode().split(" ")
        if service != self.config.service:
            return
        self.switch_messages += 1
        address = (host, int(port))
        problem = await self._not_primary(address)
        if problem is None:
            self.adopt(address)
        else:  # promoted and already gone? The sentinels will know better.
            log.warning("Sentinel: %s was promoted, but %s", _text(address), problem)
            self.stale = True
            self._next_discovery = -math.inf
