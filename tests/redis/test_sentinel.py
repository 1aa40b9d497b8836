"""``SentinelClient`` against a real Sentinel group: a primary, a replica, three sentinels."""

from __future__ import annotations

import functools
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from asyncendpoints_trio import ConfigurationError, StoreUnavailable
from asyncendpoints_trio._errors import RedisConnectionError
from asyncendpoints_trio.redis import (
    ReplicaWait,
    Script,
    SentinelClient,
    open_client,
    parse_sentinel_url,
)
from asyncendpoints_trio.stores._redis import RedisStore
from tests._redis_sentinel import SERVICE, SentinelGroupServers, SentinelProcess, command
from tests._redis_server import free_port
from tests.test_cli import APP, cli, one_line_error

FAST = {"connect_timeout": 1.0, "read_timeout": 2.0, "write_timeout": 2.0,
        "acquire_timeout": 2.0, "backoff_initial": 0.02, "backoff_max": 0.2}
_INCR = Script("return redis.call('INCR', KEYS[1])")


@asynccontextmanager
async def sentinel_client(group: SentinelGroupServers, **overrides: Any
                          ) -> AsyncIterator[SentinelClient]:
    async with SentinelClient.from_url(group.url, **{**FAST, **overrides}) as client:
        yield client


async def until(condition: Any, within: float = 10.0) -> None:
    """Poll a condition of the client's own state, bounded."""
    with trio.fail_after(within):
        while not condition():  # noqa: ASYNC110 - state of ours that no event announces
            await trio.sleep(0.01)


# -- URLs ------------------------------------------------------------------------------------


def test_url_parts() -> None:
    config = parse_sentinel_url(
        "redis+sentinel://alice:s%40cret@10.0.0.1:26380,[::1]:26381,sentinel-c/jobs/3"
        "?read_timeout=1.5&max_connections=7&sentinel_password=pw&sentinel_username=watch")
    assert config.sentinels == (("10.0.0.1", 26380), ("::1", 26381), ("sentinel-c", 26379))
    assert config.service == "jobs"
    node = config.node_settings(("10.0.0.9", 6390))
    assert (node.host, node.port, node.db) == ("10.0.0.9", 6390, 3)
    assert (node.username, node.password) == ("alice", "s@cret")
    assert (node.read_timeout, node.max_connections) == (1.5, 7)
    sentinel = config.sentinel_settings(("10.0.0.1", 26380))
    assert (sentinel.username, sentinel.password, sentinel.db) == ("watch", "pw", 0)
    assert "s@cret" not in repr(config) and "pw" not in repr(config)


@pytest.mark.parametrize(("url", "says"), [
    ("redis+sentinel://h:26379", "service name"),
    ("redis+sentinel://h:26379/", "service name"),
    ("redis+sentinel://h:26379//0", "service name"),
    ("redis+sentinel:///jobs", "empty"),
    ("redis+sentinel://h:1,/jobs", "empty"),
    ("redis+sentinel://h:x/jobs", "port"),
    ("redis+sentinel://h:0/jobs", "port"),
    ("redis+sentinel://::1:26379/jobs", "brackets"),
    ("redis+sentinel://h/jobs/0/extra", "/service_name[/db]"),
    ("redis+sentinel://h/jobs/zero", "number"),
    ("redis+sentinel://h/jobs?bogus=1", "bogus"),
    ("redis+sentinel://h/jobs?sentinel_username=u", "sentinel_password"),
    ("redis+sentinel://alice@h/jobs", "password"),
    ("redis+sentinel://h/jobs#frag", "fragment"),
])
def test_bad_urls_are_refused(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=None) as info:
        open_client(url)
    assert says in str(info.value)
    if says == "service name":  # the message shows the form to write
        assert "redis+sentinel://" in str(info.value) and "/service_name" in str(info.value)


# -- discovery -------------------------------------------------------------------------------


async def test_discovers_the_primary(sentinels: SentinelGroupServers) -> None:
    async with sentinel_client(sentinels) as client:
        assert client.statistics().primary is None  # lazy: nothing asked yet
        role = await client.execute("ROLE")
        assert role[0] == b"master"
        port = sentinels.primary_port()
        stats = client.statistics()
        assert stats.primary == f"127.0.0.1:{port}"
        assert client.settings.port == port
        assert stats.discoveries == 1 and stats.failovers_followed == 0
        assert client.describe() == (f"{sentinels.url}/0, primary 127.0.0.1:{port}")
        await until(lambda: client.statistics().monitoring)  # +switch-master subscribed
    assert not client.statistics().monitoring  # closing the last client ended it


