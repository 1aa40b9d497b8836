"""One outcome that cannot be written never wedges the instance; batches are bounded by bytes.

The reviewer's case: the writer retried a failing batch forever, so one result the store
could never take (over Redis' ``proto-max-bulk-len``; a batch that cannot be sent within
``write_timeout``) blocked every later outcome, leases were kept forever, and the workers
blocked on a full channel. (The same on a real redis-server: tests/redis/.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import trio
import trio.testing

from asyncendpoints_trio import AsyncContext, EndpointsConfig, JobStatus, MemoryStore, NewJob
from asyncendpoints_trio._errors import ReplicationTimeout
from asyncendpoints_trio.runtime._outcomes import SUSPECT_AFTER
from asyncendpoints_trio.stores._protocol import Complete, Outcome

from .._runtime_kit import new, registry, restarts, running, wait_terminal
from ..faultstore import FaultyStore


def _poisoned(args: tuple[Any, ...]) -> bool:
    return any(isinstance(o, Complete) and b"poison" in o.result for o in args[0])


async def test_an_unwritable_outcome_is_isolated(autojump_clock: trio.testing.MockClock) -> None:
    gate = trio.Event()

    async def work(ctx: AsyncContext[str]) -> str:
        await gate.wait()  # all finish together, so their outcomes share one batch
        return ctx.request

    store = FaultyStore(MemoryStore())
    # Any batch holding the poisoned result gets an error reply, every time.
    store.inject("finish", "error", times=float("inf"), when=_poisoned)
    config = EndpointsConfig(concurrency=10, prefetch=0)
    async with running(registry(Work=work), config, store) as rt:
        ids = [(await rt.submit(new("Work", text))).job.id
               for text in ["ok"] * 4 + ["poison"] + ["ok"] * 5]
        await trio.testing.wait_all_tasks_blocked()
        gate.set()
        jobs = [await wait_terminal(rt, i) for i in ids]
        stats = rt.statistics().outcomes
        assert restarts(rt)["outcomes"] == 0 and len(rt.held) == 0
    statuses = [j.status for j in jobs]
    assert statuses == [JobStatus.COMPLETED] * 4 + [JobStatus.FAILED] + \
        [JobStatus.COMPLETED] * 5
    poisoned = jobs[4]
    assert poisoned.error is not None and poisoned.error["code"] == "OutcomeUnwritable"
    assert "injected error reply" in poisoned.error["message"]
    assert stats.splits >= 1 and stats.unwritable == 1


async def test_a_write_that_keeps_failing_in_transit_while_the_store_answers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Redis drops the connection of a request it will not take: a 'transient' error for
    that write only. Reads still work, so the writer isolates the write after a few tries."""

    async def work(ctx: AsyncContext[str]) -> str:
        return ctx.request

    store = FaultyStore(MemoryStore())
    store.inject("finish", "fail", times=float("inf"), when=_poisoned)
    async with running(registry(Work=work), EndpointsConfig(concurrency=1), store) as rt:
        bad = await wait_terminal(rt, (await rt.submit(new("Work", "poison"))).job.id)
        good = await wait_terminal(rt, (await rt.submit(new("Work", "fine"))).job.id)
    assert good.status is JobStatus.COMPLETED
    assert bad.status is JobStatus.FAILED and bad.error is not None
    assert bad.error["code"] == "OutcomeUnwritable"
    # SUSPECT_AFTER tries, one more right after a good read, then isolated.
    assert store.injected("finish") == 4


