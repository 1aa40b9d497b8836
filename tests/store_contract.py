"""The store contract, as tests. Every store runs this suite unchanged.

A subclass provides a ``store`` fixture. Durations here are short so that the Redis store
can run them on real time; the memory store runs them on Trio's MockClock (autojump), where
``trio.sleep`` only advances virtual time. Sleeps here let *time pass* for leases, delays
and retention; they never stand in for synchronisation.
"""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from typing import Any

import pytest
import trio

from asyncendpoints_trio import (
    TRANSITIONS,
    IdempotencyConflict,
    JobStatus,
    JobStore,
    NewJob,
    QueueFull,
    Submitted,
)
from asyncendpoints_trio.stores._protocol import (
    AckCancel,
    Complete,
    Fail,
    Lease,
    Release,
)

TTL = 0.5
OWNER = "instance-a"
ERROR = {"code": "HandlerError", "message": "boom", "exception": None}


def new_job(
    name: str = "Work",
    payload: bytes = b'{"n":1}',
    *,
    key: str | None = None,
    max_retries: int = 2,
    fingerprint: str | None = None,
) -> NewJob:
    return NewJob(
        id=str(uuid.uuid4()),
        name=name,
        payload=payload,
        max_retries=max_retries,
        idempotency_key=key,
        fingerprint=fingerprint or f"{name}:{payload!r}",
    )


def _fields(job: NewJob) -> dict[str, Any]:
    return {f.name: getattr(job, f.name) for f in dataclasses.fields(job)}


async def submit_one(store: JobStore, job: NewJob | None = None, **kw: Any) -> Submitted:
    [answer] = await store.submit([job or new_job()], **kw)
    assert isinstance(answer, Submitted), answer
    return answer