async def test_open_client_and_siblings_share_one_view(sentinels: SentinelGroupServers,
                                                       key: str) -> None:
    client = open_client(sentinels.url, **FAST)
    assert isinstance(client, SentinelClient) and not client.clustered
    control = client.sibling(max_connections=2)
    try:
        await client.execute("SET", key + "a", "1")
        assert await control.execute("GET", key + "a") == b"1"
        stats = control.statistics()
        assert stats.primary == client.statistics().primary
        assert stats.discoveries == 1  # the sibling asked no sentinel of its own
        assert stats.pool is not None and stats.pool.max_connections == 2
        # The store's scripts and the WAIT after them, through the client.
        assert await client.evalsha(_INCR, [key + "n"], wait=ReplicaWait(1, 5.0)) == 1
        replicated = [n for n in sentinels.nodes if n.port != sentinels.primary_port()]
        assert command(replicated[0].port, "GET", key + "n") == b"1"
        await until(lambda: client.statistics().monitoring)
        # The store reports it among its own statistics.
        store_stats = RedisStore(client, control=control).statistics()
        assert store_stats["client"]["primary"] == stats.primary
        assert store_stats["control"]["pool"]["max_connections"] == 2
        await client.aclose()
        assert control.statistics().monitoring  # the sibling still uses the subscription
    finally:
        await client.aclose()
        await control.aclose()
    assert not control.statistics().monitoring


async def test_a_demoted_node_is_left_for_the_primary(sentinels: SentinelGroupServers,
                                                      key: str) -> None:
    """The client is told the replica is the primary (as by a sentinel that has not heard
    of a failover yet, or a node demoted after it was checked). A blocked pop on the real
    primary is cut at once by the switch; the first write meets READONLY, the client asks
    the sentinels, and that write, which did not run, is sent once to the real primary."""
    primary = sentinels.primary_port()
    replica = next(n.port for n in sentinels.nodes if n.port != primary)
    async with sentinel_client(sentinels) as client:
        await client.execute("PING")
        cut: list[BaseException] = []
        was_cut = trio.Event()

        async def blocked_pop() -> None:
            with pytest.raises(RedisConnectionError) as info:
                await client.blocking("BLPOP", key + "never", timeout=30)
            cut.append(info.value)
            was_cut.set()

        async def subscriber(task_status: trio.TaskStatus[None]) -> None:
            async with client.subscribe(key + "channel") as subscription:
                task_status.started()
                with pytest.raises(RedisConnectionError) as info:
                    await subscription.__anext__()
            cut.append(info.value)

        async with trio.open_nursery() as nursery:
            await nursery.start(subscriber)
            nursery.start_soon(blocked_pop)
            await until(lambda: client.statistics().pool.connections_in_use == 1)  # type: ignore[union-attr]
            client._group.adopt(("127.0.0.1", replica))
            with trio.fail_after(5):  # well before the pop's 30 s
                await was_cut.wait()
        assert len(cut) == 2  # the pop, and the subscription
        assert all("changed" in str(exc) for exc in cut)
        assert client.settings.port == replica
        assert await client.evalsha(_INCR, [key + "w"]) == 1  # READONLY, then the primary
        stats = client.statistics()
        assert stats.primary == f"127.0.0.1:{primary}"
        assert stats.readonly_retries == 1
        assert command(primary, "GET", key + "w") == b"1"  # written once, on the primary
        # A pipeline refused as a whole the same way.
        client._group.adopt(("127.0.0.1", replica))
        replies = await client.pipeline([("INCR", key + "w"), ("GET", key + "w")])
        assert replies == [2, b"2"]
        assert client.statistics().readonly_retries == 2


