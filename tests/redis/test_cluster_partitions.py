"""A queue over six partitions on a real Redis Cluster (3 primaries, a replica each): the
store contract and the admin contract, the partitions spread over the primaries, sharded
pub/sub for events, idle waits on every node, and the CLI with ``--partitions 6``."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio

from asyncendpoints_trio import NewJob
from asyncendpoints_trio.redis import ClusterClient
from asyncendpoints_trio.stores._partitions import partition_of, tags
from asyncendpoints_trio.stores._protocol import Submitted
from asyncendpoints_trio.stores._redis import RedisStore

from ..store_contract import StoreContract, new_job, submit_one
from ..store_contract_admin import AdminContract
from ..store_contract_progress import ProgressContract
from ..test_admin_http import until
from .test_cluster_client import fast_cluster
from .test_redis_partitions import woken_by_submits

P = 6


@pytest.fixture
def clock() -> None:
    return None  # real time: the Redis servers' clocks run the leases


async def _drop(client: ClusterClient, queue: str) -> None:
    for tag in tags(queue, P):
        node = await client.node_for(f"ae:{{{tag}}}:")
        keys = await node.execute("KEYS", f"ae:{{{tag}}}:*")
        if keys:
            await node.execute("DEL", *keys)


@pytest.fixture
async def store(cluster_url: str) -> AsyncIterator[RedisStore]:
    client = fast_cluster(cluster_url)
    store = RedisStore(client, queue=f"cp-{uuid.uuid4().hex[:10]}", retention=1.0,
                       owns_client=True, partitions=P)
    yield store
    await _drop(client, store.queue)
    await store.aclose()


class TestClusterPartitionedStore(StoreContract, ProgressContract, AdminContract):
    one_line = False  # see tests/redis/test_redis_partitions.py


async def test_partitions_spread_over_the_primaries(store: RedisStore) -> None:
    assert isinstance(store.client, ClusterClient)
    ports = set()
    for part in store._parts:
        ports.add((await store.client.node_for(part.keys.rec)).settings.port)
    assert len(ports) == 3, ports  # six slots in six slices of the slot space: two each
    ids = [(await submit_one(store, new_job())).job.id for _ in range(24)]
    assert {partition_of(i, P) for i in ids} == set(range(P))
    claimed = await store.claim("a", 24, 10.0)
    assert sorted(c.job.id for c in claimed) == sorted(ids)


async def test_an_idle_wait_wakes_for_a_submit_on_any_node(store: RedisStore) -> None:
    """On a cluster, one BLPOP per partition (each on its node); the first to return ends
    the others, whichever node the job went to."""
    ids = await woken_by_submits(store, P * 2)
    assert len({partition_of(job_id, P) for job_id in ids}) > 1


async def test_a_wake_up_lost_with_an_ended_blpop_is_not_missed(
        store: RedisStore, cluster_url: str) -> None:
    """Once one partition's BLPOP fires, the others' are ended by closing their
    connections, and a token the server had popped for one by then is lost. Here the
    loss is certain (a token deleted: popped for a reply nobody reads); the wait that
    another partition's token ends still points the next claim at it."""
    other = RedisStore(fast_cluster(cluster_url), queue=store.queue, owns_client=True,
                       partitions=P)  # another instance: its submits leave our marks be
    try:
        assert await store.claim("a", 4, 10.0) == []  # every partition seen empty
        fired, lost = (await other.submit([chosen_in(0), chosen_in(3)]))
        assert isinstance(fired, Submitted) and isinstance(lost, Submitted)
        part = store._parts[3]
        assert isinstance(store.client, ClusterClient)
        node = await store.client.node_for(part.keys.wake)
        assert await node.execute("DEL", part.keys.wake) == 1
        with trio.fail_after(10):
            await store.wait_for_work(30.0)  # partition 0's token ends it at once
        claimed = await store.claim("a", 4, 10.0)
        assert sorted(c.job.id for c in claimed) == sorted([fired.job.id, lost.job.id])
    finally:
        await other.aclose()


def chosen_in(partition: int) -> NewJob:
    while partition_of(job_id := str(uuid.uuid4()), P) != partition:
        pass
    return dataclasses.replace(new_job(), id=job_id, id_chosen=True)


def _subscribed(store: RedisStore) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        await trio.lowlevel.checkpoint()
        return bool(store.statistics()["subscribed"])
    return check


async def test_events_go_by_sharded_pub_sub(store: RedisStore) -> None:
    """A long-poll on a job in each partition is answered by its end's message (SPUBLISH
    on the partition's node, SSUBSCRIBE by the store)."""
    seen: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.watch_events, seen.append)
        await until(_subscribed(store))
        ids = set()
        while len({partition_of(i, P) for i in ids}) < P:
            ids.add((await submit_one(store, new_job())).job.id)
        for job_id in ids:
            async with trio.open_nursery() as inner:
                async def poll(job_id: str = job_id) -> None:
                    with trio.fail_after(10):
                        job = await store.wait_for_terminal(job_id, 8.0)
                    assert job is not None and job.status.value == "Canceled"

                inner.start_soon(poll)
                await trio.testing.wait_all_tasks_blocked(0.05)
                await store.cancel(job_id)
        assert store.statistics()["events_seen"] >= len(ids)
        nursery.cancel_scope.cancel()


async def test_the_cli_serves_six_partitions_over_a_cluster(cluster_url: str) -> None:
    from ..test_cli import _several_workers

    # A queue of its own: the shared cluster's "default" queue has one partition.
    await _several_workers(cluster_url, "--partitions", "6", "--queue",
                           f"cli-{uuid.uuid4().hex[:8]}")


async def test_an_idle_wait_leaves_the_control_pool_free(cluster_url: str) -> None:
    """Eighteen partitions, six per primary: an idle wait blocks on eighteen BLPOPs, six per
    node, as many as the control pool's connections per node. They run on a pool of their
    own, so the runtime's calls (here leases_of, one script per partition) still answer at
    once while the wait goes on."""
    store = RedisStore(fast_cluster(cluster_url), queue=f"cw-{uuid.uuid4().hex[:8]}",
                       owns_client=True, partitions=18)
    try:
        assert await store.claim("a", 1, 5.0) == []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store.wait_for_work, 8.0)
            await trio.testing.wait_all_tasks_blocked(0.1)
            with trio.fail_after(3):  # the wait's own timeout is 8 s
                assert await store.leases_of("a") == []
                await store.heartbeat("a", [], 5.0)
            nursery.cancel_scope.cancel()
    finally:
        for part in store._parts:
            node = await store.client.node_for(part.keys.rec)
            keys = await node.execute("KEYS", f"ae:{{{part.keys.rec[4:].split('}')[0]}}}:*")
            if keys:
                await node.execute("DEL", *keys)
        await store.aclose()
