"""The reviewer's failures, on a real redis-server: each of these failed on the old main."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from asyncendpoints_trio import (
    AsyncContext,
    EndpointsConfig,
    JobStatus,
    RedisConnectionError,
    StoreUnavailable,
    Submitted,
)
from asyncendpoints_trio.redis import RedisClient
from asyncendpoints_trio.stores._protocol import Fail
from asyncendpoints_trio.stores._redis import RedisStore

from .._redis_server import RedisServer
from .._runtime_kit import new, registry, running, wait_terminal
from ..store_contract import new_job, submit_one
from .conftest import fast_settings

ERROR = {"code": "HandlerError", "message": "boom", "exception": None}


def make_store(url: str, cls: type[RedisStore] = RedisStore, **settings: Any) -> RedisStore:
    return cls(RedisClient(fast_settings(url, **settings)), queue=f"f-{uuid.uuid4().hex[:8]}",
               owns_client=True)


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    store = make_store(redis_url)
    yield store
    await store.aclose()


class ReadsFail(RedisStore):
    """Every plain read fails: only what the scripts themselves answer gets through."""

    async def get(self, job_id: str) -> Any:
        raise StoreUnavailable("injected: reads fail")


async def test_a_replay_in_a_group_commit_needs_no_extra_read(redis_url: str) -> None:
    """A batch holding an idempotent replay answered 503 for all of its jobs when the read
    made for the replay failed, though the others were stored (and clients then resubmit,
    making duplicates)."""
    store = make_store(redis_url, ReadsFail)
    try:
        first = new_job(key="k-1")
        await submit_one(store, first)
        replay = new_job(key="k-1")  # the same request (fingerprint), another job id
        assert replay.fingerprint == first.fingerprint
        answers = await store.submit([new_job(), replay, new_job()])
    finally:
        await store.aclose()
    assert [type(a) for a in answers] == [Submitted, Submitted, Submitted]
    assert [a.created for a in answers] == [True, False, True]  # type: ignore[union-attr]
    assert answers[1].job.id == first.id  # type: ignore[union-attr]


async def test_a_zero_second_retry_is_not_hidden_by_a_later_one(store: RedisStore) -> None:
    await store.submit([new_job(), new_job()])
    claims = await store.claim("a", 2, 10.0)
    assert await store.finish([Fail(claims[0].lease, ERROR, 0.0),
                               Fail(claims[1].lease, ERROR, 50.0)]) == [True, True]
    with trio.fail_after(2):  # the old soonest-retry sum waited for the 50 s one
        await store.wait_for_work(30.0)
        [again] = await store.claim("a", 2, 10.0)
    assert again.job.id == claims[0].job.id and again.job.retry_count == 1


async def test_cancelling_a_queued_job_does_not_scan_the_queue(store: RedisStore) -> None:
    ids = [(await submit_one(store)).job.id for _ in range(200)]
    info = await store.client.execute("INFO", "commandstats")
    before = info.count(b"cmdstat_lrem")
    canceled = await store.cancel(ids[100])
    assert canceled is not None and canceled.status is JobStatus.CANCELED
    assert await store.client.execute("TYPE", store.keys.ready) == b"zset"
    info = await store.client.execute("INFO", "commandstats")
    assert info.count(b"cmdstat_lrem") == before == 0  # ZREM, O(log n): no LREM at all
    claimed = await store.claim("a", 300, 10.0)
    order = [c.job.id for c in claimed]
    assert order == ids[:100] + ids[101:]  # still first in, first out


class LosesClaimReplies(RedisStore):
    """The first claim that takes a job is applied, then its reply is lost. It pushes no
    jobs (idle waits take no offer), so every job comes through a claim."""

    lose = 1

    async def wait_for_work(self, timeout: float, idle: Any = None) -> Any:
        return await super().wait_for_work(timeout)

    async def claim(self, owner: str, limit: int, lease_ttl: float) -> Any:
        claimed = await super().claim(owner, limit, lease_ttl)
        if claimed and self.lose:
            self.lose -= 1
            raise RedisConnectionError("injected: the link broke before the reply")
        return claimed


async def test_a_claim_whose_reply_was_lost_runs_at_once_uncharged(redis_url: str) -> None:
    ran: list[int] = []

    async def once(ctx: AsyncContext[Any]) -> str:
        ran.append(ctx.attempt)
        return "ran"

    store = make_store(redis_url, LosesClaimReplies)
    config = EndpointsConfig(lease_ttl=30.0, heartbeat_interval=5.0, restart_backoff_max=0.2)
    try:
        async with running(registry(Once=once), config, store) as rt:
            job_id = (await rt.submit(new("Once", max_retries=0))).job.id
            with trio.fail_after(10):  # not after the 30 s lease
                job = await wait_terminal(rt, job_id)
            released = rt.statistics().dispatcher.orphans_released
    finally:
        await store.aclose()
    assert job.status is JobStatus.COMPLETED and job.retry_count == 0 and ran == [1]
    assert released == 1


async def test_heartbeats_do_not_wait_behind_a_busy_pool(redis_url: str) -> None:
    """Every connection of the main pool is busy (a burst of HTTP reads, here: blocking
    pops): renewals and claims still go through at once, on the store's control pool."""
    store = make_store(redis_url, max_connections=2, acquire_timeout=5.0)
    try:
        await submit_one(store)
        [claimed] = await store.claim("a", 1, 10.0)
        async with trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(lambda: store.client.blocking(
                    "BLPOP", f"nothing-{uuid.uuid4().hex}", timeout=3))
            with trio.fail_after(5):  # until the pops hold both connections
                while store.client.statistics().slots_available:  # noqa: ASYNC110
                    await trio.sleep(0.01)
            with trio.fail_after(1):
                reply = await store.heartbeat("a", [claimed.lease], 10.0)
                await store.claim("a", 1, 10.0)
            nursery.cancel_scope.cancel()
    finally:
        await store.aclose()
    assert not reply.lost


async def test_a_result_redis_cannot_take_fails_only_its_job() -> None:
    """Over ``proto-max-bulk-len`` Redis refuses the request: that result's job fails with
    OutcomeUnwritable; the outcomes batched with it are stored, nothing is wedged."""
    gate = trio.Event()
    all_started = trio.Event()
    started = 0

    async def sized(ctx: AsyncContext[int]) -> str:
        nonlocal started
        started += 1
        if started == 6:
            all_started.set()
        await gate.wait()  # they end together, so their outcomes share a batch
        return "z" * ctx.request

    with RedisServer() as server:
        store = make_store(server.url)
        await store.client.execute("CONFIG", "SET", "proto-max-bulk-len", str(1024 * 1024))
        config = EndpointsConfig(concurrency=6, prefetch=0, lease_ttl=10.0,
                                 heartbeat_interval=2.0)
        try:
            async with running(registry(Sized=sized), config, store) as rt:
                sizes = [10, 10, 1_500_000, 10, 10, 10]
                ids = [(await rt.submit(new("Sized", size, max_retries=0))).job.id
                       for size in sizes]
                with trio.fail_after(10):
                    await all_started.wait()
                gate.set()
                with trio.fail_after(30):
                    jobs = [await wait_terminal(rt, i) for i in ids]
        finally:
            await store.aclose()
    assert [j.status for j in jobs] == [JobStatus.COMPLETED] * 2 + [JobStatus.FAILED] + \
        [JobStatus.COMPLETED] * 3
    assert jobs[2].error is not None and jobs[2].error["code"] == "OutcomeUnwritable"
