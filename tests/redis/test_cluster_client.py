"""ClusterClient on a real local Redis Cluster (3 primaries, a replica each).

Tests that move slots use the session's cluster (they leave it healthy: every migration is
finished); tests that kill nodes or reshard get a cluster of their own.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest
import trio

from asyncendpoints_trio import ConfigurationError, RedisConnectionError, RedisReplyError
from asyncendpoints_trio._errors import ReplicationTimeout, StoreError, StoreUnavailable
from asyncendpoints_trio.redis import ClusterClient, ReplicaWait, Script, open_client
from asyncendpoints_trio.redis._cluster import _UNAVAILABLE_TRIES
from asyncendpoints_trio.redis._cluster_url import parse_cluster_url
from asyncendpoints_trio.redis._slots import command_slot, key_slot

from .._redis_cluster import RedisCluster, command, wait_for
from .._redis_server import RedisServer

FAST: dict[str, Any] = {
    "connect_timeout": 1.0, "read_timeout": 2.0, "write_timeout": 2.0,
    "acquire_timeout": 2.0, "backoff_initial": 0.02, "backoff_max": 0.1,
    "max_connections": 8,
}
INCR_BY = Script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
EXISTS_TWO = Script("return redis.call('EXISTS', KEYS[1], KEYS[2])")


def fast_cluster(url: str, **overrides: Any) -> ClusterClient:
    return ClusterClient.from_url(url, **{**FAST, **overrides})


@pytest.fixture
async def cluster_client(cluster_url: str) -> AsyncIterator[ClusterClient]:
    """On any healthy cluster (``REDIS_CLUSTER_URL`` if set)."""
    async with fast_cluster(cluster_url) as client:
        yield client


@pytest.fixture
async def local_client(shared_cluster: RedisCluster) -> AsyncIterator[ClusterClient]:
    """On the session's own cluster, for tests that look at or move its slots."""
    async with fast_cluster(shared_cluster.url) as client:
        yield client


@pytest.fixture
def prefix() -> str:
    return f"c{uuid.uuid4().hex[:8]}:"


def keys_per_primary(cluster: RedisCluster, prefix: str, count: int = 2) -> dict[int, list[str]]:
    return {port: cluster.keys_on(port, count, prefix) for port in cluster.primaries()}


# -- slots ----------------------------------------------------------------------------------

async def test_key_slots_are_the_servers(shared_cluster: RedisCluster) -> None:
    port = shared_cluster.primaries()[0]
    names: list[str | bytes] = ["", "a", "user:1000", "{user}:1", "x{user}y", "{}", "{}{a}",
                                "a{b}{c}", "{a", "a}", "}{a}", b"\xff\x00bin", "é"]
    names += [f"k{i}" for i in range(200)]
    for name in names:
        assert key_slot(name) == command(port, "CLUSTER", "KEYSLOT", name), name


def test_command_slot_finds_the_first_key() -> None:
    assert command_slot(("GET", "{q}a")) == key_slot("q")
    assert command_slot(("EVALSHA", "sha", 2, "{q}a", "b", "arg")) == key_slot("q")
    assert command_slot(("EVALSHA", "sha", 0, "arg")) is None
    assert command_slot(("PING",)) is None
    assert command_slot(("PUBLISH", "ch", "m")) is None
    assert command_slot(("SPUBLISH", "ch", "m")) == key_slot("ch")
    assert command_slot(("XREAD", "COUNT", 1, "STREAMS", "s", "0")) == key_slot("s")


# -- routing ----------------------------------------------------------------------------------

async def test_each_key_lands_on_its_primary(local_client: ClusterClient,
                                             shared_cluster: RedisCluster,
                                             prefix: str) -> None:
    for port, names in keys_per_primary(shared_cluster, prefix).items():
        for name in names:
            assert await local_client.execute("SET", name, f"on {port}") == b"OK"
            assert command(port, "GET", name) == f"on {port}".encode()
            assert await local_client.execute("GET", name) == f"on {port}".encode()
    stats = local_client.statistics()
    assert stats.primaries == 3
    assert stats.moved == stats.asked == 0
    assert len(stats.nodes) == 3
    assert dataclasses.asdict(stats)["nodes"]  # the store reports it with asdict


