"""A failure while running one job is that job's outcome, never the worker pool's crash.

The reviewer's cases: a handler exception whose ``__str__`` raises, a validator raising
``KeyError`` on an old payload, and ``OverflowError`` from the backoff formula on retry 1025
each crashed the pool; the jobs running beside it stayed ``InProgress`` forever, renewed and
never reclaimed, and their credits never came back.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pydantic
import pytest
import trio
import trio.testing

from asyncendpoints_trio import (
    AsyncContext,
    ConfigurationError,
    EndpointsConfig,
    JobStatus,
    MemoryStore,
    RetryPolicy,
)
from asyncendpoints_trio.runtime._supervisor import describe

from .._runtime_kit import new, registry, restarts, running, wait_terminal

CONFIG = EndpointsConfig(concurrency=2, prefetch=0)


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message for you")


def beside(release: trio.Event) -> Any:
    """A handler that runs while the bad one fails, to show it is not orphaned."""

    async def patient(ctx: AsyncContext[Any]) -> str:
        await release.wait()
        return "fine"

    return patient


async def _bad_job_next_to_a_good_one(
    bad_handler: Any, bad_payload: Any = None, *, bad_options: dict[str, Any] | None = None,
) -> tuple[Any, Any, Any]:
    release = trio.Event()
    reg = registry(Bad=(bad_handler, bad_options or {}), Patient=beside(release))
    store = MemoryStore()
    async with running(reg, CONFIG, store) as rt:
        good_id = (await rt.submit(new("Patient"))).job.id
        await trio.testing.wait_all_tasks_blocked()
        bad_id = (await rt.submit(new("Bad", bad_payload, max_retries=0))).job.id
        bad = await wait_terminal(rt, bad_id)
        release.set()
        good = await wait_terminal(rt, good_id)
        assert restarts(rt)["workers"] == 0
        assert rt.held.free == rt.held.capacity and len(rt.held) == 0
    return bad, good, rt


async def test_exception_whose_str_raises(autojump_clock: trio.testing.MockClock) -> None:
    async def bad(ctx: AsyncContext[Any]) -> None:
        raise Unprintable

    job, good, _ = await _bad_job_next_to_a_good_one(bad)
    assert job.status is JobStatus.FAILED and good.status is JobStatus.COMPLETED
    assert job.error["code"] == "HandlerError"
    assert job.error["message"] == "<str() of Unprintable raised RuntimeError>"
    assert job.error["exception"]["type"].endswith("Unprintable")


@dataclasses.dataclass
class Versioned:
    version: int

    @pydantic.field_validator("version")
    @classmethod
    def known(cls, value: int) -> int:
        return {1: 1, 2: 2}[value]  # KeyError for a payload stored by an older release


async def test_validator_raising_on_an_old_payload(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def bad(ctx: AsyncContext[Versioned]) -> None:
        raise AssertionError("never runs")

    job, good, _ = await _bad_job_next_to_a_good_one(bad, {"version": 0})
    assert job.status is JobStatus.FAILED and good.status is JobStatus.COMPLETED
    assert job.error["code"] == "InvalidPayload"


async def test_handler_nursery_error_beside_its_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The timeout cancels a handler whose nursery child fails on the way out: the group
    that leaves the handler holds our Cancelled and a ValueError."""

    async def cleanup_fails() -> None:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            raise ValueError("cleanup failed") from None

    async def bad(ctx: AsyncContext[Any]) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            nursery.start_soon(cleanup_fails)

    job, good, _ = await _bad_job_next_to_a_good_one(bad, bad_options={"timeout": 1.0})
    assert job.status is JobStatus.FAILED and good.status is JobStatus.COMPLETED
    assert job.error["code"] == "Timeout"


