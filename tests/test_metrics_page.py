"""The Prometheus page on virtual time: store gauges cached, a hung store never hangs it,
and the page's numbers are the runtime's own."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from asyncendpoints_trio import AsyncContext, MemoryStore
from asyncendpoints_trio.telemetry._instrumented import InstrumentedStore
from asyncendpoints_trio.telemetry._prometheus import COUNTS_TIMEOUT, MetricsPage

from ._runtime_kit import new, registry, running, wait_terminal
from .faultstore import FaultyStore


def names(page: bytes) -> set[str]:
    return {family.name for family in text_string_to_metric_families(page.decode())}


async def test_a_hung_store_gives_a_page_without_the_store_gauges(
    autojump_clock: trio.testing.MockClock,
) -> None:
    link = FaultyStore(MemoryStore())
    store = InstrumentedStore(link)

    async def ok(ctx: AsyncContext[Any]) -> int:
        return 1

    async with running(registry(Ok=ok), store=store) as rt:
        await wait_terminal(rt, (await rt.submit(new("Ok"))).job.id)
        page = MetricsPage(lambda: rt, lambda: store)
        first = await page.render()
        assert "asyncendpoints_queue_jobs" in names(first)
        assert link.stats.calls.get("counts") == 1
        await page.render()  # within a second: the cached counts, no second read
        assert link.stats.calls.get("counts") == 1
        link.inject("counts", "hang", times=float("inf"))
        await trio.sleep(1.5)
        started = trio.current_time()
        hung = await page.render()
        assert trio.current_time() - started <= COUNTS_TIMEOUT + 0.01
        assert "asyncendpoints_queue_jobs" not in names(hung)
        assert "asyncendpoints_jobs_finished" in names(hung)  # the rest is all there
        # The read given up on is a store error on the page: what an alert watches.
        assert store.metrics().errors.get("counts") == 1
        link.clear()
    text = hung.decode()
    assert 'asyncendpoints_jobs_finished_total{job_name="Ok",status="Completed"} 1.0' in text
    assert 'asyncendpoints_jobs_submitted_total{job_name="Ok"} 1.0' in text
    assert 'asyncendpoints_store_errors_total{operation="counts"} 1.0' in text
