"""A queue over several partitions (``RedisStore(partitions=P)``) on one server: the store
contract and the admin contract again, and what partitions add (placement, dedupe across
partitions, fair claims, idle waits on every partition, the recorded count)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import trio

from asyncendpoints_trio import ConfigurationError
from asyncendpoints_trio.stores._partitions import partition_of, tags
from asyncendpoints_trio.stores._redis import RedisStore

from ..store_contract import StoreContract, new_job, submit_one
from ..store_contract_admin import AdminContract
from ..store_contract_progress import ProgressContract
from .conftest import queue_stores

P = 3


@pytest.fixture
def clock() -> None:
    return None  # real time: the Redis server's clock runs the leases


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    async with queue_stores(redis_url, "p", retention=1.0, partitions=P) as make:
        yield make()


class TestPartitionedStore(StoreContract, ProgressContract, AdminContract):
    one_line = False  # test_order_and_bounds_hold_within_each_partition checks those


async def _tags(store: RedisStore) -> set[str]:
    keys = await store.client.execute("KEYS", f"ae:{{{store.queue}[}}|]*")
    return {k.decode().split("}")[0] + "}" for k in keys}


async def test_jobs_live_in_the_partition_of_their_id(store: RedisStore) -> None:
    ids = [(await submit_one(store, new_job())).job.id for _ in range(30)]
    assert await _tags(store) == {f"ae:{{{tag}}}" for tag in tags(store.queue, P)}
    for job_id in ids:
        k = partition_of(job_id, P)
        keys = store._parts[k].keys
        assert await store.client.execute("HEXISTS", keys.rec, job_id) == 1
        assert (await store.get(job_id)) is not None


async def test_a_key_meets_one_partition_whatever_id_was_drawn(store: RedisStore) -> None:
    """Each submit draws a fresh id; the store moves it to the key's partition, so the
    second submit with the key finds the first job (and the first id is the one kept)."""
    for n in range(12):
        key = f"key-{n}"
        first = await submit_one(store, new_job(key=key))
        again = await submit_one(store, new_job(key=key))
        assert again.created is False and again.job.id == first.job.id
        assert partition_of(first.job.id, P) == partition_of(key, P)


async def test_a_chosen_id_keeps_its_partition(store: RedisStore) -> None:
    import dataclasses

    chosen = str(uuid.uuid4())
    job = dataclasses.replace(new_job(key="chosen-key"), id=chosen, id_chosen=True)
    submitted = await submit_one(store, job)
    assert submitted.job.id == chosen
    again = await submit_one(store, dataclasses.replace(job))
    assert again.created is False and again.job.id == chosen


async def test_claims_take_from_every_partition(store: RedisStore) -> None:
    """Jobs wait in each partition; one-job claims visit them in turn, none starves."""
    by_part: dict[int, list[str]] = {k: [] for k in range(P)}
    while min(len(v) for v in by_part.values()) < 4:
        job_id = (await submit_one(store, new_job())).job.id
        by_part[partition_of(job_id, P)].append(job_id)
    total = sum(len(v) for v in by_part.values())
    seen: list[int] = []
    for _ in range(P * 2):
        (claimed,) = await store.claim("a", 1, 10.0)
        seen.append(partition_of(claimed.job.id, P))
    assert set(seen[:P]) == set(range(P)), seen
    rest = await store.claim("a", total, 10.0)
    assert len(rest) == total - P * 2
    assert await store.claim("a", 5, 10.0) == []


async def test_a_claim_fills_its_credit_across_partitions(store: RedisStore) -> None:
    ids = {(await submit_one(store, new_job())).job.id for _ in range(10)}
    claimed = await store.claim("a", 10, 10.0)
    assert {c.job.id for c in claimed} == ids


async def woken_by_submits(store: RedisStore, rounds: int) -> list[str]:
    """Each round: an idle wait (timeout 30 s) is ended by one submit, long before its
    timeout, and the job is claimed. Returns the jobs' ids, in order."""
    assert await store.claim("a", 4, 10.0) == []  # every partition seen empty
    ids = []
    for _ in range(rounds):
        async with trio.open_nursery() as nursery:
            done = trio.Event()

            async def wait(done: trio.Event = done) -> None:
                with trio.fail_after(10):
                    await store.wait_for_work(30.0)
                done.set()

            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked(0.05)
            job_id = (await submit_one(store, new_job())).job.id
            with trio.fail_after(10):
                await done.wait()
        (claimed,) = await store.claim("a", 4, 10.0)
        assert claimed.job.id == job_id
        ids.append(job_id)
    return ids


