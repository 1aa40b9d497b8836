"""The pool, statistics, scripts (NOSCRIPT reloads) and closing."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing

from asyncendpoints_trio._errors import PoolTimeout, RedisConnectionError, RedisReplyError
from asyncendpoints_trio.redis import RedisClient, RedisSettings, Script
from tests._redis_server import RedisServer

SettingsFactory = Callable[..., RedisSettings]

ECHO = Script("return {KEYS[1], ARGV[1]}")
INCR = Script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
FAIL = Script("return redis.error_reply('BOOM script says no')")


async def test_pipeline_and_statistics(client: RedisClient, key: str) -> None:
    with trio.fail_after(5):
        assert await client.pipeline([]) == []
        replies = await client.pipeline([("SET", key, 1), ("INCR", key), ("HGET", key, "f")])
        await client.execute("GET", key)
    assert replies[:2] == [b"OK", 2]
    assert isinstance(replies[2], RedisReplyError)
    stats = client.statistics()
    assert stats.commands_sent == 4
    assert stats.reply_errors == 1
    assert (stats.connections_open, stats.connections_idle, stats.connections_in_use) == (1, 1, 0)
    assert stats.connects == 1
    assert stats.slots_available == stats.max_connections == 8


async def test_concurrent_calls_share_a_bounded_pool(redis_url: str, key: str,
                                                     settings: SettingsFactory) -> None:
    async with RedisClient(settings(redis_url, max_connections=4)) as redis:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for _ in range(200):
                    nursery.start_soon(redis.execute, "INCR", key)
            assert await redis.execute("GET", key) == b"200"
        stats = redis.statistics()
    assert stats.connects <= 4
    assert stats.connections_open <= 4
    assert stats.connections_in_use == 0


async def test_pool_timeout_when_every_connection_is_busy(redis_url: str, key: str,
                                                          settings: SettingsFactory) -> None:
    async with RedisClient(settings(redis_url, max_connections=1,
                                    acquire_timeout=0.05)) as redis:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(partial(redis.blocking, "BLPOP", key, timeout=0))
                await trio.testing.wait_all_tasks_blocked()
                # The pop holds the only slot (connecting, or waiting in BLPOP).
                assert redis.statistics().slots_available == 0
                with pytest.raises(PoolTimeout):
                    await redis.execute("PING")
                nursery.cancel_scope.cancel()
        assert redis.statistics().slots_available == 1
        assert await redis.execute("PING") == b"PONG"


async def test_blocking_pop_returns_items_and_times_out(client: RedisClient, key: str) -> None:
    with trio.fail_after(5):
        await client.execute("RPUSH", key, "a")
        assert await client.blocking("BLPOP", key, timeout=1) == [key.encode(), b"a"]
        assert await client.blocking("BLPOP", key, timeout=0.05) is None
        await client.execute("RPUSH", key, "b")
        assert await client.blocking("BLMOVE", key, key + "dst", "LEFT", "RIGHT",
                                     timeout=1) == b"b"
    for bad in (-1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="timeout"):
            await client.blocking("BLPOP", key, timeout=bad)


async def test_evalsha_loads_missing_scripts(private_server: RedisServer, key: str,
                                             settings: SettingsFactory) -> None:
    async with RedisClient(settings(private_server.url)) as redis:
        with trio.fail_after(5):
            assert await redis.evalsha(ECHO, [key], ["hello"]) == [key.encode(), b"hello"]
            assert await redis.execute("SCRIPT", "EXISTS", ECHO.sha1) == [1]
            # Locally computed SHA1 matches the server's.
            assert await redis.execute("SCRIPT", "LOAD", INCR.source) == INCR.sha1.encode()
            await redis.execute("SCRIPT", "FLUSH")
            assert await redis.evalsha(INCR, [key], [5]) == 5
            assert await redis.execute("SCRIPT", "EXISTS", INCR.sha1) == [1]
            with pytest.raises(RedisReplyError) as info:
                await redis.evalsha(FAIL)
    assert info.value.kind == "BOOM"


async def test_evalsha_many_reloads_within_a_pipeline(private_server: RedisServer, key: str,
                                                      settings: SettingsFactory) -> None:
    async with RedisClient(settings(private_server.url)) as redis:
        with trio.fail_after(5):
            await redis.evalsha(INCR, [key], [0])  # INCR loaded; ECHO and FAIL are not
            await redis.execute("SCRIPT", "FLUSH")
            replies = await redis.evalsha_many([
                (INCR, [key], [1]), (ECHO, [key], ["x"]), (FAIL, [], []), (INCR, [key], [10]),
            ])
            again = await redis.evalsha_many([(INCR, [key], [100]), (ECHO, [key], ["y"])])
        stats = redis.statistics()
    assert replies[0] == 1
    assert replies[1] == [key.encode(), b"x"]
    assert isinstance(replies[2], RedisReplyError)
    assert replies[2].kind == "BOOM"
    assert replies[3] == 11
    assert again == [111, [key.encode(), b"y"]]
    assert stats.reply_errors == 1  # the NOSCRIPTs were handled, not reported


async def test_script_with_a_syntax_error_raises(private_server: RedisServer,
                                                 settings: SettingsFactory) -> None:
    async with RedisClient(settings(private_server.url)) as redis:
        with trio.fail_after(5), pytest.raises(RedisReplyError):
            await redis.evalsha(Script("return ((("))


def test_script_from_file(tmp_path: Path) -> None:
    path = tmp_path / "echo.lua"
    path.write_text(ECHO.source, encoding="utf-8")
    script = Script.from_file(path)
    assert script == ECHO
    assert script.sha1 == ECHO.sha1
    assert len(script.sha1) == 40


async def test_aclose_closes_the_pool(redis_url: str, settings: SettingsFactory) -> None:
    redis = RedisClient(settings(redis_url))
    with trio.fail_after(5):
        await redis.pipeline([("PING",), ("PING",)])
        await redis.aclose()
    assert redis.statistics().connections_open == 0
    with pytest.raises(RedisConnectionError, match="closed"):
        await redis.execute("PING")


async def test_wait_for_replicas_raises_when_too_few_acknowledge(client: RedisClient,
                                                                   key: str) -> None:
    """A server without replicas can never acknowledge: the write still happened, and the
    error carries its reply."""
    from asyncendpoints_trio._errors import ReplicationTimeout
    from asyncendpoints_trio.redis import ReplicaWait, Script

    script = Script("return redis.call('INCR', KEYS[1])")
    with trio.fail_after(5):
        assert await client.evalsha(script, [key], wait=ReplicaWait(0, 0.05)) == 1
        with pytest.raises(ReplicationTimeout) as caught:
            await client.evalsha(script, [key], wait=ReplicaWait(1, 0.05))
        assert caught.value.acknowledged == 0 and caught.value.reply == 2
        await client.execute("SCRIPT", "FLUSH")  # the replay after NOSCRIPT waits too
        with pytest.raises(ReplicationTimeout) as caught:
            await client.evalsha_many([(script, [key], []), (script, [key], [])],
                                      wait=ReplicaWait(1, 0.05))
        assert caught.value.reply == [3, 4]
        assert await client.execute("GET", key) == b"4"
