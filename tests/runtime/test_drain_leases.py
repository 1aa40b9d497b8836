"""A lease is renewed for as long as its handler runs here, the drain included.

The reviewer's case: at the end of ``shutdown_grace`` the handlers were cancelled and the
lease keeper stopped renewing their leases at once, while the drain waited for them. A handler
that does not stop at once (a shielded flush, a thread) outlived its lease, and a peer
reran the job beside it.
"""

from __future__ import annotations

import time
from typing import Any

import trio
import trio.testing

from asyncendpoints_trio import AsyncContext, EndpointsConfig, JobStatus, MemoryStore

from .._runtime_kit import new, registry, start, stop, wait_terminal

FAST = {"lease_ttl": 1.5, "heartbeat_interval": 0.5, "recovery_interval": 0.2}


def stubborn_handlers(runs: list[tuple[str, str, int]], instance: str, how: str,
                      started: trio.Event) -> Any:
    async def stubborn(ctx: AsyncContext[Any]) -> str:
        runs.append(("start", instance, ctx.attempt))
        started.set()
        if how == "shield":
            with trio.CancelScope(shield=True):
                await trio.sleep(4)
        else:
            await trio.to_thread.run_sync(time.sleep, 0.3)
        runs.append(("end", instance, ctx.attempt))
        return f"done by {instance}"

    return registry(Stubborn=stubborn)


async def _drain_with_stubborn_handler(how: str) -> None:
    store = MemoryStore()
    runs: list[tuple[str, str, int]] = []
    started = trio.Event()
    async with trio.open_nursery() as nursery:
        a = await start(nursery, stubborn_handlers(runs, "a", how, started),
                        EndpointsConfig(**FAST, shutdown_grace=0.5), store)
        job_id = (await a.submit(new("Stubborn", max_retries=0))).job.id
        with trio.fail_after(5):
            await started.wait()
        # A peer that would reclaim the job the moment its lease expired.
        b = await start(nursery, stubborn_handlers(runs, "b", how, trio.Event()),
                        EndpointsConfig(**FAST),
                        store)
        await stop(a)  # grace 0.5 s, then the handler is cancelled and ignores it
        job = await wait_terminal(b, job_id)
        await stop(b)
    assert runs == [("start", "a", 1), ("end", "a", 1)]  # one run, never a second
    # It ran to the end under a lease that stayed ours: its result is the job's.
    assert job.status is JobStatus.COMPLETED and job.result == b'"done by a"'
    assert job.retry_count == 0


async def test_drain_renews_the_lease_of_a_shielded_handler(
    autojump_clock: trio.testing.MockClock,
) -> None:
    await _drain_with_stubborn_handler("shield")


async def test_drain_renews_the_lease_of_a_thread_handler(
    autojump_clock: trio.testing.MockClock,
) -> None:
    await _drain_with_stubborn_handler("thread")


async def test_released_on_drain_when_the_handler_does_stop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    entered = trio.Event()

    async def polite(ctx: AsyncContext[Any]) -> None:
        entered.set()
        await trio.sleep_forever()

    store = MemoryStore()
    async with trio.open_nursery() as nursery:
        a = await start(nursery, registry(Polite=polite),
                        EndpointsConfig(**FAST, shutdown_grace=0.5), store)
        job_id = (await a.submit(new("Polite"))).job.id
        with trio.fail_after(5):
            await entered.wait()
        await stop(a)
    job = await store.get(job_id)
    assert job is not None and job.status is JobStatus.QUEUED and job.retry_count == 0
    assert len(a.held) == 0 and a.held.free == a.held.capacity