async def test_a_write_that_failed_until_the_outage_ended_is_stored(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The store comes back between a failed write and the read that asks whether it is
    there (a failover completing): the outcome is written, not replaced by a failure. The
    writer replaced a Complete by OutcomeUnwritable here, seen in the cluster failover
    test."""

    async def work(ctx: AsyncContext[str]) -> str:
        return ctx.request

    store = FaultyStore(MemoryStore())
    store.inject("finish", "fail", times=SUSPECT_AFTER)  # then the outage is over
    async with running(registry(Work=work), EndpointsConfig(concurrency=1), store) as rt:
        job = await wait_terminal(rt, (await rt.submit(new("Work", "done"))).job.id)
    assert job.status is JobStatus.COMPLETED, job.error
    assert store.injected("finish") == SUSPECT_AFTER


class Unreplicated(MemoryStore):
    """``finish`` answers ReplicationTimeout (as with ``replicas_ack`` while the replica is
    away) the first ``times`` calls; reads work all along."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.shortfalls = times

    async def finish(self, outcomes: Sequence[Outcome]) -> list[bool]:
        if self.shortfalls:
            self.shortfalls -= 1
            await trio.lowlevel.checkpoint()
            raise ReplicationTimeout("WAIT 1: 0 replicas acknowledged", acknowledged=0)
        return await super().finish(outcomes)


async def test_an_outcome_waiting_for_replicas_is_not_taken_for_unwritable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Reads work while WAIT falls short: that is no request the server drops, so the
    outcome is retried until the replicas answer, not replaced by a failure."""

    async def work(ctx: AsyncContext[str]) -> str:
        return ctx.request

    store = Unreplicated(SUSPECT_AFTER + 3)
    async with running(registry(Work=work), EndpointsConfig(concurrency=1), store) as rt:
        job = await wait_terminal(rt, (await rt.submit(new("Work", "done"))).job.id)
    assert job.status is JobStatus.COMPLETED, job.error
    assert store.shortfalls == 0


async def test_result_over_max_result_bytes_fails_its_job(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def big(ctx: AsyncContext[int]) -> str:
        return "x" * ctx.request

    config = EndpointsConfig(max_result_bytes=1000)
    async with running(registry(Big=big), config) as rt:
        small = await wait_terminal(rt, (await rt.submit(new("Big", 900))).job.id)
        large = await wait_terminal(rt, (await rt.submit(new("Big", 1200, max_retries=3)))
                                    .job.id)
    assert small.status is JobStatus.COMPLETED
    assert large.status is JobStatus.FAILED and large.retry_count == 0
    assert large.error is not None and large.error["code"] == "ResultTooLarge"


class Recording(MemoryStore):
    """Remembers how many bytes each store call carried."""

    def __init__(self) -> None:
        super().__init__()
        self.finish_bytes: list[int] = []
        self.submit_bytes: list[int] = []

    async def finish(self, outcomes: Sequence[Outcome]) -> list[bool]:
        self.finish_bytes.append(sum(len(o.result) for o in outcomes
                                     if isinstance(o, Complete)))
        return await super().finish(outcomes)

    async def submit(self, jobs: Sequence[NewJob], *, max_queued: int | None = None) -> Any:
        self.submit_bytes.append(sum(len(j.payload) for j in jobs))
        return await super().submit(jobs, max_queued=max_queued)


async def test_batches_are_bounded_by_bytes(autojump_clock: trio.testing.MockClock) -> None:
    gate = trio.Event()

    async def echo(ctx: AsyncContext[str]) -> str:
        await gate.wait()
        return ctx.request

    store = Recording()
    config = EndpointsConfig(concurrency=20, prefetch=0, batch_bytes=100_000)
    body = "y" * 30_000
    async with running(registry(Echo=echo), config, store) as rt:
        ids: list[str] = []

        async def submit() -> None:
            ids.append((await rt.submit(new("Echo", body))).job.id)

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(submit)
        await trio.testing.wait_all_tasks_blocked()
        gate.set()
        jobs = [await wait_terminal(rt, i) for i in ids]
    assert all(j.status is JobStatus.COMPLETED for j in jobs)
    # Each call carries at most batch_bytes (each item is ~30 kB; the bound counts a little
    # overhead per item), and the 20 items did not go one by one either.
    assert max(store.finish_bytes) <= 100_000 and max(store.submit_bytes) <= 100_000
    assert sum(store.finish_bytes) == 20 * (30_000 + 2)
    assert len([b for b in store.submit_bytes if b]) < 20


class _ReplicasFallShort(MemoryStore):
    """Applies outcomes, then says its replicas did not confirm them (as RedisStore with
    ``replicas_ack`` does when ``WAIT`` falls short)."""

    finishes = 0

    async def finish(self, outcomes: Sequence[Outcome]) -> list[bool]:
        self.finishes += 1
        applied = await super().finish(outcomes)
        raise ReplicationTimeout("0 of 1 replicas acknowledged the write within 1s",
                                 acknowledged=0, reply=applied)


async def test_an_outcome_the_replicas_did_not_confirm_is_settled_as_applied(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runs = 0

    async def work(ctx: AsyncContext[str]) -> str:
        nonlocal runs
        runs += 1
        return ctx.request

    store = _ReplicasFallShort()
    async with running(registry(Work=work), EndpointsConfig(concurrency=1), store) as rt:
        job = await wait_terminal(rt, (await rt.submit(new("Work", "done"))).job.id)
        await trio.testing.wait_all_tasks_blocked()  # the writer settles the batch
        stats = rt.statistics().outcomes
        assert len(rt.held) == 0 and restarts(rt)["outcomes"] == 0
    assert job.status is JobStatus.COMPLETED and job.retry_count == 0 and runs == 1
    assert stats is not None
    assert (stats.written, stats.unreplicated, stats.fenced, stats.store_errors) == (1, 1, 0, 0)
    assert store.finishes == 1  # not retried: a second write would be refused as fenced