async def test_a_stale_sentinel_is_passed_over(sentinels: SentinelGroupServers) -> None:
    """The first sentinel listed names the replica: its ROLE says so, and the next
    sentinel's answer is used (and asked first from then on)."""
    primary = sentinels.primary_port()
    replica = next(n.port for n in sentinels.nodes if n.port != primary)

    async def stale_sentinel(stream: trio.SocketStream) -> None:
        async for _ in stream:  # whatever it is asked, it names the replica
            await stream.send_all(b"*2\r\n$9\r\n127.0.0.1\r\n$%d\r\n%d\r\n"
                                  % (len(str(replica)), replica))

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(
            functools.partial(trio.serve_tcp, stale_sentinel, 0, host="127.0.0.1"))
        fake = listener.socket.getsockname()[1]
        real = ",".join(f"127.0.0.1:{s.port}" for s in sentinels.sentinels)
        url = f"redis+sentinel://127.0.0.1:{fake},{real}/{SERVICE}"
        async with SentinelClient.from_url(url, **FAST) as client:
            assert (await client.execute("ROLE"))[0] == b"master"
            stats = client.statistics()
            assert stats.primary == f"127.0.0.1:{primary}"
            assert stats.sentinels[0] != f"127.0.0.1:{fake}"
        nursery.cancel_scope.cancel()


async def test_no_sentinel_answers(sentinels: SentinelGroupServers) -> None:
    async with SentinelClient.from_url("redis+sentinel://127.0.0.1:1/nothing", **FAST) as c:
        with pytest.raises(RedisConnectionError, match="no primary found for 'nothing'"):
            await c.execute("PING")
        with pytest.raises(RedisConnectionError, match="asking again"):  # backing off
            await c.execute("PING")
    url = sentinels.url.replace(f"/{SERVICE}", "/unknown")
    async with SentinelClient.from_url(url, **FAST) as c:
        with pytest.raises(RedisConnectionError, match="does not monitor 'unknown'"):
            await c.execute("PING")


async def test_sentinel_password(sentinels: SentinelGroupServers) -> None:
    """A sentinel of its own, with ``requirepass``, watching the same primary under another
    name (so it never joins the others' votes)."""
    with SentinelProcess(sentinels.primary_port(), service="locked", password="watch") as s:
        url = f"redis+sentinel://127.0.0.1:{s.port}/locked"
        async with SentinelClient.from_url(url + "?sentinel_password=watch", **FAST) as c:
            assert (await c.execute("ROLE"))[0] == b"master"
            assert c.statistics().primary == f"127.0.0.1:{sentinels.primary_port()}"
        async with SentinelClient.from_url(url, **FAST) as c:
            with pytest.raises(RedisConnectionError, match=r"login failed: NOAUTH"):
                await c.execute("PING")


# -- failover --------------------------------------------------------------------------------


async def test_follows_a_failover_by_itself(doomed_sentinels: SentinelGroupServers,
                                            key: str) -> None:
    group = doomed_sentinels
    async with sentinel_client(group) as client:
        assert await client.execute("INCR", key) == 1
        await until(lambda: client.statistics().monitoring)
        failures: list[BaseException] = []
        done = trio.Event()
        resumed_at = math.inf
        resumed = trio.Event()
        ended: list[BaseException] = []

        async def subscriber(task_status: trio.TaskStatus[None]) -> None:
            try:
                async with client.subscribe(key + "channel") as subscription:
                    task_status.started()
                    async for _ in subscription:
                        pass
            except StoreUnavailable as exc:
                ended.append(exc)

        async def writer() -> None:
            nonlocal resumed_at
            while not done.is_set():
                try:
                    await client.execute("INCR", key)
                except StoreUnavailable as exc:
                    failures.append(exc)
                    await trio.sleep(0.01)  # a failing call returns at once: pace the loop
                    continue
                if failures and not resumed.is_set():
                    resumed_at = trio.current_time()
                    resumed.set()
                await trio.sleep(0.005)

        async with trio.open_nursery() as nursery:
            await nursery.start(subscriber)
            nursery.start_soon(writer)
            killed_at = trio.current_time()
            failover = await trio.to_thread.run_sync(group.kill_primary)
            with trio.fail_after(15):
                await resumed.wait()
            done.set()
        stats = client.statistics()
        print(f"\nSentinel group ready in {group.setup_seconds:.1f}s; kill -9 to "
              f"+switch-master {failover.seconds:.2f}s; writes resumed "
              f"{resumed_at - killed_at:.2f}s after the kill ({len(failures)} failed "
              f"calls in between, {stats.switch_messages} switch message(s))")
        assert stats.primary == f"127.0.0.1:{failover.new}"
        assert stats.failovers_followed == 1
        assert all(isinstance(f, StoreUnavailable) for f in failures)
        assert ended and isinstance(ended[0], RedisConnectionError)
        last = await client.execute("INCR", key)
        assert command(failover.new, "GET", key) == str(last).encode()


