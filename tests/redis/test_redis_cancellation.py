"""Cancelled calls return their pool slot, and never leave a pop waiting on the server."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import trio
import trio.testing

from asyncendpoints_trio.redis import RedisClient, RedisSettings
from tests._redis_server import RedisServer
from tests.faultproxy import FaultProxy

SettingsFactory = Callable[..., RedisSettings]


async def blocked_clients(redis: RedisClient) -> int:
    info: bytes = await redis.execute("INFO", "clients")
    for line in info.splitlines():
        if line.startswith(b"blocked_clients:"):
            return int(line.split(b":")[1])
    raise AssertionError("INFO clients has no blocked_clients")


async def wait_blocked_clients(redis: RedisClient, count: int) -> None:
    # Polls the server, which has no event to wait on; every poll is a real round trip, and
    # the caller bounds the whole wait with fail_after.
    while await blocked_clients(redis) != count:
        pass


async def test_a_thousand_cancelled_calls_leak_no_slot(private_server: RedisServer, key: str,
                                                       settings: SettingsFactory) -> None:
    max_connections = 4
    async with RedisClient(settings(private_server.url,
                                    max_connections=max_connections)) as redis, \
               RedisClient(settings(private_server.url)) as observer:
        with trio.fail_after(15):
            cancelled = 0
            # Cancel at different moments: while waiting for a slot, while connecting, while
            # writing or reading, and at once.
            for round_ in range(10):
                async with trio.open_nursery() as nursery:
                    for _ in range(100):
                        nursery.start_soon(partial(redis.blocking, "BLPOP", key, timeout=0))
                    if round_ in (0, 9):
                        await trio.testing.wait_all_tasks_blocked()
                    else:
                        # A connect takes a handful of scheduling steps: this sweep cancels
                        # some calls in the middle of one.
                        for _ in range(round_):
                            await trio.lowlevel.checkpoint()
                    nursery.cancel_scope.cancel()
                cancelled += 100
            assert cancelled == 1000
            stats = redis.statistics()
            assert stats.connections_in_use == 0
            assert stats.slots_available == max_connections
            assert stats.tasks_waiting == 0
            assert stats.connections_open <= max_connections

            # All max_connections slots serve calls at once: max_connections pops block on
            # the server together. A leaked slot would keep the last one waiting for a slot.
            results: list[object] = []

            async def pop() -> None:
                results.append(await redis.blocking("BLPOP", key, timeout=0))

            await wait_blocked_clients(observer, 0)
            async with trio.open_nursery() as nursery:
                for _ in range(max_connections):
                    nursery.start_soon(pop)
                await wait_blocked_clients(observer, max_connections)
                assert redis.statistics().connections_in_use == max_connections
                await observer.execute("RPUSH", key, *range(max_connections))
        assert len(results) == max_connections
        assert redis.statistics().slots_available == max_connections


async def test_cancelled_blocking_pop_takes_no_later_push(private_server: RedisServer,
                                                          key: str,
                                                          settings: SettingsFactory) -> None:
    async with RedisClient(settings(private_server.url)) as redis:
        with trio.fail_after(10):
            for _ in range(5):
                with trio.CancelScope() as scope:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(partial(redis.blocking, "BLPOP", key, timeout=0))
                        await wait_blocked_clients(redis, 1)
                        scope.cancel()
                # No waiting for the server to notice: push at once.
                await redis.execute("RPUSH", key, *(f"item{n}" for n in range(20)))
                assert await redis.execute("LLEN", key) == 20
                popped = [await redis.blocking("BLPOP", key, timeout=1) for _ in range(20)]
                assert [item[1] for item in popped] == [f"item{n}".encode() for n in range(20)]
        assert redis.statistics().slots_available == redis.settings.max_connections


async def test_cancel_while_connecting_returns_the_slot(proxy: FaultProxy, redis_url: str,
                                                        settings: SettingsFactory) -> None:
    # db=1 makes the connect send SELECT; with the proxy stalled, the handshake hangs.
    proxy.stall()
    url = f"redis://127.0.0.1:{proxy.port}/1"
    async with RedisClient(settings(url, max_connections=1)) as redis:
        with trio.fail_after(5):
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(redis.execute, "PING")
                    await trio.testing.wait_all_tasks_blocked()
                    assert redis.statistics().slots_available == 0
                    scope.cancel()
            stats = redis.statistics()
            assert (stats.slots_available, stats.connections_open) == (1, 0)
            assert stats.next_connect_at is None  # a cancelled connect is not a failure
            proxy.resume()
            assert await redis.execute("PING") == b"PONG"


async def test_cancelled_reply_is_never_read_as_the_next_answer(
        proxy: FaultProxy, key: str, settings: SettingsFactory) -> None:
    async with RedisClient(settings(f"redis://127.0.0.1:{proxy.port}")) as redis:
        with trio.fail_after(5):
            await redis.execute("SET", key, "first")
            proxy.stall()
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(redis.execute, "GET", key)
                    await trio.testing.wait_all_tasks_blocked()
                    scope.cancel()
            proxy.resume()
            # The GET's reply may now arrive on the old link; it was closed, so nobody reads it.
            assert await redis.execute("ECHO", "second") == b"second"
            assert proxy.statistics().accepted == 2