class StoreContract:
    # False for a store whose queue is several lines (RedisStore(partitions=P)): order is
    # kept within each, which tests/redis/test_redis_partitions.py checks.
    one_line = True

    def needs_one_line(self) -> None:
        if not self.one_line:
            pytest.skip("the order of one line; a partitioned queue keeps it per partition")
    """Inherit and provide ``store`` and ``clock`` fixtures.

    ``clock`` is a ``trio.testing.MockClock`` for stores on Trio's clock (pytest-trio runs
    a test on a clock only when the test itself takes it as an argument), else ``None``.
    """

    async def test_submit_then_get(self, store: JobStore, clock: object) -> None:
        new = new_job(payload=b'{"x":"y"}')
        answer = await submit_one(store, new)
        assert answer.created
        job = await store.get(new.id)
        assert job is not None
        assert (job.id, job.name, job.status, job.payload) == (
            new.id,
            "Work",
            JobStatus.QUEUED,
            b'{"x":"y"}',
        )
        assert job.retry_count == 0 and job.max_retries == 2 and job.token == 0
        assert job.created_at == job.last_updated_at and job.started_at is None
        assert await store.get(str(uuid.uuid4())) is None

    async def test_claim_oldest_first_within_limit(self, store: JobStore, clock: object) -> None:
        self.needs_one_line()
        news = [new_job(payload=str(i).encode()) for i in range(5)]
        await store.submit(news)
        first = await store.claim(OWNER, 2, TTL)
        assert [c.job.id for c in first] == [n.id for n in news[:2]]
        for c in first:
            assert c.job.status is JobStatus.IN_PROGRESS
            assert c.job.owner == OWNER
            assert c.lease.token == c.job.token == 1
            assert c.job.started_at is not None
        rest = await store.claim(OWNER, 10, TTL)
        assert [c.job.id for c in rest] == [n.id for n in news[2:]]
        assert await store.claim(OWNER, 10, TTL) == []

    async def test_complete_and_fencing(self, store: JobStore, clock: object) -> None:
        await submit_one(store)
        [claimed] = await store.claim(OWNER, 1, TTL)
        stale = Lease(claimed.lease.job_id, claimed.lease.token - 1)
        assert await store.finish([Complete(stale, b'"nope"')]) == [False]
        assert await store.finish([Complete(claimed.lease, b'{"ok":true}')]) == [True]
        job = await store.get(claimed.job.id)
        assert job is not None and job.status is JobStatus.COMPLETED
        assert job.result == b'{"ok":true}' and job.completed_at is not None
        # A terminal job refuses every further write, even with the right token.
        assert await store.finish([Complete(claimed.lease, b'"again"')]) == [False]
        assert await store.finish([Fail(claimed.lease, ERROR, None)]) == [False]
        job2 = await store.get(claimed.job.id)
        assert job2 is not None and job2.result == b'{"ok":true}'

    async def test_fail_with_retry_waits_its_delay(self, store: JobStore, clock: object) -> None:
        await submit_one(store)
        [claimed] = await store.claim(OWNER, 1, TTL)
        assert await store.finish([Fail(claimed.lease, ERROR, 1.0)]) == [True]
        job = await store.get(claimed.job.id)
        assert job is not None and job.status is JobStatus.SCHEDULED
        assert (
            job.retry_count == 1 and job.error is not None and job.error["code"] == "HandlerError"
        )
        assert await store.claim(OWNER, 1, TTL) == []  # not before its delay
        await trio.sleep(1.2)
        await store.recover(limit=10)
        [again] = await store.claim(OWNER, 1, TTL)
        assert again.job.id == claimed.job.id and again.lease.token == 2
        assert again.job.retry_count == 1

    async def test_wait_for_work_wakes_when_a_retry_falls_due(
        self, store: JobStore, clock: object
    ) -> None:
        await submit_one(store)
        [claimed] = await store.claim(OWNER, 1, TTL)
        await store.finish([Fail(claimed.lease, ERROR, 0.3)])
        with trio.fail_after(3):
            while not await store.claim(OWNER, 1, TTL):
                await store.wait_for_work(5.0)

    async def test_a_retry_scheduled_while_an_idle_waiter_waits_is_claimed_on_time(
        self, store: JobStore, clock: object
    ) -> None:
        """The dispatcher's way: claim, and when nothing comes, wait. A retry scheduled
        after the wait began (by this instance or another) must still be claimed when due,
        not when the 30 s wait runs out."""
        await submit_one(store)
        [claimed] = await store.claim(OWNER, 1, TTL)
        got: list[float] = []

        async def dispatcher() -> None:
            while not await store.claim(OWNER, 1, TTL):
                await store.wait_for_work(30.0)
            got.append(trio.current_time())

        with trio.fail_after(3):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(dispatcher)
                await trio.sleep(0.1)  # it waits now
                scheduled_at = trio.current_time()
                assert await store.finish([Fail(claimed.lease, ERROR, 0.3)]) == [True]
        assert 0.25 <= got[0] - scheduled_at < 1.5

    async def test_fail_for_good(self, store: JobStore, clock: object) -> None:
        await submit_one(store)
        [claimed] = await store.claim(OWNER, 1, TTL)
        assert await store.finish([Fail(claimed.lease, ERROR, None)]) == [True]
        job = await store.get(claimed.job.id)
        assert job is not None and job.status is JobStatus.FAILED and job.completed_at
        assert job.error is not None and job.error["message"] == "boom"

    async def test_release_returns_job_without_charging(
        self, store: JobStore, clock: object
    ) -> None:
        await submit_one(store)
        [claimed] = await store.claim(OWNER, 1, TTL)
        assert await store.finish([Release(claimed.lease)]) == [True]
        job = await store.get(claimed.job.id)
        assert job is not None and job.status is JobStatus.QUEUED and job.retry_count == 0
        [again] = await store.claim(OWNER, 1, TTL)
        assert again.lease.token == claimed.lease.token + 1
        assert await store.finish([Complete(claimed.lease, b"1")]) == [False]  # old lease

    async def test_heartbeat_keeps_a_lease_alive(self, store: JobStore, clock: object) -> None:
        await submit_one(store)
        [claimed] = await store.claim(OWNER, 1, TTL)
        for _ in range(6):  # 6 * TTL/2 = 3 TTLs in all
            await trio.sleep(TTL / 2)
            reply = await store.heartbeat(OWNER, [claimed.lease], TTL)
            assert not reply.lost and not reply.cancel_requested
            report = await store.recover(limit=10)
            assert report.reclaimed == 0
        job = await store.get(claimed.job.id)
        assert job is not None and job.status is JobStatus.IN_PROGRESS

    async def test_expired_lease_is_reclaimed_and_fenced(
        self, store: JobStore, clock: object
    ) -> None:
        await submit_one(store)
        [claimed] = await store.claim(OWNER, 1, TTL)
        await trio.sleep(TTL * 1.5)
        report = await store.recover(limit=10)
        assert report.reclaimed == 1
        job = await store.get(claimed.job.id)
        assert job is not None and job.status is JobStatus.QUEUED and job.retry_count == 1
        assert job.error is not None and job.error["code"] == "LeaseExpired"
        assert (await store.recover(limit=10)).reclaimed == 0  # idempotent
        reply = await store.heartbeat(OWNER, [claimed.lease], TTL)
        assert reply.lost == {claimed.job.id}
        [peer] = await store.claim("instance-b", 1, TTL)
        assert peer.job.owner == "instance-b" and peer.lease.token == claimed.lease.token + 1
        # The zombie's late write is refused; the peer's lands.
        assert await store.finish([Complete(claimed.lease, b'"zombie"')]) == [False]
        assert await store.finish([Complete(peer.lease, b'"peer"')]) == [True]
        done = await store.get(claimed.job.id)
        assert done is not None and done.result == b'"peer"'

    async def test_expired_lease_without_retries_fails(
        self, store: JobStore, clock: object
    ) -> None:
        await submit_one(store, new_job(max_retries=0))
        [claimed] = await store.claim(OWNER, 1, TTL)
        await trio.sleep(TTL * 1.5)
        report = await store.recover(limit=10)
        assert report.expired_failed == 1
        job = await store.get(claimed.job.id)
        assert job is not None and job.status is JobStatus.FAILED

    async def test_recover_is_bounded(self, store: JobStore, clock: object) -> None:
        await store.submit([new_job(payload=str(i).encode()) for i in range(5)])
        await store.claim(OWNER, 5, TTL)
        await trio.sleep(TTL * 1.5)
        assert (await store.recover(limit=2)).reclaimed == 2
        assert (await store.recover(limit=10)).reclaimed == 3

    async def test_idempotent_submit(self, store: JobStore, clock: object) -> None:
        first = await submit_one(store, new_job(key="k1", payload=b"1"))
        again = await submit_one(store, new_job(key="k1", payload=b"1"))
        assert again.job.id == first.job.id and not again.created
        [conflict] = await store.submit([new_job(key="k1", payload=b"2")])
        assert isinstance(conflict, IdempotencyConflict) and conflict.job_id == first.job.id

    async def test_idempotent_submit_in_one_batch_and_concurrently(
        self, store: JobStore, clock: object
    ) -> None:
        answers = await store.submit([new_job(key="b", payload=b"1") for _ in range(3)])
        ids = {a.job.id for a in answers if isinstance(a, Submitted)}
        assert len(ids) == 1 and [a.created for a in answers if isinstance(a, Submitted)] == [
            True,
            False,
            False,
        ]
        seen: list[Submitted] = []

        async def one() -> None:
            seen.append(await submit_one(store, new_job(key="c", payload=b"1")))

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(one)
        assert len({s.job.id for s in seen}) == 1 and sum(s.created for s in seen) == 1

    async def test_duplicate_job_id_is_refused(self, store: JobStore, clock: object) -> None:
        new = new_job()
        await submit_one(store, new)
        [answer] = await store.submit(
            [NewJob(id=new.id, name="Other", payload=b"2", max_retries=0)]
        )
        assert isinstance(answer, IdempotencyConflict)
        job = await store.get(new.id)
        assert job is not None and job.name == "Work"

    async def test_same_id_and_request_again_is_the_same_job(
        self, store: JobStore, clock: object
    ) -> None:
        """A submit sent again after its reply was lost carries the same id: it finds the
        job the first one stored, rather than storing a second or answering a conflict."""
        new = new_job()
        await submit_one(store, new)
        [again] = await store.submit([new])
        assert isinstance(again, Submitted) and not again.created
        assert again.job.id == new.id and again.job.payload == new.payload
        [claimed] = await store.claim(OWNER, 5, 10.0)
        assert claimed.job.id == new.id
        assert await store.claim(OWNER, 5, 10.0) == []  # queued once, not twice

    async def test_queue_full(self, store: JobStore, clock: object) -> None:
        self.needs_one_line()
        answers = await store.submit(
            [new_job(payload=str(i).encode()) for i in range(3)], max_queued=2
        )
        assert [type(a) for a in answers] == [Submitted, Submitted, QueueFull]
        await store.claim(OWNER, 1, TTL)
        assert isinstance((await store.submit([new_job()], max_queued=2))[0], Submitted)

    async def test_cancel_waiting_jobs(self, store: JobStore, clock: object) -> None:
        queued = await submit_one(store)
        job = await store.cancel(queued.job.id)
        assert job is not None and job.status is JobStatus.CANCELED and job.completed_at
        await submit_one(store)
        [claimed] = await store.claim(OWNER, 1, TTL)
        assert claimed.job.id != queued.job.id  # a canceled job is never claimed
        await store.finish([Fail(claimed.lease, ERROR, 0.5)])
        scheduled = await store.cancel(claimed.job.id)
        assert scheduled is not None and scheduled.status is JobStatus.CANCELED
        await trio.sleep(0.7)
        await store.recover(limit=10)
        assert await store.claim(OWNER, 5, TTL) == []
        assert await store.cancel(str(uuid.uuid4())) is None

    async def test_cancel_running_job(self, store: JobStore, clock: object) -> None:
        await submit_one(store)
        [claimed] = await store.claim(OWNER, 1, TTL)
        job = await store.cancel(claimed.job.id)
        assert job is not None and job.status is JobStatus.IN_PROGRESS and job.cancel_requested
        reply = await store.heartbeat(OWNER, [claimed.lease], TTL)
        assert reply.cancel_requested == {claimed.job.id} and not reply.lost
        assert await store.finish([AckCancel(claimed.lease)]) == [True]
        done = await store.get(claimed.job.id)
        assert done is not None and done.status is JobStatus.CANCELED
        again = await store.cancel(claimed.job.id)  # terminal: unchanged
        assert again is not None and again.status is JobStatus.CANCELED

    async def test_cancel_request_outranks_a_retry(self, store: JobStore, clock: object) -> None:
        await submit_one(store)
        [claimed] = await store.claim(OWNER, 1, TTL)
        await store.cancel(claimed.job.id)
        assert await store.finish([Fail(claimed.lease, ERROR, 0.1)]) == [True]
        job = await store.get(claimed.job.id)
        assert job is not None and job.status is JobStatus.CANCELED

    async def test_wait_for_terminal(self, store: JobStore, clock: object) -> None:
        queued = await submit_one(store)
        timed_out = await store.wait_for_terminal(queued.job.id, 0.2)
        assert timed_out is not None and timed_out.status is JobStatus.QUEUED
        assert await store.wait_for_terminal(str(uuid.uuid4()), 0.1) is None
        [claimed] = await store.claim(OWNER, 1, TTL)
        seen: list[Any] = []

        async def waiter() -> None:
            seen.append(await store.wait_for_terminal(queued.job.id, 5.0))

        with trio.fail_after(3):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(waiter)
                await trio.sleep(0.1)
                await store.finish([Complete(claimed.lease, b"7")])
        assert seen[0].status is JobStatus.COMPLETED and seen[0].result == b"7"

    async def test_delayed_submit_starts_on_time(self, store: JobStore, clock: object) -> None:
        """A job asked to start later is Scheduled, shows when, and is claimable then: an idle
        waiter learns the due time and wakes for it, without polling."""
        delayed = new_job()
        delayed = NewJob(**{**_fields(delayed), "delay": 0.6})
        [answer] = await store.submit([delayed])
        assert isinstance(answer, Submitted) and answer.job.status is JobStatus.SCHEDULED
        job = await store.get(delayed.id)
        assert job is not None and job.status is JobStatus.SCHEDULED and job.due_at is not None
        assert job.due_at == pytest.approx(job.created_at + 0.6, abs=0.01)
        assert await store.claim(OWNER, 1, TTL) == []
        started = trio.current_time()
        with trio.fail_after(3):
            while not (claimed := await store.claim(OWNER, 1, TTL)):
                await store.wait_for_work(5.0)
        waited = trio.current_time() - started
        assert claimed[0].job.id == delayed.id and claimed[0].job.due_at == job.due_at
        assert 0.5 <= waited < 1.5
        # Cancelling a delayed job works like cancelling a retry.
        later = NewJob(**{**_fields(new_job()), "delay": 30.0})
        await store.submit([later])
        canceled = await store.cancel(later.id)
        assert canceled is not None and canceled.status is JobStatus.CANCELED

    async def test_priority_is_a_bounded_head_start(self, store: JobStore, clock: object) -> None:
        self.needs_one_line()
        low = [new_job(payload=f'"low{i}"'.encode()) for i in range(3)]
        high = NewJob(**{**_fields(new_job(payload=b'"high"')), "priority": 5})
        await store.submit(low)
        await store.submit([high])
        order = [c.job.id for c in await store.claim(OWNER, 10, TTL)]
        assert order == [high.id] + [j.id for j in low]  # it overtook the three before it
        job = await store.get(high.id)
        assert job is not None and job.priority == 5
        # Released jobs still come first, whatever their priority.
        assert await store.finish([Release(Lease(low[0].id, 1, OWNER))]) == [True]
        again = NewJob(**{**_fields(new_job()), "priority": 9})
        await store.submit([again])
        first = await store.claim(OWNER, 1, TTL)
        assert [c.job.id for c in first] == [low[0].id]

    async def test_attempts_are_kept_past_a_success(self, store: JobStore, clock: object) -> None:
        await submit_one(store, new_job(max_retries=3))
        [first] = await store.claim(OWNER, 1, TTL)
        assert await store.finish([Fail(first.lease, ERROR, 0.0)]) == [True]
        await trio.sleep(0.01)
        [second] = await store.claim(OWNER, 1, TTL)
        assert await store.finish([Release(second.lease, ran=True)]) == [True]
        [third] = await store.claim(OWNER, 1, TTL)
        assert await store.finish([Complete(third.lease, b'"ok"')]) == [True]
        job = await store.get(first.job.id)
        assert job is not None and job.status is JobStatus.COMPLETED and job.error is None
        assert [(a.number, a.outcome, a.error_code) for a in job.attempts] == [
            (1, "Retrying", "HandlerError"), (2, "Released", None), (2, "Completed", None)]
        assert all(a.started_at is not None and a.ended_at >= a.started_at
                   for a in job.attempts)
        # The common case costs no history: a first run that completed.
        plain = await submit_one(store)
        [run] = await store.claim(OWNER, 1, TTL)
        await store.finish([Complete(run.lease, b"1")])
        done = await store.get(plain.job.id)
        assert done is not None and done.attempts == ()

    async def test_timestamps_keep_microseconds_and_principal_is_kept(
        self, store: JobStore, clock: object
    ) -> None:
        trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        owned = NewJob(**{**_fields(new_job()), "principal": "tenant-7", "trace": trace})
        await store.submit([owned])
        await trio.sleep(0.0123)
        [_claimed] = await store.claim(OWNER, 1, TTL)
        job = await store.get(owned.id)
        assert job is not None and job.principal == "tenant-7" and job.trace == trace
        assert _claimed.job.trace == trace  # the worker gets it with the claim
        assert job.started_at is not None
        if clock is None:  # on real time (a MockClock does not move the wall clock)
            gap = job.started_at - job.created_at
            # At least the sleep (no upper bound: a loaded machine stretches it), and kept to
            # the microsecond, not rounded to milliseconds.
            assert gap >= 0.0123 - 0.001 and round(gap, 3) != round(gap, 6)

    async def test_wait_for_work_wakes_on_submit(self, store: JobStore, clock: object) -> None:
        woke = trio.Event()

        async def waiter() -> None:
            await store.wait_for_work(30.0)
            woke.set()

        with trio.fail_after(3):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(waiter)
                await trio.sleep(0.1)
                assert not woke.is_set()
                await submit_one(store)
                await woke.wait()

    async def test_retention_purges_terminal_jobs_and_keys(
        self, store: JobStore, clock: object
    ) -> None:
        retention: float = store.retention  # type: ignore[attr-defined]
        keep = await submit_one(store)
        done = await submit_one(store, new_job(key="r", payload=b"1"))
        claims = await store.claim(OWNER, 2, TTL)
        lease = next(c.lease for c in claims if c.job.id == done.job.id)
        await store.finish([Complete(lease, b"1")])
        await trio.sleep(retention + 0.5)
        await store.recover(limit=100)
        assert await store.get(done.job.id) is None
        assert await store.get(keep.job.id) is not None  # not terminal: kept
        fresh = await submit_one(store, new_job(key="r", payload=b"2"))  # the key was freed
        assert fresh.created

    async def test_observed_transitions_follow_the_table(
        self, store: JobStore, clock: object
    ) -> None:
        await submit_one(store)
        statuses = [JobStatus.QUEUED]
        [c] = await store.claim(OWNER, 1, TTL)
        statuses.append(c.job.status)
        await store.finish([Fail(c.lease, ERROR, 0.0)])
        statuses.append((await store.get(c.job.id)).status)  # type: ignore[union-attr]
        await trio.sleep(0.05)
        await store.recover(limit=10)
        [c2] = await store.claim(OWNER, 1, TTL)
        statuses.append(c2.job.status)
        await store.finish([Complete(c2.lease, b"1")])
        statuses.append((await store.get(c.job.id)).status)  # type: ignore[union-attr]
        assert statuses == ["Queued", "InProgress", "Scheduled", "InProgress", "Completed"]
        for old, new in itertools.pairwise(statuses):
            assert new in TRANSITIONS[old] or (old, new) == ("Scheduled", "InProgress")

    @pytest.mark.parametrize("count", [1, 50])
    async def test_batched_outcomes(self, store: JobStore, clock: object, count: int) -> None:
        await store.submit([new_job(payload=str(i).encode()) for i in range(count)])
        claims = await store.claim(OWNER, count, TTL)
        applied = await store.finish([Complete(c.lease, b"1") for c in claims])
        assert applied == [True] * count
        reply = await store.heartbeat(OWNER, [c.lease for c in claims], TTL)
        assert reply.lost == {c.job.id for c in claims}