async def test_keyless_commands_go_to_a_primary(cluster_client: ClusterClient) -> None:
    assert await cluster_client.execute("PING") == b"PONG"
    role = await cluster_client.execute("ROLE")
    assert role[0] == b"master"


async def test_pipeline_across_nodes_keeps_call_order(local_client: ClusterClient,
                                                      shared_cluster: RedisCluster,
                                                      prefix: str) -> None:
    names = [name for group in keys_per_primary(shared_cluster, prefix, 4).values()
             for name in group]
    names.sort()  # interleave the nodes
    commands: list[tuple[Any, ...]] = []
    for i, name in enumerate(names):
        commands += [("SET", name, i), ("INCR", name), ("GET", name)]
    commands.append(("LPUSH", names[0], "x"))  # a wrong-type error, in place
    replies = await local_client.pipeline(commands)
    assert len(replies) == len(commands)
    for i in range(len(names)):
        assert replies[3 * i:3 * i + 3] == [b"OK", i + 1, str(i + 1).encode()]
    assert isinstance(replies[-1], RedisReplyError)
    assert replies[-1].kind == "WRONGTYPE"
    assert await local_client.pipeline([]) == []


async def test_evalsha_on_every_node_replays_noscript(local_client: ClusterClient,
                                                      shared_cluster: RedisCluster,
                                                      prefix: str) -> None:
    groups = keys_per_primary(shared_cluster, prefix, 2)
    for port in groups:
        assert command(port, "SCRIPT", "FLUSH") == b"OK"
    for names in groups.values():
        assert await local_client.evalsha(INCR_BY, [names[0]], [5]) == 5
    for port in groups:
        command(port, "SCRIPT", "FLUSH")
    calls = [(INCR_BY, [name], [i]) for i, name in enumerate(sorted(
        name for names in groups.values() for name in names))]
    replies = await local_client.evalsha_many(calls)
    expected = []
    for i, (_, (name,), _) in enumerate(calls):
        first = any(name == names[0] for names in groups.values())
        expected.append(i + (5 if first else 0))
    assert replies == expected
    for port in groups:  # each node was taught the script again
        assert command(port, "SCRIPT", "EXISTS", INCR_BY.sha1) == [1]


async def test_blocking_pop_on_its_node(cluster_client: ClusterClient, prefix: str) -> None:
    queue = prefix + "{blocking}q"

    async def push_later() -> None:
        await trio.testing.wait_all_tasks_blocked()
        await cluster_client.execute("RPUSH", queue, "item")

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(push_later)
            reply = await cluster_client.blocking("BLPOP", queue, timeout=4)
    assert reply == [queue.encode(), b"item"]
    replies = await cluster_client.blocking_after(
        [("RPUSH", queue, "again")], "BLPOP", queue, timeout=1)
    assert replies == [1, [queue.encode(), b"again"]]
    with pytest.raises(ValueError, match="share one slot"):
        await cluster_client.blocking_after([("RPUSH", prefix + "{other}", "x")], "BLPOP",
                                            queue, timeout=1)


# -- redirects --------------------------------------------------------------------------------

async def test_moved_updates_the_map(local_client: ClusterClient,
                                     shared_cluster: RedisCluster, prefix: str) -> None:
    source, target, _ = shared_cluster.primaries()
    (name,) = shared_cluster.keys_on(source, 1, prefix + "moved")
    await local_client.execute("SET", name, "v")
    await trio.to_thread.run_sync(shared_cluster.move_slot, key_slot(name), target)
    assert await local_client.execute("GET", name) == b"v"
    moved = local_client.statistics().moved
    assert moved == 1
    assert await local_client.execute("GET", name) == b"v"
    assert (await local_client.node_for(name)).settings.port == target
    assert local_client.statistics().moved == moved  # straight there now
    # A pipeline follows a MOVED reply in place too.
    await trio.to_thread.run_sync(shared_cluster.move_slot, key_slot(name), source)
    assert await local_client.pipeline([("GET", name), ("PING",)]) == [b"v", b"PONG"]
    assert local_client.statistics().moved == moved + 1


