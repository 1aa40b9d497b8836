"""Leases under a misbehaving link: slow heartbeats, lost claim replies, racing finishes."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from asyncendpoints_trio import AsyncContext, EndpointsConfig, JobStatus, MemoryStore

from .._runtime_kit import new, registry, running, start, stop, wait_terminal
from ..faultstore import FaultyStore

FAST = {"lease_ttl": 2.0, "heartbeat_interval": 0.5, "recovery_interval": 0.2}


async def test_handler_stops_before_its_lease_expires_when_heartbeats_hang(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Renewals that neither succeed nor fail (a stalled link) must not let a handler run
    past its lease: a peer reclaims the job at the store's deadline."""
    shared = MemoryStore()
    link_a = FaultyStore(shared)
    events: list[tuple[str, str, float]] = []
    started = trio.Event()

    def handlers(instance: str) -> Any:
        async def long(ctx: AsyncContext[Any]) -> str:
            events.append(("start", instance, trio.current_time()))
            started.set()
            try:
                await trio.sleep(30)
            finally:
                events.append(("end", instance, trio.current_time()))
            return instance

        return registry(Long=long)

    async with trio.open_nursery() as nursery:
        a = await start(nursery, handlers("a"), EndpointsConfig(**FAST), link_a)
        job_id = (await a.submit(new("Long"))).job.id
        with trio.fail_after(5):
            await started.wait()
        link_a.inject("heartbeat", "hang", times=float("inf"))
        b = await start(nursery, handlers("b"), EndpointsConfig(**FAST), shared)
        job = await wait_terminal(b, job_id, timeout=120)
        link_a.clear()
        await stop(a)
        await stop(b)
    assert job.status is JobStatus.COMPLETED and job.result == b'"b"'
    assert [(kind, who) for kind, who, _ in events] == [
        ("start", "a"), ("end", "a"), ("start", "b"), ("end", "b")]
    a_end, b_start = events[1][2], events[2][2]
    assert a_end <= b_start  # a stopped before its lease could expire: never both at once
    # a stopped its handler a margin before the lease could expire, then handed the job
    # back (its writes still got through): b ran it at once, and no attempt was charged.
    assert a_end == pytest.approx(FAST["lease_ttl"] * 0.9, abs=0.2)
    assert job.retry_count == 0
    assert a.statistics().lease_keeper.expired_locally == 1


async def test_heartbeat_racing_our_own_finish_is_not_a_lost_lease(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Renewals that reach the store late find jobs we already finished: not lost leases."""

    async def short(ctx: AsyncContext[Any]) -> None:
        await trio.sleep(0.3)

    store = FaultyStore(MemoryStore())
    store.inject("heartbeat", "delay", times=float("inf"), seconds=0.2)
    config = EndpointsConfig(concurrency=8, heartbeat_interval=0.25, lease_ttl=5.0)
    async with running(registry(Short=short), config, store) as rt:
        ids = [(await rt.submit(new("Short"))).job.id for _ in range(200)]
        jobs = [await wait_terminal(rt, i) for i in ids]
        stats = rt.statistics()
    assert all(j.status is JobStatus.COMPLETED and j.retry_count == 0 for j in jobs)
    assert stats.lease_keeper.renewals > 10  # renewals did race the finishes
    assert stats.lease_keeper.lost == 0 and stats.workers.lease_lost == 0


async def test_a_claim_whose_reply_was_lost_is_released_uncharged(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ran: list[int] = []

    async def once(ctx: AsyncContext[Any]) -> str:
        ran.append(ctx.attempt)
        return "ran"

    shared = MemoryStore()
    store = FaultyStore(shared)
    store.inject("claim", "lose",
                 when=lambda args: shared.statistics()["by_status"]["Queued"] > 0)
    config = EndpointsConfig(**FAST, restart_backoff_max=0.5)
    async with running(registry(Once=once), config, store) as rt:
        job_id = (await rt.submit(new("Once", max_retries=0))).job.id
        started = trio.current_time()
        job = await wait_terminal(rt, job_id)
        took = trio.current_time() - started
        stats = rt.statistics().dispatcher
    # Without the release it would sit leased to us for a whole TTL, then fail (no retries
    # left) without ever having run.
    assert job.status is JobStatus.COMPLETED and job.retry_count == 0 and ran == [1]
    assert stats.orphans_released == 1 and took < FAST["lease_ttl"]
    assert store.injected("claim") == 1


async def test_restart_under_the_same_instance_id_releases_its_old_leases(
    autojump_clock: trio.testing.MockClock,
) -> None:
    entered = trio.Event()

    async def work(ctx: AsyncContext[Any]) -> int:
        if ctx.attempt == 1 and not entered.is_set():
            entered.set()
            await trio.sleep_forever()
        return ctx.attempt

    shared = MemoryStore()
    config = EndpointsConfig(lease_ttl=60.0, heartbeat_interval=10.0, instance_id="pod-7")
    first = FaultyStore(shared)
    with trio.CancelScope() as killed:
        async with running(registry(Work=work), config, first) as rt:
            job_id = (await rt.submit(new("Work", max_retries=0))).job.id
            with trio.fail_after(5):
                await entered.wait()
            first.kill()  # the process dies: nothing more reaches the store
            killed.cancel()
    async with running(registry(Work=work), config, shared) as again:
        started = trio.current_time()
        job = await wait_terminal(again, job_id)
        took = trio.current_time() - started
    assert job.status is JobStatus.COMPLETED and job.retry_count == 0
    assert took < 1.0  # at once, not after the 60 s lease
