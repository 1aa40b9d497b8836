"""The runtime's actors end to end on the memory store and virtual time (MockClock)."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from asyncendpoints_trio import (
    AsyncContext,
    EndpointsConfig,
    JobStatus,
    MemoryStore,
    MethodResult,
    NonRetryableError,
    RetryPolicy,
    StoreUnavailable,
)
from asyncendpoints_trio.stores._protocol import Fail, Lease, Release

from ._runtime_kit import new, registry, running, wait_terminal


@dataclass
class Numbers:
    a: int
    b: int


@dataclass
class Sum:
    total: int


async def add(ctx: AsyncContext[Numbers]) -> Sum:
    await trio.sleep(1)
    return Sum(ctx.request.a + ctx.request.b)


async def test_job_runs_and_completes(autojump_clock: trio.testing.MockClock) -> None:
    async with running(registry(Add=add)) as rt:
        submitted = await rt.submit(new("Add", {"a": 2, "b": 3}))
        assert submitted.created and submitted.job.status is JobStatus.QUEUED
        job = await wait_terminal(rt, submitted.job.id)
    assert job.status is JobStatus.COMPLETED
    assert orjson.loads(job.result or b"") == {"total": 5}
    assert job.started_at is not None and job.completed_at is not None
    assert rt.statistics().workers.succeeded == 1


async def test_local_submit_wakes_idle_worker_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    started_at: list[float] = []

    async def note(ctx: AsyncContext[Any]) -> None:
        started_at.append(trio.current_time())

    async with running(registry(Note=note)) as rt:
        await trio.sleep(100)  # long idle: a polling dispatcher would be mid-interval now
        before = trio.current_time()
        submitted = await rt.submit(new("Note"))
        await wait_terminal(rt, submitted.job.id)
    assert started_at == [before]  # no virtual time passed: nothing polled


async def test_retries_back_off_then_succeed(autojump_clock: trio.testing.MockClock) -> None:
    attempts: list[tuple[int, float]] = []

    async def flaky(ctx: AsyncContext[Any]) -> str:
        attempts.append((ctx.attempt, trio.current_time()))
        if ctx.attempt < 3:
            raise ValueError(f"attempt {ctx.attempt} fails")
        return "ok"

    policy = RetryPolicy(max_retries=3, base_delay=10.0, multiplier=2.0, jitter=0.0)
    async with running(registry(Flaky=(flaky, {"retry": policy}))) as rt:
        submitted = await rt.submit(new("Flaky", max_retries=3))
        job = await wait_terminal(rt, submitted.job.id)
    assert job.status is JobStatus.COMPLETED and job.retry_count == 2
    assert [a for a, _ in attempts] == [1, 2, 3]
    gaps = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(attempts)]
    assert gaps[0] == pytest.approx(10.0, abs=0.01) and gaps[1] == pytest.approx(20.0, abs=0.01)


async def test_retries_exhausted_keep_whole_error_chain(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def broken(ctx: AsyncContext[Any]) -> None:
        try:
            raise KeyError("inner")
        except KeyError as exc:
            raise RuntimeError("outer") from exc

    policy = RetryPolicy(max_retries=2, base_delay=1.0)
    async with running(registry(Broken=(broken, {"retry": policy}))) as rt:
        job = await wait_terminal(rt, (await rt.submit(new("Broken", max_retries=2))).job.id)
    assert job.status is JobStatus.FAILED and job.retry_count == 2
    assert job.error is not None and job.error["code"] == "HandlerError"
    exc = job.error["exception"]
    assert exc["type"] == "builtins.RuntimeError" and exc["message"] == "outer"
    assert "raise RuntimeError" in exc["stackTrace"]
    assert exc["innerException"]["type"] == "builtins.KeyError"


async def test_non_retryable_fails_at_once(autojump_clock: trio.testing.MockClock) -> None:
    class BadInput(NonRetryableError):
        pass

    async def refuse(ctx: AsyncContext[Any]) -> None:
        raise BadInput("never")

    class Custom(Exception):
        pass

    async def custom(ctx: AsyncContext[Any]) -> None:
        raise Custom("also never")

    reg = registry(Refuse=refuse,
                   Custom=(custom, {"retry": RetryPolicy(non_retryable=(Custom,))}))
    async with running(reg) as rt:
        one = await wait_terminal(rt, (await rt.submit(new("Refuse"))).job.id)
        two = await wait_terminal(rt, (await rt.submit(new("Custom"))).job.id)
    assert one.status is JobStatus.FAILED and one.retry_count == 0
    assert two.status is JobStatus.FAILED and two.retry_count == 0


async def test_timeout_is_a_retryable_failure(autojump_clock: trio.testing.MockClock) -> None:
    seen_cancel: list[int] = []

    async def slow(ctx: AsyncContext[Any]) -> None:
        try:
            await trio.sleep(100)
        except trio.Cancelled:
            seen_cancel.append(ctx.attempt)
            raise

    reg = registry(Slow=(slow, {"timeout": 5.0, "retry": RetryPolicy(max_retries=1,
                                                                       base_delay=1.0)}))
    async with running(reg) as rt:
        job = await wait_terminal(rt, (await rt.submit(new("Slow", max_retries=1))).job.id)
    assert job.status is JobStatus.FAILED and job.retry_count == 1
    assert job.error is not None and job.error["code"] == "Timeout"
    assert seen_cancel == [1, 2]
    assert rt.statistics().workers.timed_out == 2


async def test_method_result_parity(autojump_clock: trio.testing.MockClock) -> None:
    async def ok(ctx: AsyncContext[Any]) -> MethodResult[int]:
        return MethodResult.success(41 + 1)

    async def bad(ctx: AsyncContext[Any]) -> MethodResult[int]:
        return MethodResult.failure("no luck")

    reg = registry(Ok=ok, Bad=(bad, {"retry": RetryPolicy(max_retries=0)}))
    async with running(reg) as rt:
        good = await wait_terminal(rt, (await rt.submit(new("Ok"))).job.id)
        failed = await wait_terminal(rt, (await rt.submit(new("Bad", max_retries=0))).job.id)
    assert good.result == b"42"
    assert failed.status is JobStatus.FAILED and failed.error is not None
    assert failed.error["message"] == "no luck"


async def test_unserializable_result_fails_job_and_worker_survives(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def weird(ctx: AsyncContext[Any]) -> Any:
        return object()

    reg = registry(Weird=weird, Add=add)
    async with running(reg, EndpointsConfig(concurrency=1, prefetch=0)) as rt:
        bad = await wait_terminal(rt, (await rt.submit(new("Weird"))).job.id)
        good = await wait_terminal(rt, (await rt.submit(new("Add", {"a": 1, "b": 1}))).job.id)
    assert bad.status is JobStatus.FAILED and bad.retry_count == 0
    assert bad.error is not None and bad.error["code"] == "ResultSerializationError"
    assert good.status is JobStatus.COMPLETED


async def test_class_based_handler(autojump_clock: trio.testing.MockClock) -> None:
    class Doubler:
        def __init__(self) -> None:
            self.calls = 0

        async def handle(self, ctx: AsyncContext[int]) -> int:
            self.calls += 1
            return ctx.request * 2

    doubler = Doubler()
    async with running(registry(Double=doubler)) as rt:
        job = await wait_terminal(rt, (await rt.submit(new("Double", 21))).job.id)
    assert job.result == b"42" and doubler.calls == 1


async def test_cancel_running_job_handler_sees_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    entered = trio.Event()
    observed: list[str] = []

    async def forever(ctx: AsyncContext[Any]) -> None:
        entered.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            observed.append("cancelled")
            raise

    async with running(registry(Forever=forever)) as rt:
        job_id = (await rt.submit(new("Forever"))).job.id
        with trio.fail_after(5):
            await entered.wait()
        requested = await rt.cancel(job_id)
        assert requested is not None and requested.cancel_requested
        job = await wait_terminal(rt, job_id)
    assert job.status is JobStatus.CANCELED and observed == ["cancelled"]


async def test_claims_are_bounded_by_credit(autojump_clock: trio.testing.MockClock) -> None:
    release = trio.Event()

    async def wait(ctx: AsyncContext[Any]) -> None:
        await release.wait()

    store = MemoryStore()
    config = EndpointsConfig(concurrency=2, prefetch=1)
    async with running(registry(Wait=wait), config, store) as rt:
        ids = [(await rt.submit(new("Wait"))).job.id for _ in range(10)]
        await trio.testing.wait_all_tasks_blocked()
        counts = store.statistics()["by_status"]
        assert counts["InProgress"] == 3 and counts["Queued"] == 7
        release.set()
        for job_id in ids:
            await wait_terminal(rt, job_id)
    assert store.statistics()["by_status"]["Completed"] == 10


class FlakyStore(MemoryStore):
    """A memory store whose claim crashes a given number of times (fault injection)."""

    def __init__(self, claim_failures: int) -> None:
        super().__init__()
        self.claim_failures = claim_failures

    async def claim(self, owner: str, limit: int, lease_ttl: float) -> Any:
        if self.claim_failures > 0:
            self.claim_failures -= 1
            raise StoreUnavailable("injected: store unreachable")
        return await super().claim(owner, limit, lease_ttl)


async def test_supervisor_restarts_crashed_actor(autojump_clock: trio.testing.MockClock) -> None:
    store = FlakyStore(claim_failures=3)
    async with running(registry(Add=add), store=store) as rt:
        job = await wait_terminal(rt, (await rt.submit(new("Add", {"a": 1, "b": 2}))).job.id)
        health = rt.health()["actors"]["dispatcher"]
    assert job.status is JobStatus.COMPLETED
    assert health["restarts"] == 3 and health["state"] == "running"
    assert "injected" in health["last_error"]


@pytest.mark.parametrize("how", ["refused-renewal", "re-claimed-here"])
async def test_lost_lease_stops_handler_and_writes_nothing(
    autojump_clock: trio.testing.MockClock, how: str
) -> None:
    entered = trio.Event()
    runs: list[int] = []
    cancelled: list[int] = []

    async def work(ctx: AsyncContext[Any]) -> str:
        runs.append(ctx.attempt)
        if len(runs) == 1:
            entered.set()
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                cancelled.append(1)
                raise
        return "second run"

    store = MemoryStore()
    config = EndpointsConfig(lease_ttl=10, heartbeat_interval=2)
    async with running(registry(Work=work), config, store) as rt:
        job_id = (await rt.submit(new("Work"))).job.id
        with trio.fail_after(5):
            await entered.wait()
        held = rt.held.get(job_id)
        assert held is not None
        # Someone else moves the job on (as a peer reclaiming it would): our token is stale.
        stale = Lease(job_id, held.lease.token)
        if how == "refused-renewal":  # the next heartbeat is refused
            error = {"code": "X", "message": "moved on", "exception": None}
            assert await store.finish([Fail(stale, error, 50.0)]) == [True]
        else:  # the job comes straight back, and we claim it again while still running it
            assert await store.finish([Release(stale)]) == [True]
        job = await wait_terminal(rt, job_id)
    assert cancelled == [1]
    assert job.status is JobStatus.COMPLETED and job.result == b'"second run"'
    assert rt.statistics().workers.lease_lost == 1
    assert rt.statistics().lease_keeper.lost == (1 if how == "refused-renewal" else 0)


async def test_graceful_drain(autojump_clock: trio.testing.MockClock) -> None:
    started = 0
    all_started = trio.Event()

    async def quick(ctx: AsyncContext[Any]) -> str:
        nonlocal started
        started += 1
        if started == 2:
            all_started.set()
        await trio.sleep(3)
        return "done"

    async def endless(ctx: AsyncContext[Any]) -> None:
        nonlocal started
        started += 1
        if started == 2:
            all_started.set()
        await trio.sleep_forever()

    store = MemoryStore()
    config = EndpointsConfig(concurrency=2, prefetch=2, shutdown_grace=10)
    async with running(registry(Quick=quick, Endless=endless), config, store) as rt:
        quick_id = (await rt.submit(new("Quick"))).job.id
        endless_id = (await rt.submit(new("Endless"))).job.id
        waiting = [(await rt.submit(new("Quick"))).job.id for _ in range(2)]
        with trio.fail_after(5):
            await all_started.wait()
        t0 = trio.current_time()
    drained_in = trio.current_time() - t0
    jobs = {i: await store.get(i) for i in [quick_id, endless_id, *waiting]}
    assert jobs[quick_id].status is JobStatus.COMPLETED  # type: ignore[union-attr]
    endless_job = jobs[endless_id]
    assert endless_job is not None and endless_job.status is JobStatus.QUEUED
    assert endless_job.retry_count == 0  # released without charging an attempt
    for i in waiting:  # prefetched but never started: back in the queue, unrun
        assert jobs[i].status is JobStatus.QUEUED and jobs[i].retry_count == 0  # type: ignore[union-attr]
    assert drained_in == pytest.approx(10.0, abs=0.01)  # virtual time: exactly the grace period
    assert not rt.accepting


async def test_submit_after_stop_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    from asyncendpoints_trio import NotAccepting

    async with running(registry(Add=add)) as rt:
        pass
    with pytest.raises(NotAccepting):
        await rt.submit(new("Add", {"a": 1, "b": 1}))


async def test_every_actor_reports_statistics(autojump_clock: trio.testing.MockClock) -> None:
    async with running(registry(Add=add)) as rt:
        job = await wait_terminal(rt, (await rt.submit(new("Add", {"a": 1, "b": 1}))).job.id)
        stats = rt.statistics()
        health = rt.health()
    assert job.status is JobStatus.COMPLETED
    assert all(getattr(stats, name) is not None for name in (
        "intake", "dispatcher", "workers", "outcomes", "lease_keeper", "recovery",
        "store_events"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.workers.succeeded = 7  # a snapshot: it cannot be changed
    assert stats.intake.submitted == 1 and stats.outcomes.written == 1
    assert stats.dispatcher.claimed_jobs == 1 and stats.workers.succeeded == 1
    assert all(a["state"] == "running" for a in health["actors"].values())
    assert health["accepting"] is True