async def test_ask_during_a_migration(local_client: ClusterClient,
                                      shared_cluster: RedisCluster, prefix: str) -> None:
    source, _, target = shared_cluster.primaries()
    (tag,) = shared_cluster.keys_on(source, 1, prefix + "ask")
    old, new, third = (f"{{{tag}}}{name}" for name in ("old", "new", "third"))
    slot = key_slot(old)
    await local_client.execute("SET", old, "old")
    await trio.to_thread.run_sync(shared_cluster.begin_migration, slot, source, target)
    try:
        assert await local_client.execute("GET", old) == b"old"  # still at the source
        assert local_client.statistics().asked == 0
        # A new key of a migrating slot goes to the target: ASK, followed.
        assert await local_client.execute("SET", new, "new") == b"OK"
        assert local_client.statistics().asked == 1
        await trio.to_thread.run_sync(shared_cluster.migrate_keys, slot, source, target)
        assert await local_client.execute("GET", old) == b"old"
        assert await local_client.evalsha(INCR_BY, [third], [2]) == 2
        assert await local_client.pipeline([("GET", new), ("GET", old)]) == [b"new", b"old"]
        assert await local_client.evalsha_many([(INCR_BY, [third], [1])]) == [3]
        assert local_client.statistics().asked == 6
        # Blocking calls too: the pop and the push each go to the target after an ASK.
        queue = f"{{{tag}}}queue"

        async def push_later() -> None:
            await trio.testing.wait_all_tasks_blocked()
            await local_client.execute("RPUSH", queue, "item")

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(push_later)
                assert await local_client.blocking("BLPOP", queue, timeout=4) == [
                    queue.encode(), b"item"]
            assert await local_client.blocking_after(
                [("RPUSH", queue, "again")], "BLPOP", queue, timeout=1) == [
                    1, [queue.encode(), b"again"]]
        assert local_client.statistics().asked == 9
        assert local_client.statistics().moved == 0
    finally:
        await trio.to_thread.run_sync(shared_cluster.end_migration, slot, source, target)
    assert await local_client.execute("GET", new) == b"new"
    assert local_client.statistics().moved == 1
    assert command(target, "GET", old) == b"old"


async def test_tryagain_is_retried_a_bounded_while(local_client: ClusterClient,
                                                   shared_cluster: RedisCluster,
                                                   prefix: str) -> None:
    """A multi-key call whose keys are split by a migration gets TRYAGAIN: retried with
    backoff for about a second, then StoreUnavailable; once the slot has moved, it works."""
    source, target, _ = shared_cluster.primaries()
    (tag,) = shared_cluster.keys_on(source, 1, prefix + "try")
    first, second = f"{{{tag}}}1", f"{{{tag}}}2"
    await local_client.pipeline([("SET", first, "a"), ("SET", second, "b")])
    slot = key_slot(first)
    await trio.to_thread.run_sync(shared_cluster.begin_migration, slot, source, target)
    try:
        assert command(source, "MIGRATE", "127.0.0.1", target, first, 0, 5000) == b"OK"
        retries = local_client.statistics().retries
        with trio.fail_after(5), pytest.raises(RedisConnectionError, match="TRYAGAIN"):
            await local_client.execute("MGET", first, second)
        assert 0 < local_client.statistics().retries - retries < 5
        # In a pipeline the same ends in place, as a StoreUnavailable.
        with trio.fail_after(5):
            (reply,) = await local_client.pipeline([("MGET", first, second)])
        assert isinstance(reply, StoreUnavailable)
    finally:
        await trio.to_thread.run_sync(shared_cluster.migrate_keys, slot, source, target)
        await trio.to_thread.run_sync(shared_cluster.end_migration, slot, source, target)
    assert await local_client.execute("MGET", first, second) == [b"a", b"b"]