async def test_an_idle_wait_wakes_for_a_submit_in_any_partition(store: RedisStore) -> None:
    """An idle instance blocks on every partition's wake-up list (one BLPOP)."""
    await woken_by_submits(store, P * 2)


async def test_counts_and_recovery_cover_every_partition(store: RedisStore) -> None:
    ids: set[str] = set()
    while len({partition_of(i, P) for i in ids}) < P:  # jobs in every partition
        ids.add((await submit_one(store, new_job())).job.id)
    n = len(ids)
    assert (await store.counts())["Queued"] == n
    claimed = await store.claim("a", n, 0.2)
    assert len(claimed) == n
    with trio.fail_after(10):
        while True:
            report = await store.recover(limit=100)
            if report.reclaimed:
                break
            await trio.sleep(0.05)  # the leases' real TTL (the server's clock) runs out
    with trio.fail_after(10):
        while (await store.counts())["Queued"] < n:
            await store.recover(limit=100)
            await trio.sleep(0.05)
    assert {p.index for c in claimed for p in [store._part(c.job.id)]} == set(range(P))


async def test_a_sweep_that_requeues_jobs_points_claims_at_their_partition(
        store: RedisStore) -> None:
    """The instance whose recovery reclaimed a job claims it next, not after the empty
    mark its claims left on that partition lapses (0.5 s) or an idle backstop."""
    job_id = (await submit_one(store, new_job())).job.id
    assert [c.job.id for c in await store.claim("dead", 1, 0.05)] == [job_id]
    assert await store.claim("a", 2, 10.0) == []  # every partition is marked empty now
    with trio.fail_after(10):
        while not (await store.recover(limit=10)).reclaimed:
            pass  # the lease's 50 ms (the server's clock) runs out; each sweep a round trip
    assert [c.job.id for c in await store.claim("a", 2, 10.0)] == [job_id]


async def test_leases_of_and_heartbeats_span_partitions(store: RedisStore) -> None:
    ids: set[str] = set()
    while len({partition_of(i, P) for i in ids}) < P:
        ids.add((await submit_one(store, new_job())).job.id)
    claimed = await store.claim("a", len(ids), 10.0)
    assert len(claimed) == len(ids)
    leases = [c.lease for c in claimed]
    assert sorted(lease.job_id for lease in await store.leases_of("a")) == sorted(
        lease.job_id for lease in leases)
    reply = await store.heartbeat("a", leases, 10.0)
    assert reply.lost == frozenset()
    stale = [type(lease)(lease.job_id, lease.token + 1, "a") for lease in leases[:3]]
    reply = await store.heartbeat("a", stale, 10.0)
    assert reply.lost == {lease.job_id for lease in stale}


async def test_another_count_is_refused_while_the_queue_holds_jobs(redis_url: str) -> None:
    async with queue_stores(redis_url, "lay", partitions=3) as make:
        first = make()
        await submit_one(first, new_job())
        other = RedisStore(first.client.sibling(max_connections=2), queue=first.queue,
                           partitions=2, owns_client=True)
        single = RedisStore(first.client.sibling(max_connections=2), queue=first.queue,
                            owns_client=True)
        try:
            for wrong in (other, single):
                with pytest.raises(ConfigurationError, match="partitions"):
                    await submit_one(wrong, new_job())
                with pytest.raises(ConfigurationError, match="partitions"):
                    await wrong.claim("b", 1, 5.0)
        finally:
            await other.aclose()
            await single.aclose()


