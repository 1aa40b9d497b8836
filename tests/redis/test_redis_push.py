"""Push dispatch on the Redis store: a submit leases a new job straight to an idle instance
blocked on its inbox. A pushed job that never started goes back uncharged, however its
instance lost it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import pytest
import trio

from asyncendpoints_trio import AsyncContext, EndpointsConfig, JobStatus, RedisConnectionError
from asyncendpoints_trio.redis import RedisClient
from asyncendpoints_trio.stores._protocol import Claimed, IdleOffer, Release
from asyncendpoints_trio.stores._redis import _REGISTER, RedisStore

from .._redis_server import RedisServer
from .._runtime_kit import new, registry, running, wait_terminal
from ..faultproxy import FaultProxy
from ..store_contract import new_job, submit_one
from .conftest import fast_settings

TTL = 0.5


S = TypeVar("S", bound=RedisStore)


def make_store(url: str, *, queue: str | None = None, **settings: Any) -> RedisStore:
    return make(RedisStore, url, queue=queue, **settings)


def make(cls: type[S], url: str, *, queue: str | None = None, **settings: Any) -> S:
    return cls(RedisClient(fast_settings(url, **settings)),
               queue=queue or f"p-{uuid.uuid4().hex[:8]}", owns_client=True)


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    store = make_store(redis_url)
    yield store
    keys = await store.client.execute("KEYS", f"ae:{{{store.queue}}}:*")
    if keys:
        await store.client.execute("DEL", *keys)
    await store.aclose()


async def register(store: RedisStore, owner: str, free: int, *, wait: float = 30.0,
                   lease_ttl: float = TTL) -> int:
    """What an idle wait sends before its BLPOP, without the BLPOP: pushed jobs stay in
    the inbox, as they do for an instance that has not popped them yet."""
    return int(await store.client.execute(
        "EVAL", _REGISTER, 3, store.keys.idle, store.keys.inbox(owner), store.keys.leases,
        owner, free, int(lease_ttl * 1000), int(wait * 1000)))


async def inbox_length(store: RedisStore, owner: str) -> int:
    return int(await store.client.execute("LLEN", store.keys.inbox(owner)))


async def until_registered(store: RedisStore) -> None:
    # Polls the server, which has no event for it; each poll is a round trip, and the
    # caller bounds the wait.
    while not await store.client.execute("HLEN", store.keys.idle):
        pass


async def recovered(store: RedisStore) -> None:
    """Sweep until a lease was reclaimed (the real TTL has to pass on the server)."""
    await trio.sleep(TTL)  # time passes: the lease expires
    while not (await store.recover(limit=10)).reclaimed:
        pass  # a round trip each; the caller bounds the wait


async def test_a_blocked_idle_wait_returns_the_submitted_job_leased(
        store: RedisStore) -> None:
    got: list[Claimed] = []

    async def wait() -> None:
        got.extend(await store.wait_for_work(10.0, IdleOffer("a", 2, 5.0)))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await until_registered(store)
            submitted = await submit_one(store, new_job())
    [claimed] = got
    assert claimed.job.id == submitted.job.id and claimed.job.payload == b'{"n":1}'
    assert claimed.lease.token == 1 and claimed.lease.owner == "a"
    job = await store.get(claimed.job.id)
    assert job is not None and job.status is JobStatus.IN_PROGRESS and job.owner == "a"
    assert job.retry_count == 0 and job.started_at is not None
    assert await store.client.execute("ZSCORE", store.keys.leases, job.id) is not None
    # Its lease is the store's like any other: renewed, finished, fenced.
    assert not (await store.heartbeat("a", [claimed.lease], 5.0)).lost
    assert await store.finish([Release(claimed.lease)]) == [True]
    assert store.statistics()["pushed_jobs"] == 1


async def test_no_push_ahead_of_jobs_that_wait(store: RedisStore) -> None:
    first = await submit_one(store, new_job())
    await register(store, "a", 4)
    second = await submit_one(store, new_job())
    assert await inbox_length(store, "a") == 0
    [one, two] = await store.claim("b", 4, 5.0)
    assert [one.job.id, two.job.id] == [first.job.id, second.job.id]


async def test_a_registration_expires_on_its_own(store: RedisStore) -> None:
    await register(store, "a", 4, wait=0.05)
    await trio.sleep(0.1)  # time passes: the registration lapses
    job = (await submit_one(store, new_job())).job
    assert await inbox_length(store, "a") == 0
    assert (await store.get(job.id)).status is JobStatus.QUEUED  # type: ignore[union-attr]
    assert not await store.client.execute("HLEN", store.keys.idle)


async def test_pushes_stop_at_the_offered_credit(store: RedisStore) -> None:
    await register(store, "a", 2)
    ids = [s.job.id for s in await store.submit([new_job() for _ in range(3)])  # type: ignore
           ]
    assert await inbox_length(store, "a") == 2
    assert not await store.client.execute("HEXISTS", store.keys.idle, "a")
    # A claim of that instance takes its inbox first (same tokens), then the queue.
    claimed = await store.claim("a", 3, 5.0)
    assert [c.job.id for c in claimed] == ids
    assert [c.lease.token for c in claimed] == [1, 1, 1]
    assert await inbox_length(store, "a") == 0


async def test_a_pushed_job_whose_pop_reply_was_lost_comes_back_uncharged(
        private_server: RedisServer) -> None:
    submitter = make_store(private_server.url)
    async with trio.open_nursery() as nursery:
        proxy = FaultProxy(("127.0.0.1", private_server.port))
        port = await nursery.start(proxy.run)
        waiter = make_store(f"redis://127.0.0.1:{port}", queue=submitter.queue,
                            read_timeout=0.5)
        try:
            with trio.fail_after(10):
                nursery.start_soon(waiter.wait_for_work, 30.0, IdleOffer("a", 1, TTL))
                await until_registered(submitter)
                proxy.stall()  # the pop's reply will not get through
                job = (await submit_one(submitter, new_job())).job
                assert await inbox_length(submitter, "a") == 0  # popped on the server
                pushed = await submitter.get(job.id)
                assert pushed is not None and pushed.status is JobStatus.IN_PROGRESS
                nursery.cancel_scope.cancel()  # the waiter's pop is cut off: reply lost
        finally:
            proxy.resume()
            await waiter.aclose()
    try:
        with trio.fail_after(10):
            await recovered(submitter)
        back = await submitter.get(job.id)
        assert back is not None and back.status is JobStatus.QUEUED
        assert back.retry_count == 0 and back.error is None and back.attempts == ()
        [again] = await submitter.claim("b", 1, 5.0)
        assert again.job.id == job.id and again.lease.token == 2 and again.job.retry_count == 0
    finally:
        await submitter.aclose()


async def test_a_started_pushed_job_is_charged_like_a_claimed_one(store: RedisStore) -> None:
    await register(store, "a", 1)
    job = (await submit_one(store, new_job())).job
    [claimed] = await store.claim("a", 1, TTL)  # taken from the inbox
    assert not (await store.heartbeat("a", [claimed.lease], TTL)).lost  # started
    with trio.fail_after(10):
        await recovered(store)
    back = await store.get(job.id)
    assert back is not None and back.status is JobStatus.QUEUED and back.retry_count == 1


async def test_an_unpopped_pushed_job_whose_instance_died_comes_back_uncharged(
        store: RedisStore) -> None:
    await register(store, "a", 1)
    job = (await submit_one(store, new_job())).job
    with trio.fail_after(10):
        await recovered(store)
    assert await inbox_length(store, "a") == 0
    assert not await store.client.execute("HLEN", store.keys.idle)
    back = await store.get(job.id)
    assert back is not None and back.status is JobStatus.QUEUED and back.retry_count == 0
    [again] = await store.claim("b", 1, 5.0)
    assert again.job.id == job.id and again.lease.token == 2


async def test_cancel_of_an_unpopped_pushed_job_ends_it_at_once(store: RedisStore) -> None:
    await register(store, "a", 1)
    job = (await submit_one(store, new_job())).job
    assert await inbox_length(store, "a") == 1  # pushed, not popped
    canceled = await store.cancel(job.id)
    assert canceled is not None and canceled.status is JobStatus.CANCELED
    assert await inbox_length(store, "a") == 0
    assert await store.client.execute("ZSCORE", store.keys.leases, job.id) is None
    assert await store.claim("a", 1, 5.0) == []


async def test_a_stopping_wait_hands_its_inbox_back(store: RedisStore) -> None:
    await register(store, "a", 2)
    ids = [s.job.id for s in await store.submit([new_job(), new_job()])]  # type: ignore
    assert await inbox_length(store, "a") == 2
    await store._unidle("a")
    assert await inbox_length(store, "a") == 0
    for job_id in ids:
        job = await store.get(job_id)
        assert job is not None and job.status is JobStatus.QUEUED and job.retry_count == 0
    claimed = await store.claim("b", 2, 5.0)
    assert sorted(c.job.id for c in claimed) == sorted(ids)


async def test_a_release_of_an_unpopped_pushed_job_empties_the_inbox(
        store: RedisStore) -> None:
    await register(store, "a", 1)
    job = (await submit_one(store, new_job())).job
    [lease] = await store.leases_of("a")  # the reconciliation after a reconnect sees it
    assert lease.job_id == job.id
    assert await store.finish([Release(lease)]) == [True]
    assert await inbox_length(store, "a") == 0
    back = await store.get(job.id)
    assert back is not None and back.status is JobStatus.QUEUED and back.retry_count == 0


class CountsClaims(RedisStore):
    claims = 0

    async def claim(self, owner: str, limit: int, lease_ttl: float) -> list[Claimed]:
        self.claims += 1
        return await super().claim(owner, limit, lease_ttl)


async def test_an_idle_instance_runs_a_submitted_job_with_no_claim(redis_url: str) -> None:
    async def work(ctx: AsyncContext[Any]) -> str:
        return "ran"

    store = make(CountsClaims, redis_url)
    try:
        async with running(registry(Work=work), EndpointsConfig(lease_ttl=30.0),
                           store) as rt:
            with trio.fail_after(10):
                await until_registered(store)
                before = store.claims
                job_id = (await rt.submit(new("Work"))).job.id
                job = await wait_terminal(rt, job_id)
                stats = rt.statistics().dispatcher
    finally:
        await store.aclose()
    assert job.status is JobStatus.COMPLETED and job.retry_count == 0
    assert store.claims == before  # the job came with the idle wait's pop
    assert stats is not None and stats.pushed_jobs == 1


class LosesPushedReplies(RedisStore):
    """The first idle wait that receives a pushed job loses it, as a cut link would."""

    lose = 1

    async def wait_for_work(self, timeout: float, idle: IdleOffer | None = None) -> Any:
        pushed = await super().wait_for_work(timeout, idle)
        if pushed and self.lose:
            self.lose -= 1
            raise RedisConnectionError("injected: the link broke before the reply")
        return pushed


async def test_a_pushed_job_whose_reply_was_lost_runs_at_once_uncharged(
        redis_url: str) -> None:
    ran: list[int] = []

    async def once(ctx: AsyncContext[Any]) -> str:
        ran.append(ctx.attempt)
        return "ran"

    store = make(LosesPushedReplies, redis_url)
    config = EndpointsConfig(lease_ttl=30.0, heartbeat_interval=5.0, restart_backoff_max=0.2)
    try:
        async with running(registry(Once=once), config, store) as rt:
            with trio.fail_after(10):  # not after the 30 s lease
                await until_registered(store)
                job_id = (await rt.submit(new("Once", max_retries=0))).job.id
                job = await wait_terminal(rt, job_id)
            released = rt.statistics().dispatcher.orphans_released  # type: ignore[union-attr]
    finally:
        await store.aclose()
    assert job.status is JobStatus.COMPLETED and job.retry_count == 0 and ran == [1]
    assert released == 1 and store.lose == 0


async def test_a_new_wait_renews_the_leases_of_jobs_waiting_in_its_inbox(
        store: RedisStore) -> None:
    """The dispatcher counts a popped job's lease from the moment it sent that pop; a job
    pushed before (between two waits) must not expire earlier on the server."""
    await register(store, "a", 2, lease_ttl=1.0)
    job = (await submit_one(store, new_job())).job
    pushed_deadline = float(await store.client.execute("ZSCORE", store.keys.leases, job.id))
    assert await register(store, "a", 2, lease_ttl=60.0) == 1  # one credit is in the inbox
    renewed = float(await store.client.execute("ZSCORE", store.keys.leases, job.id))
    assert renewed >= pushed_deadline + 50_000