async def test_ask_then_tryagain_is_retried_as_long_as_tryagain(
        local_client: ClusterClient, shared_cluster: RedisCluster, prefix: str) -> None:
    """A script over two keys of a slot mid-migration, one moved to the target and one that
    exists nowhere (what a store script meets: it declares keys that do not exist yet):
    the source answers ASK (it has neither), the target TRYAGAIN (it has one of two). The
    ASKs are followed and the TRYAGAINs retried as long as a plain TRYAGAIN is; the ASKs
    used to count as tries, which cut the retries short (3 backoffs, the last one for
    nothing, about 0.35 s instead of about a second)."""
    source, target, _ = shared_cluster.primaries()
    (tag,) = shared_cluster.keys_on(source, 1, prefix + "asktry")
    moved, absent = f"{{{tag}}}moved", f"{{{tag}}}absent"
    await local_client.execute("SET", moved, "1")
    slot = key_slot(moved)
    await trio.to_thread.run_sync(shared_cluster.begin_migration, slot, source, target)
    try:
        assert command(source, "MIGRATE", "127.0.0.1", target, moved, 0, 5000) == b"OK"
        before = local_client.statistics()
        with trio.fail_after(5), pytest.raises(RedisConnectionError, match="TRYAGAIN"):
            await local_client.evalsha(EXISTS_TWO, [moved, absent])
        after = local_client.statistics()
        assert after.retries - before.retries == _UNAVAILABLE_TRIES - 1
        assert after.asked - before.asked == _UNAVAILABLE_TRIES
        # A batch the same, the call's reply in place.
        with trio.fail_after(5):
            (reply,) = await local_client.evalsha_many([(EXISTS_TWO, [moved, absent], [])])
        assert isinstance(reply, StoreUnavailable)
        assert local_client.statistics().retries - after.retries == _UNAVAILABLE_TRIES - 1
    finally:
        await trio.to_thread.run_sync(shared_cluster.migrate_keys, slot, source, target)
        await trio.to_thread.run_sync(shared_cluster.end_migration, slot, source, target)
    assert await local_client.evalsha(EXISTS_TWO, [moved, absent]) == 1


# -- failover and resharding (a cluster of their own) --------------------------------------

async def test_failover_is_followed_without_a_new_client(private_cluster: RedisCluster,
                                                         prefix: str) -> None:
    victim, survivor, _ = private_cluster.primaries()
    replica = private_cluster.replica_of(victim)
    names = private_cluster.keys_on(victim, 5, prefix)
    (elsewhere,) = private_cluster.keys_on(survivor, 1, prefix + "x")
    async with fast_cluster(private_cluster.url) as client:
        for name in [*names, elsewhere]:
            await client.evalsha(INCR_BY, [name], [7], wait=ReplicaWait(1, 2.0))
        refreshes = client.statistics().map_refreshes
        private_cluster.kill(victim)
        promoted = trio.Event()
        outcomes: list[Any] = []

        async def until_promoted() -> None:
            await trio.to_thread.run_sync(private_cluster.wait_promoted, replica)
            promoted.set()

        # The gap: every call ends within its bound, with the value or one of our
        # StoreUnavailable errors (a refused connect to the dead node, CLUSTERDOWN).
        async with trio.open_nursery() as nursery:
            nursery.start_soon(until_promoted)
            while not promoted.is_set():
                for name in (names[0], elsewhere):
                    with trio.fail_after(5):
                        try:
                            outcomes.append(await client.execute("GET", name))
                        except StoreUnavailable as exc:
                            outcomes.append(type(exc))
                await trio.sleep(0.02)  # paces the traffic; nothing waits on it
        assert outcomes
        assert all(o == b"7" or (isinstance(o, type) and issubclass(o, StoreUnavailable))
                   for o in outcomes), outcomes
        # After the promotion: the same client, no errors.
        with trio.fail_after(10):
            for name in names:
                assert await client.execute("GET", name) == b"7"
            assert await client.evalsha(INCR_BY, [names[0]], [1]) == 8
        stats = client.statistics()
        assert stats.map_refreshes > refreshes
        assert (await client.node_for(names[0])).settings.port == replica
        # The old primary comes back as a replica of the new one; nothing changes for us.
        await trio.to_thread.run_sync(private_cluster.restart, victim)
        assert await client.execute("GET", names[1]) == b"7"
    failed = sum(isinstance(o, type) for o in outcomes)
    print(f"failover gap: {len(outcomes)} calls, {failed} failed with StoreUnavailable")


