"""Pub/sub: messages in order, a cut or silent link raises, re-subscribing works."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio

from asyncendpoints_trio._errors import RedisConnectionError, RedisTimeoutError
from asyncendpoints_trio.redis import RedisClient, RedisSettings
from tests.faultproxy import FaultProxy

SettingsFactory = Callable[..., RedisSettings]


async def test_receive_messages_in_order(client: RedisClient, key: str) -> None:
    with trio.fail_after(5):
        async with client.subscribe(key + "a", key + "b") as subscription:
            assert client.statistics().subscriptions == 1
            # Subscribed on the server once the context is entered: publishing is safe now.
            assert await client.execute("PUBLISH", key + "a", "one") == 1
            await client.execute("PUBLISH", key + "b", b"two\x00")
            await client.execute("PUBLISH", key + "other", "ignored")
            await client.execute("PUBLISH", key + "a", "three")
            received = []
            async for channel, data in subscription:
                received.append((channel, data))
                if len(received) == 3:
                    break
    assert received == [((key + "a").encode(), b"one"), ((key + "b").encode(), b"two\x00"),
                        ((key + "a").encode(), b"three")]
    assert client.statistics().subscriptions == 0


async def test_cut_link_raises_and_resubscribing_works(
        proxy: FaultProxy, key: str, settings: SettingsFactory) -> None:
    async with RedisClient(settings(f"redis://127.0.0.1:{proxy.port}")) as redis:
        with trio.fail_after(5):
            async with redis.subscribe(key) as subscription:
                await redis.execute("PUBLISH", key, "before")
                assert await anext(subscription) == (key.encode(), b"before")
                proxy.cut_all()
                with pytest.raises(RedisConnectionError):
                    await anext(subscription)
            assert redis.statistics().connection_errors >= 1
            async with redis.subscribe(key) as subscription:
                await redis.execute("PUBLISH", key, "after")
                assert await anext(subscription) == (key.encode(), b"after")


async def test_silent_link_is_detected_by_ping(proxy: FaultProxy, key: str,
                                               settings: SettingsFactory) -> None:
    url = f"redis://127.0.0.1:{proxy.port}"
    async with RedisClient(settings(url, health_check_interval=0.05,
                                    read_timeout=0.1)) as redis:
        with trio.fail_after(5):
            async with redis.subscribe(key) as subscription:
                proxy.stall()
                with pytest.raises(RedisTimeoutError, match="PING"):
                    await anext(subscription)
        assert redis.statistics().timeouts == 1


async def test_quiet_but_healthy_link_survives_pings_and_cancelled_reads(
        redis_url: str, client: RedisClient, key: str, settings: SettingsFactory) -> None:
    async with RedisClient(settings(redis_url, health_check_interval=0.02,
                                    read_timeout=1.0)) as redis:
        with trio.fail_after(5):
            async with redis.subscribe(key) as subscription:
                # Several health checks pass in this silence, and the read is then cancelled:
                # a cancelled read on a subscription loses nothing and keeps the link.
                with trio.move_on_after(0.15):
                    await anext(subscription)
                    pytest.fail("no message was published")
                await client.execute("PUBLISH", key, "still here")
                assert await anext(subscription) == (key.encode(), b"still here")
        assert redis.statistics().connection_errors == 0


async def test_sharded_subscription_receives_spublish(client: RedisClient, key: str) -> None:
    with trio.fail_after(5):
        async with client.subscribe(key, sharded=True) as subscription:
            assert await client.execute("SPUBLISH", key, "one") == 1
            await client.execute("PUBLISH", key, "not sharded: not ours")
            await client.execute("SPUBLISH", key, "two")
            received = []
            async for _, data in subscription:
                received.append(data)
                if len(received) == 2:
                    break
    assert received == [b"one", b"two"]