def test_the_cli_names_an_unreachable_sentinel_group() -> None:
    url = f"redis+sentinel://127.0.0.1:{free_port()}/{SERVICE}"
    line = one_line_error(cli("worker", APP, "--redis-url", url))
    assert f"{url}/0" in line and "no primary found for 'jobs'" in line, line


async def test_the_switch_subscription_moves_to_a_live_sentinel(
        doomed_sentinels: SentinelGroupServers, key: str) -> None:
    group = doomed_sentinels
    async with sentinel_client(group) as client:
        await client.execute("SET", key, "1")
        await until(lambda: client.statistics().monitoring)
        watched = client.statistics().sentinels[0]  # the one that answered, and is watched
        group.kill_sentinel(int(watched.rsplit(":", 1)[1]))
        await until(lambda: client.statistics().sentinels[0] != watched)
        await until(lambda: client.statistics().monitoring)
        failover = await trio.to_thread.run_sync(group.kill_primary)
        # Told by the subscription, not by a failed call: this client sends none meanwhile.
        await until(lambda: client.statistics().failovers_followed == 1, within=15)
        stats = client.statistics()
        assert stats.switch_messages == 1
        assert stats.primary == f"127.0.0.1:{failover.new}"
        assert stats.failovers_followed == 1
        assert await client.execute("GET", key) == b"1"


@pytest.mark.slow
async def test_follows_the_primary_back_to_a_rejoined_node(
        doomed_sentinels: SentinelGroupServers, key: str) -> None:
    """Kill the primary, restart it (the sentinels make it a replica of the new one), kill
    the new one: the client ends on the node it started on, having followed both moves."""
    group = doomed_sentinels
    async with sentinel_client(group) as client:
        await client.execute("SET", key, "first")
        first = await trio.to_thread.run_sync(group.kill_primary)
        await until(lambda: client.statistics().failovers_followed == 1, within=15)
        began = trio.current_time()
        await trio.to_thread.run_sync(group.restart, first.old)
        await trio.to_thread.run_sync(group.wait_until_replica, first.old)
        rejoined = trio.current_time() - began
        second = await trio.to_thread.run_sync(group.kill_primary)
        assert second.new == first.old
        await until(lambda: client.statistics().failovers_followed == 2, within=15)
        assert client.statistics().primary == f"127.0.0.1:{first.old}"
        await client.execute("SET", key, "second")  # on the node it started on, a primary again
        assert command(first.old, "GET", key) == b"second"
    print(f"\nfailovers {first.seconds:.2f}s and {second.seconds:.2f}s; the old primary "
          f"was a replica again {rejoined:.1f}s after its restart")


async def test_calls_on_a_silent_primary_are_cut_by_the_switch(
        doomed_sentinels: SentinelGroupServers, key: str) -> None:
    """The primary stops answering (SIGSTOP) with a pop blocked on it for 30 s: the
    promotion ends that pop at once, instead of its timeout."""
    group = doomed_sentinels
    async with sentinel_client(group) as client:
        await client.execute("PING")
        await until(lambda: client.statistics().monitoring)
        cut: list[BaseException] = []

        async def blocked_pop() -> None:
            try:
                await client.blocking("BLPOP", key, timeout=30)
            except StoreUnavailable as exc:
                cut.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(blocked_pop)
            await until(lambda: client.statistics().pool.connections_in_use == 1)  # type: ignore[union-attr]
            began = trio.current_time()
            failover = await trio.to_thread.run_sync(group.pause_primary)
            with trio.fail_after(10):  # the pop's own deadline is 32 s away
                while not cut:  # noqa: ASYNC110 - the nursery ends with the pop
                    await trio.sleep(0.01)
        took = trio.current_time() - began
        assert isinstance(cut[0], RedisConnectionError) and "changed" in str(cut[0])
        assert client.statistics().primary == f"127.0.0.1:{failover.new}"
        await client.execute("SET", key, "after")
        assert command(failover.new, "GET", key) == b"after"
    print(f"\na pop blocked on a silent primary was cut {took:.2f}s after SIGSTOP "
          f"(+switch-master after {failover.seconds:.2f}s)")