async def test_a_call_cut_after_it_was_sent_is_not_retried(
        local_client: ClusterClient, shared_cluster: RedisCluster, prefix: str) -> None:
    queue = prefix + "cut"
    port = shared_cluster.owner_of(queue)
    await local_client.execute("PING")
    before = local_client.statistics()

    def blocked() -> bool:
        return b"cmd=blpop" in command(port, "CLIENT", "LIST")

    async def cut_when_blocked() -> None:
        await trio.to_thread.run_sync(partial(wait_for, blocked, "a BLPOP", 5))
        command(port, "CLIENT", "KILL", "TYPE", "normal")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cut_when_blocked)
            with pytest.raises(RedisConnectionError):
                await local_client.blocking("BLPOP", queue, timeout=5)
        after = local_client.statistics()
        assert after.retries == before.retries  # it may have run: not sent again
        assert await local_client.execute("RPUSH", queue, "x") == 1
    assert local_client.statistics().map_refreshes == before.map_refreshes + 1


async def test_a_cut_node_ends_the_merged_subscription(
        local_client: ClusterClient, shared_cluster: RedisCluster, prefix: str) -> None:
    channels = [names[0] for names in keys_per_primary(shared_cluster, prefix + "cut", 1)
                .values()]
    port = shared_cluster.owner_of(channels[1])
    with trio.fail_after(10):
        async with local_client.subscribe(*channels, sharded=True) as subscription:
            command(port, "CLIENT", "KILL", "TYPE", "pubsub")
            with pytest.raises(RedisConnectionError):
                async for _ in subscription:
                    pass
    assert local_client.statistics().subscriptions == 0


async def test_calls_to_a_dead_cluster_fail_fast(private_cluster: RedisCluster) -> None:
    async with fast_cluster(private_cluster.url) as client:
        assert await client.execute("PING") == b"PONG"
        for server in private_cluster.servers:
            server.kill()
        with trio.fail_after(10):
            with pytest.raises(RedisConnectionError):
                await client.execute("GET", "k")
            with pytest.raises(RedisConnectionError):
                await client.pipeline([("GET", "a"), ("GET", "b")])


async def test_reshard_under_writes_loses_nothing(private_cluster: RedisCluster,
                                                  prefix: str) -> None:
    source, target, _ = private_cluster.primaries()
    acknowledged: dict[str, int] = {}
    writes = [0]
    failed: list[Exception] = []
    done = trio.Event()

    async with fast_cluster(private_cluster.url) as client:
        # Keys of the source's slots only, so that many writes meet the moving slots.
        pool = private_cluster.keys_on(source, 4000, prefix)

        async def write() -> None:
            i = 0
            while not done.is_set():
                batch = [pool[(i + j) % len(pool)] for j in range(20)]
                i += len(batch)
                try:
                    replies = await client.pipeline([("SET", name, i) for name in batch])
                except StoreUnavailable as exc:
                    failed.append(exc)
                    continue
                for name, reply in zip(batch, replies, strict=True):
                    if reply == b"OK":
                        acknowledged[name] = i  # the last value acknowledged wins
                        writes[0] += 1
                    else:
                        failed.append(reply)

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(write)
                await trio.to_thread.run_sync(private_cluster.reshard, source, target, 1000)
                done.set()
        with trio.fail_after(30):
            names = list(acknowledged)
            for start in range(0, len(names), 500):
                chunk = names[start:start + 500]
                values = await client.pipeline([("GET", name) for name in chunk])
                assert values == [str(acknowledged[name]).encode() for name in chunk]
        stats = client.statistics()
    assert len(acknowledged) > 100
    assert failed == []
    print(f"reshard of 1000 slots: {writes[0]} writes to {len(acknowledged)} keys acknowledged, "
          f"{stats.moved} MOVED and {stats.asked} ASK followed")


# -- pub/sub ------------------------------------------------------------------------------------

async def test_sharded_subscribe_spans_every_primary(local_client: ClusterClient,
                                                     shared_cluster: RedisCluster,
                                                     prefix: str) -> None:
    channels = [name for names in keys_per_primary(shared_cluster, prefix + "ch", 2).values()
                for name in names]
    with trio.fail_after(10):
        async with local_client.subscribe(*channels, sharded=True) as subscription:
            assert local_client.statistics().subscriptions == 3
            for channel in channels:
                assert await local_client.execute("SPUBLISH", channel, channel) == 1
            received = set()
            async for channel, data in subscription:
                assert channel == data
                received.add(channel.decode())
                if len(received) == len(channels):
                    break
    assert received == set(channels)
    assert local_client.statistics().subscriptions == 0