async def test_an_empty_queue_may_change_its_count(redis_url: str) -> None:
    async with queue_stores(redis_url, "lay", partitions=3) as make:
        first = make()
        assert await first.claim("a", 1, 5.0) == []  # records the count
        assert await first.client.execute("GET", f"ae:{{{first.queue}}}:partitions") == b"3"
        again = RedisStore(first.client.sibling(max_connections=2), queue=first.queue,
                           partitions=1, owns_client=True)
        try:
            await submit_one(again, new_job())
            assert await again.client.execute("GET", f"ae:{{{first.queue}}}:partitions") is None
        finally:
            await again.aclose()
        fresh = RedisStore(first.client.sibling(max_connections=2), queue=first.queue,
                           partitions=3, owns_client=True)
        try:
            with pytest.raises(ConfigurationError):
                await fresh.claim("a", 1, 5.0)
        finally:
            await fresh.aclose()


def test_partitions_out_of_range_are_refused() -> None:
    from asyncendpoints_trio import EndpointsConfig
    from asyncendpoints_trio.redis import RedisClient

    for bad in (0, -1, 257, True, 2.0):
        with pytest.raises(ConfigurationError):
            RedisStore(RedisClient.from_url("redis://127.0.0.1:1/0"), partitions=bad)
        with pytest.raises(ConfigurationError):
            EndpointsConfig(partitions=bad)


async def test_order_and_bounds_hold_within_each_partition(store: RedisStore) -> None:
    """Each partition is a line of its own: oldest first, priority a head start, and
    ``max_queued`` bounding each partition's share (max_queued / P, rounded up)."""
    from asyncendpoints_trio.stores._protocol import NewJob

    from ..store_contract import QueueFull, _fields

    news = [new_job(payload=str(i).encode()) for i in range(15)]
    await store.submit(news)
    high = NewJob(**{**_fields(new_job(payload=b'"high"')), "priority": 5})
    await store.submit([high])
    claimed = [c.job.id for c in await store.claim("a", 100, 10.0)]
    assert sorted(claimed) == sorted([n.id for n in news] + [high.id])
    for k in range(P):
        mine = [job_id for job_id in claimed if partition_of(job_id, P) == k]
        expected = [n.id for n in news if partition_of(n.id, P) == k]
        if partition_of(high.id, P) == k:
            expected = [high.id, *expected]
        assert mine == expected, k
    # max_queued=2P: each partition's share is 2 (the claimed jobs no longer count).
    answers = await store.submit([new_job() for _ in range(8 * P)], max_queued=2 * P)
    stored = [a for a in answers if not isinstance(a, QueueFull)]
    assert len(stored) == 2 * P and len(answers) - len(stored) == 6 * P
    assert (await store.counts())["Queued"] == 2 * P


def test_idle_waits_claim_one_partition_each_unless_woken() -> None:
    """The claim order's bookkeeping alone (no Redis): after every partition was found
    empty, an idle wait that timed out opens one partition, the next in turn; a wake-up
    opens its own; marks otherwise hold through the wait, and lapse after EMPTY_FOR."""
    from asyncendpoints_trio.stores._partitions import EMPTY_FOR, ClaimOrder

    order = ClaimOrder(4)
    now = 100.0
    for k in order.order(now):
        order.claimed(k, 8, 0, None, now)
    assert order.order(now) == []
    opened = []
    for _ in range(4):
        now += 5.0  # an idle wait of five seconds, far past EMPTY_FOR
        order.waited(set(), now)
        [k] = order.order(now)
        opened.append(k)
        order.claimed(k, 8, 0, None, now)
    assert sorted(opened) == [0, 1, 2, 3]
    now += 5.0
    order.waited({2}, now)
    assert order.order(now) == [2]
    order.claimed(2, 8, 8, None, now)  # it had work: stays open
    assert set(order.order(now + EMPTY_FOR + 0.01)) == {0, 1, 2, 3}  # busy: marks lapse
