"""Resharding under load (issue 11): the queue's slot moves while two instances take
submits over HTTP and run jobs.

The fleet is the one of ``test_cluster_failover`` (two in-process apps, a ``ClusterClient``
each, a client sending ``503`` answers again with the same ``Idempotency-Key``). The slot of
the queue's hash tag moves twice:

1. by hand, from its primary to another, held in the migrating state while traffic runs:
   ``SETSLOT IMPORTING``/``MIGRATING``, then ``MIGRATE`` of every key, then (once every
   client has been sent an ``ASK``) ``SETSLOT NODE``;
2. back, with ``redis-cli --cluster reshard --cluster-slots 1`` (the slot is its new
   owner's lowest, so the one redis-cli takes first).

While the slot is mid-migration, a store script gets ``TRYAGAIN``: it declares every key of
the queue, and Redis serves a multi-key call in a migrating slot only where all its keys
are, which never holds for keys that do not exist yet (an empty list is no key). So the
queue is unavailable for as long as its slot migrates (the client retries about a second,
then it is ``503``); single-key calls (``ZCARD``, ``BLPOP``) follow the ``ASK``. Nothing
may be lost or run twice.
"""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio

from asyncendpoints_trio import Job, JobStatus
from asyncendpoints_trio.redis import ClusterClient, ClusterStatistics
from asyncendpoints_trio.redis._slots import key_slot
from asyncendpoints_trio.stores._redis import RedisStore
from tests._redis_cluster import RedisCluster

from .test_cluster_failover import (
    STORE_OPTIONS,
    UNACKED_OPTIONS,
    Runs,
    Submits,
    _unsupported,
    all_jobs,
    check_runs,
    describe,
    final_state,
    make_store,
    two_instances,
)

pytestmark = pytest.mark.slow

# The failover test's store options when RedisStore takes them (issue 11), else none.
OPTIONS: dict[str, Any] = UNACKED_OPTIONS if _unsupported(STORE_OPTIONS) else STORE_OPTIONS
JOBS = (30, 30, 30, 30)  # before, during the hand migration, during redis-cli's, after
HOLD = 8  # submits answered while the slot is held mid-migration


def _cluster_stats(store: RedisStore) -> ClusterStatistics:
    assert isinstance(store.client, ClusterClient)
    return store.client.statistics()


def _queue_on_the_first_primary(cluster: RedisCluster) -> str:
    """A queue name whose slot the primary serving slot 0 serves: moved to any other
    primary, it is that one's lowest slot."""
    first = cluster.owners(cluster.primaries()[0])[0]
    while True:
        queue = f"rs-{uuid.uuid4().hex[:8]}"
        if cluster.owner_of(f"{{{queue}}}") == first:
            return queue


async def test_the_queues_slot_moves_twice_under_load(private_cluster: RedisCluster) -> None:
    cluster = private_cluster
    queue = _queue_on_the_first_primary(cluster)
    slot = key_slot(f"{{{queue}}}")
    source = cluster.owner_of(f"{{{queue}}}")
    target = next(port for port in cluster.primaries() if port != source)
    runs = Runs()
    keys = [f"{queue}-{i}" for i in range(sum(JOBS))]
    cuts = [sum(JOBS[:i]) for i in range(len(JOBS) + 1)]
    phases = [keys[cuts[i]:cuts[i + 1]] for i in range(len(JOBS))]
    async with two_instances(cluster.url, queue, runs, OPTIONS) as instances, \
            AsyncExitStack() as stack:
        observer = make_store(cluster.url, queue, OPTIONS)
        stack.push_async_callback(observer.aclose)
        stores = [store for _, store in instances]
        submits = Submits([http for http, _ in instances])
        deadline = trio.current_time() + 30
        migrated = held = 0
        with trio.fail_after(40):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(submits.stream, phases[0], cuts[0], deadline)
                await submits.wait_accepted(JOBS[0] // 2)
                await runs.started.wait()
                await counts_ok(observer)  # its map loaded: the move below is news to it
                # 1. By hand, held mid-migration while the fleet works.
                nursery.start_soon(submits.stream, phases[1], cuts[1], deadline)
                await trio.to_thread.run_sync(cluster.begin_migration, slot, source, target)
                migrated = await trio.to_thread.run_sync(cluster.migrate_keys, slot, source,
                                                         target)
                # Every key is at the target now, the slot still the source's: every call
                # is sent on with ASK. Held until each client has followed one and the
                # test client has had HOLD answers (202 or 503) meanwhile.
                held_from = submits.answers
                with trio.fail_after(10):
                    await counts_ok(observer)  # single-key calls: served after ASKING
                    while not (all(_cluster_stats(s).asked for s in stores) and
                               submits.answers - held_from >= HOLD):
                        await submits.changed.wait()
                held = submits.answers - held_from
                await trio.to_thread.run_sync(cluster.end_migration, slot, source, target)
                assert cluster.owner_of(f"{{{queue}}}") == target
                await counts_ok(observer)  # its map says source: MOVED
                mid = [_cluster_stats(s) for s in [*stores, observer]]
                # 2. Back with redis-cli.
                nursery.start_soon(submits.stream, phases[2], cuts[2], deadline)
                await trio.to_thread.run_sync(cluster.reshard, target, source, 1)
                assert cluster.owner_of(f"{{{queue}}}") == source
                nursery.start_soon(submits.stream, phases[3], cuts[3], deadline)
            jobs: dict[str, Job] = {}
            lost: list[str] = []
            for key in keys:
                job = await final_state(observer, submits.accepted[key], 20)
                if job is None:
                    lost.append(submits.accepted[key])
                else:
                    jobs[job.id] = job
            stored = await all_jobs(observer)
            counts = await observer.counts()
        end = [_cluster_stats(s) for s in [*stores, observer]]
    twice = [job_id for job_id in jobs if len(runs.outline(job_id)) > 1]
    print(f"\nreshard under load ({describe(OPTIONS)}): slot {slot} {source} -> {target} by "
          f"hand ({migrated} keys, {held} submits answered meanwhile), back by redis-cli; "
          f"{len(keys)} keys, {submits.refused} answers 503 sent again; ASK followed "
          f"{[s.asked for s in end]}, MOVED {[s.moved for s in end]}, retries "
          f"{[s.retries for s in end]} (instances, test)")
    assert migrated > 0
    assert not lost, f"{len(lost)} jobs answered 202 are unknown after the moves: {lost[:5]}"
    assert not twice, f"jobs run more than once: {[(j, runs.outline(j)) for j in twice]}"
    for job_id, job in jobs.items():
        assert job.status is JobStatus.COMPLETED, job
        check_runs(job_id, runs.outline(job_id), job)
    assert set(runs.by_job) == set(jobs), "a handler ran for a job nobody was answered"
    assert sorted(j.id for j in stored) == sorted(jobs), "one job per key, no other"
    assert counts == {"Queued": 0, "Scheduled": 0, "InProgress": 0}
    # ASK was followed by every client while the slot migrated; the test's own client,
    # whose map still had the source, was sent MOVED after the first move.
    assert all(s.asked > 0 for s in mid), mid
    assert mid[-1].moved >= 1, mid[-1]
    assert submits.by_instance[0] > 0 and submits.by_instance[1] > 0


async def counts_ok(store: RedisStore) -> None:
    """``counts()`` (single-key ``ZCARD`` calls) answers: the queue's node is reachable."""
    counts = await store.counts()
    assert set(counts) == {"Queued", "Scheduled", "InProgress"}