async def test_classic_subscribe_hears_publish_from_any_node(cluster_client: ClusterClient,
                                                            prefix: str) -> None:
    with trio.fail_after(10):
        async with cluster_client.subscribe(prefix + "a", prefix + "b") as subscription:
            # PUBLISH goes to any primary; the cluster bus carries it to our node.
            for name in ("a", "b"):
                await cluster_client.execute("PUBLISH", prefix + name, name)
            got = []
            async for channel, data in subscription:
                got.append((channel, data))
                if len(got) == 2:
                    break
    assert sorted(got) == [((prefix + n).encode(), n.encode()) for n in ("a", "b")]


async def test_a_moved_slot_ends_the_sharded_subscription(
        local_client: ClusterClient, shared_cluster: RedisCluster, prefix: str) -> None:
    source, target, _ = shared_cluster.primaries()
    (channel,) = shared_cluster.keys_on(source, 1, prefix + "sch")
    (other,) = shared_cluster.keys_on(target, 1, prefix + "sch")
    with trio.fail_after(15):
        async with local_client.subscribe(channel, other, sharded=True) as subscription:
            await trio.to_thread.run_sync(shared_cluster.move_slot, key_slot(channel), target)
            with pytest.raises(RedisConnectionError, match="slot moved"):
                async for _ in subscription:
                    pass
        # Subscribing again finds the channel's new node.
        async with local_client.subscribe(channel, sharded=True) as subscription:
            assert await local_client.execute("SPUBLISH", channel, "here") == 1
            async for _, data in subscription:
                assert data == b"here"
                break
    assert (await local_client.node_for(channel)).settings.port == target


async def test_a_script_spublishes_to_a_sharded_subscriber(cluster_client: ClusterClient,
                                                            prefix: str) -> None:
    """What a store on a cluster does: a script publishes on a shard channel of its own
    slot (the channel is not among its declared keys), a sharded subscriber hears it."""
    tag = "{" + prefix + "q}"
    publish = Script("return redis.call('SPUBLISH', ARGV[1], ARGV[2])")
    with trio.fail_after(10):
        async with cluster_client.subscribe(tag + "done", sharded=True) as subscription:
            assert await cluster_client.evalsha(publish, [tag + "rec"],
                                                [tag + "done", "job-1"]) == 1
            async for channel, data in subscription:
                assert (channel, data) == ((tag + "done").encode(), b"job-1")
                break


# -- WAIT --------------------------------------------------------------------------------------

async def test_wait_for_a_replica_on_every_node(local_client: ClusterClient,
                                                shared_cluster: RedisCluster,
                                                prefix: str) -> None:
    names = [names[0] for names in keys_per_primary(shared_cluster, prefix + "w", 1).values()]
    wait = ReplicaWait(1, 2.0)
    assert await local_client.evalsha(INCR_BY, [names[0]], [1], wait=wait) == 1
    replies = await local_client.evalsha_many([(INCR_BY, [n], [2]) for n in names],
                                                wait=wait)
    assert replies == [3, 2, 2]
    with pytest.raises(ReplicationTimeout) as caught:
        await local_client.evalsha_many([(INCR_BY, [n], [1]) for n in names],
                                          wait=ReplicaWait(2, 0.05))
    assert caught.value.acknowledged == 1
    assert caught.value.reply == [4, 3, 3]  # the writes were applied, in call order


# -- errors, URLs, siblings --------------------------------------------------------------------

async def test_error_replies_are_ours(cluster_client: ClusterClient, prefix: str) -> None:
    await cluster_client.execute("SET", prefix + "s", "text")
    with pytest.raises(RedisReplyError) as caught:
        await cluster_client.execute("INCR", prefix + "s")
    assert caught.value.kind == "ERR"
    with pytest.raises(RedisReplyError, match="CROSSSLOT"):
        await cluster_client.execute("MGET", prefix + "{a}", prefix + "{b}")


