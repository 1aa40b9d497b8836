"""Faults: stalls and cuts (through the proxy), and a server that is killed, paused, restarted."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import hiredis
import pytest
import trio

from asyncendpoints_trio._errors import RedisConnectionError, RedisTimeoutError
from asyncendpoints_trio.redis import RedisClient, RedisSettings
from tests._redis_server import RedisServer
from tests.faultproxy import FaultProxy

SettingsFactory = Callable[..., RedisSettings]


def through(proxy: FaultProxy) -> str:
    return f"redis://127.0.0.1:{proxy.port}/0"


async def test_stalled_server_times_out_and_the_next_call_uses_a_fresh_link(
        proxy: FaultProxy, key: str, settings: SettingsFactory) -> None:
    async with RedisClient(settings(through(proxy), read_timeout=0.2)) as redis:
        with trio.fail_after(5):
            await redis.execute("SET", key, "v")
            proxy.stall()
            with pytest.raises(RedisTimeoutError):
                await redis.execute("GET", key)
            stats = redis.statistics()
            assert (stats.timeouts, stats.connections_open, stats.slots_available) == (1, 0, 8)
            proxy.resume()
            assert await redis.execute("GET", key) == b"v"
    assert proxy.statistics().accepted == 2


async def test_stalled_pipeline_times_out(proxy: FaultProxy, settings: SettingsFactory) -> None:
    async with RedisClient(settings(through(proxy), read_timeout=0.2)) as redis:
        with trio.fail_after(5):
            await redis.execute("PING")
            proxy.stall()
            with pytest.raises(RedisTimeoutError):
                await redis.pipeline([("PING",)] * 10)


async def test_reply_cut_midway_then_the_next_call_works(
        proxy: FaultProxy, key: str, settings: SettingsFactory) -> None:
    value = b"x" * 100_000
    async with RedisClient(settings(through(proxy))) as redis:
        with trio.fail_after(5):
            await redis.execute("SET", key, value)
            proxy.cut_reply_after(1000)  # the GET reply gets cut 1000 bytes in
            with pytest.raises(RedisConnectionError) as info:
                await redis.execute("GET", key)
            assert not isinstance(info.value, RedisTimeoutError)
            assert proxy.statistics().cut == 1
            assert redis.statistics().connections_open == 0
            assert await redis.execute("GET", key) == value
        stats = redis.statistics()
    assert (stats.connection_errors, stats.reconnects, stats.connections_in_use) == (1, 1, 0)
    assert proxy.statistics().accepted == 2


async def test_cut_drops_idle_connections_of_the_same_generation(
        proxy: FaultProxy, settings: SettingsFactory) -> None:
    async with RedisClient(settings(through(proxy))) as redis:
        with trio.fail_after(5):
            # Four idle connections, then every link is cut.
            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(partial(redis.blocking, "BLPOP", "nothing", timeout=0.01))
            assert redis.statistics().connections_idle == 4
            proxy.cut_all()
            await proxy.wait_live(0)
            # The stale idle connections are noticed without failing a call.
            assert await redis.execute("PING") == b"PONG"
            stats = redis.statistics()
            assert (stats.connection_errors, stats.connections_open, stats.reconnects) == (0, 1, 1)


async def test_connect_failure_backs_off_and_fails_fast(
        proxy: FaultProxy, settings: SettingsFactory) -> None:
    async with RedisClient(settings(through(proxy), backoff_initial=0.2,
                                    backoff_max=0.2)) as redis:
        with trio.fail_after(5):
            proxy.drop_new = True
            with pytest.raises(RedisConnectionError):
                await redis.execute("PING")
            dropped = proxy.statistics().dropped
            stats = redis.statistics()
            assert stats.consecutive_connect_failures == 1
            assert stats.next_connect_at is not None
            # Inside the backoff window: fails at once, without even trying to connect.
            before = trio.current_time()
            with pytest.raises(RedisConnectionError, match="next connect in"):
                await redis.execute("PING")
            assert trio.current_time() - before < 0.05  # the window is >= 0.1 s
            assert proxy.statistics().dropped == dropped
            # The window ends; the next attempt connects, and the pool is healthy again.
            proxy.drop_new = False
            await trio.sleep_until(stats.next_connect_at)  # a documented deadline, not a guess
            assert await redis.execute("PING") == b"PONG"
            stats = redis.statistics()
            assert (stats.consecutive_connect_failures, stats.next_connect_at) == (0, None)
            assert stats.reconnects == 1


async def test_backoff_grows_and_is_capped(proxy: FaultProxy, settings: SettingsFactory) -> None:
    async with RedisClient(settings(through(proxy), backoff_initial=0.01,
                                    backoff_max=0.04)) as redis:
        proxy.drop_new = True
        windows = []
        with trio.fail_after(5):
            for _ in range(6):
                before = trio.current_time()
                with pytest.raises(RedisConnectionError):
                    await redis.execute("PING")
                after = trio.current_time()
                stats = redis.statistics()
                assert stats.next_connect_at is not None
                # The pause began somewhere between before and after: bracket it.
                windows.append((stats.next_connect_at - after, stats.next_connect_at - before))
                await trio.sleep_until(stats.next_connect_at)
        # Jitter keeps each pause within [half, all] of min(initial * 2**n, max).
        assert all(shortest <= 0.04 and longest >= 0.005 for shortest, longest in windows)
        assert max(longest for _, longest in windows[3:]) > 0.02
        assert redis.statistics().consecutive_connect_failures == 6


async def test_reconnect_after_a_restart(private_server: RedisServer, key: str,
                                         settings: SettingsFactory) -> None:
    async with RedisClient(settings(private_server.url)) as redis:
        with trio.fail_after(10):
            await redis.execute("SET", key, "before")
            private_server.restart()
            # The idle connection heard the old server hang up; the call gets a new one.
            assert await redis.execute("GET", key) is None  # no persistence by default
            await redis.execute("SET", key, "after")
        stats = redis.statistics()
    assert (stats.connects, stats.reconnects, stats.connection_errors) == (2, 1, 0)


async def test_killed_server_fails_fast_then_recovers(private_server: RedisServer,
                                                      settings: SettingsFactory) -> None:
    async with RedisClient(settings(private_server.url, backoff_initial=0.2,
                                    backoff_max=0.2)) as redis:
        with trio.fail_after(10):
            await redis.execute("PING")
            private_server.kill()
            with pytest.raises(RedisConnectionError):
                await redis.execute("PING")
            with pytest.raises(RedisConnectionError, match="next connect in"):
                await redis.execute("PING")
            private_server.start()
            next_connect_at = redis.statistics().next_connect_at
            if next_connect_at is not None:
                await trio.sleep_until(next_connect_at)
            assert await redis.execute("PING") == b"PONG"


async def test_paused_server_times_out_then_recovers(private_server: RedisServer,
                                                     settings: SettingsFactory) -> None:
    async with RedisClient(settings(private_server.url, read_timeout=0.2)) as redis:
        with trio.fail_after(10):
            await redis.execute("PING")
            private_server.pause()
            try:
                with pytest.raises(RedisTimeoutError):
                    await redis.execute("PING")
            finally:
                private_server.resume()
            assert await redis.execute("PING") == b"PONG"
            assert redis.statistics().timeouts == 1


async def test_restart_with_aof_keeps_data(settings: SettingsFactory, key: str) -> None:
    with RedisServer(aof=True) as server:
        async with RedisClient(settings(server.url)) as redis:
            with trio.fail_after(10):
                await redis.execute("SET", key, "durable")
                server.restart()
                assert await redis.execute("GET", key) == b"durable"


async def test_connect_timeout(proxy: FaultProxy, settings: SettingsFactory) -> None:
    # db=1: the connect handshake sends SELECT, which the stalled proxy never answers.
    proxy.stall()
    url = f"redis://127.0.0.1:{proxy.port}/1"
    async with RedisClient(settings(url, connect_timeout=0.1)) as redis:
        with trio.fail_after(5), pytest.raises(RedisTimeoutError, match="connect timed out"):
            await redis.execute("PING")
        stats = redis.statistics()
    assert (stats.timeouts, stats.consecutive_connect_failures, stats.slots_available) == (1, 1, 8)


async def test_write_timeout(proxy: FaultProxy, key: str, settings: SettingsFactory) -> None:
    async with RedisClient(settings(through(proxy), write_timeout=0.1)) as redis:
        with trio.fail_after(5):
            await redis.execute("PING")
            proxy.stall()
            # Far more than the socket buffers hold while nobody reads.
            with pytest.raises(RedisTimeoutError, match="write timed out"):
                await redis.execute("SET", key, b"x" * (64 * 1024 * 1024))


async def test_garbage_from_the_server_is_a_connection_error(settings: SettingsFactory) -> None:
    async def impostor(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.receive_some(1024)  # the connect handshake's PING
            await stream.send_all(b"?this is not RESP\r\n")
            await stream.receive_some(1024)  # until the client hangs up

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, impostor, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        async with RedisClient(settings(f"redis://127.0.0.1:{port}")) as redis:
            with trio.fail_after(5), pytest.raises(RedisConnectionError) as info:
                await redis.execute("PING")
        nursery.cancel_scope.cancel()
    assert isinstance(info.value.__cause__, hiredis.ProtocolError)
