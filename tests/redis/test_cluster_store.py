"""The store contract against ``RedisStore`` over a ``ClusterClient``, the store unchanged.

One queue is one hash tag, so one slot on one node: every script runs where its keys are.
What the cluster adds is the routing: each queue's calls find their node, and the event
subscription (classic ``SUBSCRIBE`` on one node) hears ``PUBLISH`` from the queue's node
over the cluster bus.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from asyncendpoints_trio.redis import ClusterClient
from asyncendpoints_trio.stores._redis import RedisStore

from ..store_contract import StoreContract, new_job, submit_one
from ..store_contract_progress import ProgressContract
from .test_cluster_client import fast_cluster


@pytest.fixture
def clock() -> None:
    return None  # real time: the Redis servers' clocks run the leases


@pytest.fixture
async def store(cluster_url: str) -> AsyncIterator[RedisStore]:
    client = fast_cluster(cluster_url)
    store = RedisStore(client, queue=f"t-{uuid.uuid4().hex[:10]}", retention=1.0,
                       owns_client=True)
    yield store
    node = await client.node_for(f"ae:{{{store.queue}}}:")
    keys = await node.execute("KEYS", f"ae:{{{store.queue}}}:*")
    if keys:
        await node.execute("DEL", *keys)
    await store.aclose()


class TestClusterStore(StoreContract, ProgressContract):
    pass


async def test_queues_spread_over_the_primaries(cluster_url: str) -> None:
    """Several queues land on several nodes, and each works where it lands."""
    client = fast_cluster(cluster_url)
    try:
        ports = set()
        for i in range(12):
            store = RedisStore(client, queue=f"spread-{uuid.uuid4().hex[:6]}-{i}")
            try:
                await submit_one(store, new_job())
                (claimed,) = await store.claim("a", 1, 5.0)
                assert claimed.job.id
                ports.add((await client.node_for(f"ae:{{{store.queue}}}:")).settings.port)
            finally:
                await store.aclose()
        assert len(ports) > 1
        assert isinstance(store.control, ClusterClient)
    finally:
        await client.aclose()


async def test_a_fleet_streams_events_over_the_cluster(cluster_url: str) -> None:
    """Two apps on one queue over ``redis+cluster://``: HTTP submit, workers with push
    dispatch (the idle wait's EVAL prelude and BLPOP on the queue's node), progress and
    the end through the event subscription."""
    from .test_redis_events import test_progress_reported_on_one_instance_streams_from_another

    await test_progress_reported_on_one_instance_streams_from_another(cluster_url)


async def test_the_cli_serves_over_a_cluster_url(cluster_url: str) -> None:
    """``serve --workers 2 --redis-url redis+cluster://...``: jobs submitted over HTTP run."""
    from ..test_cli import _several_workers

    await _several_workers(cluster_url)