async def test_retry_number_past_float_range(autojump_clock: trio.testing.MockClock) -> None:
    policy = RetryPolicy(max_retries=5000, base_delay=1.0, multiplier=2.0, max_delay=60.0,
                         jitter=0.0)
    assert policy.delay(1025) == 60.0 and policy.delay(10**9) == 60.0

    ran = trio.Event()

    async def flaky(ctx: AsyncContext[Any]) -> None:
        ran.set()
        raise ValueError("again")

    store = MemoryStore()
    [submitted] = await store.submit([new("Flaky", max_retries=5000)])
    job_id = submitted.job.id
    # A job on its 1025th attempt (the store is the only way to get there quickly).
    store._jobs[job_id] = dataclasses.replace(store._jobs[job_id], retry_count=1024)
    async with running(registry(Flaky=(flaky, {"retry": policy})), CONFIG, store) as rt:
        with trio.fail_after(30):
            await ran.wait()
        await trio.testing.wait_all_tasks_blocked()  # its outcome is written meanwhile
        job = await store.get(job_id)
        assert restarts(rt)["workers"] == 0
    assert job is not None and job.retry_count == 1025 and job.status is JobStatus.SCHEDULED
    assert job.error is not None and job.error["code"] == "HandlerError"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_retry_policy_refuses_non_finite_numbers(bad: float) -> None:
    for field in ("base_delay", "max_delay", "multiplier", "jitter"):
        with pytest.raises(ConfigurationError, match=field):
            RetryPolicy(**{field: bad})


def test_health_names_the_cause_not_the_group() -> None:
    def group() -> BaseException:
        try:
            raise ExceptionGroup("outer", [ExceptionGroup("inner", [KeyError("job-1")])])
        except ExceptionGroup as exc:
            return exc

    assert describe(group()) == "KeyError: 'job-1'"
    assert describe(Unprintable()) == "Unprintable: <message not printable>"


class _CrashOnce:
    """Wraps the pool's outcome channel: the first send raises, like a bug of ours."""

    def __init__(self, inner: trio.MemorySendChannel[Any]) -> None:
        self.inner = inner
        self.crashed = False

    async def send(self, value: Any) -> None:
        if not self.crashed:
            self.crashed = True
            raise RuntimeError("injected crash in the worker pool")
        await self.inner.send(value)


async def test_pool_crash_settles_every_job_it_held(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The pool itself crashes (a bug of ours) while three handlers run: after the restart
    no job is left InProgress, every credit is back, and health says why."""
    release = trio.Event()
    started = 0

    async def slow(ctx: AsyncContext[Any]) -> int:
        nonlocal started
        started += 1
        if ctx.attempt == 1:
            await release.wait()
        return ctx.attempt

    async def quick(ctx: AsyncContext[Any]) -> str:
        return "quick"

    store = MemoryStore()
    config = EndpointsConfig(concurrency=4, prefetch=0, restart_backoff_max=1.0)
    async with running(registry(Slow=slow, Quick=quick), config, store) as rt:
        assert rt.pool is not None
        crash = _CrashOnce(rt.pool.outcomes)
        rt.pool.outcomes = crash  # type: ignore[assignment]
        slow_ids = [(await rt.submit(new("Slow"))).job.id for _ in range(3)]
        await trio.testing.wait_all_tasks_blocked()
        assert started == 3
        quick_id = (await rt.submit(new("Quick"))).job.id  # its outcome's send crashes
        quick = await wait_terminal(rt, quick_id)
        slows = [await wait_terminal(rt, i) for i in slow_ids]
        health = rt.health()["actors"]["workers"]
        assert rt.held.free == rt.held.capacity and len(rt.held) == 0
    assert crash.crashed
    # The outcome already known when the pool died is stored as it was.
    assert quick.status is JobStatus.COMPLETED and quick.result == b'"quick"'
    # The handlers cut short are charged one attempt and run again.
    assert [j.status for j in slows] == [JobStatus.COMPLETED] * 3
    assert [j.retry_count for j in slows] == [1, 1, 1]
    assert health["restarts"] == 1 and health["state"] == "running"
    assert health["last_error"] == "RuntimeError: injected crash in the worker pool"
