"""Load: 2,000 jobs through HTTP at concurrency 50. Nothing lost, each job run exactly once.

Bounded in count and time; no timing assertions (the rate is printed for information).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import trio
import trio.lowlevel
from quart_trio import QuartTrio

from asyncendpoints_trio import AsyncContext, AsyncEndpoints, EndpointsConfig

from .conftest import serving

JOBS = 2_000
CONCURRENCY = 50


async def test_two_thousand_jobs_each_terminal_exactly_once() -> None:
    app = QuartTrio(__name__)
    endpoints = AsyncEndpoints(app, config=EndpointsConfig(concurrency=32, shutdown_grace=2))
    runs: Counter[str] = Counter()

    @endpoints.handler("Inc")
    async def inc(ctx: AsyncContext[int]) -> int:
        runs[ctx.job_id] += 1
        await trio.lowlevel.checkpoint()
        return ctx.request + 1

    endpoints.map_async_post("Inc", "/inc")
    endpoints.map_job_details()
    accepted: dict[str, int] = {}
    final: dict[str, dict[str, Any]] = {}

    async with serving(app) as url:
        limits = httpx.Limits(max_connections=CONCURRENCY)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
            todo = iter(range(JOBS))
            t0 = trio.current_time()

            async def submitter() -> None:
                for n in todo:
                    response = await client.post("/inc", json=n)
                    assert response.status_code == 202, response.text
                    accepted[response.json()["id"]] = n

            with trio.fail_after(120):
                async with trio.open_nursery() as nursery:
                    for _ in range(CONCURRENCY):
                        nursery.start_soon(submitter)
                submitted_in = trio.current_time() - t0
                ids = iter(list(accepted))

                async def poller() -> None:
                    for job_id in ids:
                        while True:
                            r = await client.get(f"/jobs/{job_id}", params={"wait": 10})
                            body = r.json()
                            if body["status"] in ("Completed", "Failed", "Canceled"):
                                final[job_id] = body
                                break

                async with trio.open_nursery() as nursery:
                    for _ in range(CONCURRENCY):
                        nursery.start_soon(poller)
            total = trio.current_time() - t0

    assert len(accepted) == JOBS
    assert set(final) == set(accepted)
    assert all(body["status"] == "Completed" for body in final.values())
    assert all(final[i]["result"] == n + 1 for i, n in accepted.items())
    assert set(runs) == set(accepted) and set(runs.values()) == {1}
    stats = endpoints.store.statistics()
    assert stats["by_status"]["Completed"] == JOBS and stats["held_leases"] == 0
    print(f"\n{JOBS} jobs: submitted in {submitted_in:.2f}s ({JOBS / submitted_in:.0f}/s), "
          f"all terminal in {total:.2f}s ({JOBS / total:.0f} jobs/s end to end)")