async def test_open_client_reads_cluster_urls(cluster_url: str) -> None:
    client = open_client(cluster_url, **FAST)
    assert isinstance(client, ClusterClient)
    assert client.clustered
    try:
        assert await client.execute("SET", "{url}k", "v") == b"OK"
        sibling = client.sibling(max_connections=2)
        assert isinstance(sibling, ClusterClient)
        try:
            assert await sibling.execute("GET", "{url}k") == b"v"
            assert all(n.max_connections == 2 for n in sibling.statistics().nodes.values())
        finally:
            await sibling.aclose()
    finally:
        await client.aclose()


def test_cluster_url_forms() -> None:
    settings, seeds = parse_cluster_url(
        "redis+cluster://alice:p%40ss@10.0.0.1:7000,10.0.0.2,[::1]:7002/?read_timeout=1.5")
    assert seeds == [("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002)]
    assert (settings.username, settings.password, settings.read_timeout) == (
        "alice", "p@ss", 1.5)
    settings, _ = parse_cluster_url("rediss+cluster://h:1/0")
    assert settings.tls


@pytest.mark.parametrize(("url", "message"), [
    ("redis+cluster://h:7000/1", "database 0 only"),
    ("redis+cluster://h:7000/?db=2", "database 0 only"),
    ("redis+cluster:///", "at least one seed"),
    ("redis+cluster://h:7000,:7001/", "no host"),
    ("redis+cluster://h:7000,h:x/", "bad port"),
    ("redis+cluster://h:70000/", "bad port"),
    ("redis+cluster://h:7000/?timeout=1", "unknown Redis URL option"),
    ("redis+cluster://u@h:7000/", "no password"),
])
def test_bad_cluster_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        open_client(url)


async def test_a_server_without_cluster_mode_is_refused_clearly(
        shared_server: RedisServer) -> None:
    async with fast_cluster(f"redis+cluster://127.0.0.1:{shared_server.port}/") as client:
        with trio.fail_after(10), pytest.raises(RedisConnectionError,
                                                match="cluster support disabled"):
            await client.execute("GET", "k")


async def test_closed_client_refuses_calls(cluster_url: str) -> None:
    client = fast_cluster(cluster_url)
    await client.execute("PING")
    await client.aclose()
    with trio.fail_after(5), pytest.raises(RedisConnectionError, match="closed"):
        await client.execute("GET", "k")


async def test_many_concurrent_callers_share_one_map_refresh(cluster_url: str) -> None:
    async with fast_cluster(cluster_url) as client:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for i in range(50):
                    nursery.start_soon(partial(client.execute, "SET", f"many{i}", i))
        assert client.statistics().map_refreshes == 1


def test_slot_map_replies_are_read() -> None:
    from asyncendpoints_trio.redis._slots import parse_shards, parse_slots

    asked = ("10.0.0.9", 7000)
    slots = parse_slots([[0, 99, [b"", 7000, b"id1"], [b"10.0.0.2", 7001, b"id2"]],
                         [100, 16383, [b"10.0.0.3", 7002, b"id3"]]], asked)
    assert slots.owners[0] == slots.owners[99] == ("10.0.0.9", 7000)  # "": the node asked
    assert slots.owners[100] == ("10.0.0.3", 7002)
    assert slots.nodes == {("10.0.0.9", 7000), ("10.0.0.2", 7001), ("10.0.0.3", 7002)}

    def node(port: int, role: bytes, health: bytes) -> list[Any]:
        return [b"id", b"x", b"port", port, b"ip", b"10.0.0.1", b"endpoint", b"10.0.0.1",
                b"role", role, b"health", health]

    # A failed primary not yet demoted, beside the promoted replica: the online one wins.
    shards = parse_shards([[b"slots", [0, 16383], b"nodes", [
        node(7000, b"master", b"fail"), node(7001, b"master", b"online")]]], asked, tls=False)
    assert shards.primaries() == [("10.0.0.1", 7001)]
    assert shards.covered() == 16384
    with pytest.raises(StoreError, match="unreadable"):
        parse_shards([[b"slots", [b"x", 1], b"nodes", [node(1, b"master", b"online")]]],
                     asked, tls=False)
