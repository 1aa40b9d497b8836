"""Delayed starts and priorities: over HTTP, in the runtime on virtual time, and on Redis."""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import pytest
import trio
import trio.testing
from quart_trio import QuartTrio

from asyncendpoints_trio import AsyncContext, AsyncEndpoints, EndpointsConfig, JobStatus
from asyncendpoints_trio.runtime._dispatcher import IDLE_WAIT

from ._runtime_kit import new, registry, running, wait_terminal
from .conftest import client_for
from .test_http import assert_problem


@dataclass
class Step:
    label: str


def make_app(store: Any = None) -> tuple[QuartTrio, list[str], trio.Event]:
    app = QuartTrio(__name__)
    endpoints = AsyncEndpoints(app, store=store,
                               config=EndpointsConfig(concurrency=1, prefetch=0,
                                                      shutdown_grace=1))
    order: list[str] = []
    gate = trio.Event()

    @endpoints.handler("Step")
    async def step(ctx: AsyncContext[Step]) -> str:
        if ctx.request.label == "gate":
            await gate.wait()
        order.append(ctx.request.label)
        return ctx.request.label

    endpoints.map_async_post("Step", "/steps")
    endpoints.map_async_post("Step", "/urgent", priority=7)
    endpoints.map_async_post("Step", "/fixed", client_priority=False)
    endpoints.map_job_details()
    return app, order, gate


def _iso(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def test_a_submit_may_ask_to_start_later() -> None:
    app, _, gate = make_app()
    gate.set()
    async with client_for(app) as client:
        later = await client.post("/steps", json={"label": "l"}, headers={"x-not-before": "1"})
        assert later.status_code == 202, later.text
        body = later.json()
        assert body["status"] == "Scheduled"
        due = _iso(body["nextAttemptAt"])
        assert due == pytest.approx(_iso(body["createdAt"]) + 1, abs=0.05)
        done = (await client.get(later.headers["location"], params={"wait": 5})).json()
        assert done["status"] == "Completed" and done["nextAttemptAt"] is None
        assert _iso(done["startedAt"]) >= due - 0.01
        # An HTTP-date (RFC 9110), two seconds ahead; one in the past starts at once.
        at = email.utils.formatdate(time.time() + 2, usegmt=True)
        dated = await client.post("/steps", json={"label": "d"}, headers={"x-not-before": at})
        assert dated.json()["status"] == "Scheduled"
        past = email.utils.formatdate(time.time() - 60, usegmt=True)
        now = await client.post("/steps", json={"label": "p"}, headers={"x-not-before": past})
        assert now.json()["status"] in ("Queued", "InProgress", "Completed")
        for bad in ("soon", "-5", "", "Mon, 99 Jan 2030 00:00:00 GMT", "1e9"):
            answer = await client.post("/steps", json={"label": "b"},
                                       headers={"x-not-before": bad})
            assert_problem(answer, 400, "BadNotBefore")


async def test_higher_priority_is_claimed_first() -> None:
    app, order, gate = make_app()
    async with client_for(app) as client:
        await client.post("/steps", json={"label": "gate"})  # holds the only worker
        await client.post("/steps", json={"label": "low-1"})
        await client.post("/steps", json={"label": "low-2"})
        await client.post("/urgent", json={"label": "route-7"})
        await client.post("/steps", json={"label": "header-9"}, headers={"x-priority": "9"})
        ignored = await client.post("/fixed", json={"label": "fixed"},
                                    headers={"x-priority": "9"})
        assert ignored.json()["priority"] == 0  # this route takes no client priority
        unread = await client.post("/fixed", json={"label": "fixed-2"},
                                   headers={"x-priority": "high"})
        assert unread.status_code == 202  # nor reads the header at all
        for bad in ("10", "-1", "high", ""):
            assert_problem(await client.post("/steps", json={"label": "x"},
                                             headers={"x-priority": bad}), 400, "BadPriority")
        gate.set()
        last = unread.headers["location"]
        assert (await client.get(last, params={"wait": 5})).json()["status"] == "Completed"
    assert order == ["gate", "header-9", "route-7", "low-1", "low-2", "fixed", "fixed-2"]


async def test_a_delayed_job_starts_on_time_without_polling(
    autojump_clock: trio.testing.MockClock,
) -> None:
    started: list[float] = []

    async def note(ctx: AsyncContext[Any]) -> None:
        started.append(trio.current_time())

    async with running(registry(Note=note)) as rt:
        await trio.sleep(3)
        submitted_at = trio.current_time()
        job_id = (await rt.submit(replace(new("Note"), delay=100.0))).job.id
        job = await wait_terminal(rt, job_id, timeout=200)
        claims = rt.statistics().dispatcher.claims
    assert job.status is JobStatus.COMPLETED
    assert started == [pytest.approx(submitted_at + 100.0, abs=1e-6)]  # to the instant
    # The dispatcher slept until the due time; what woke it in between is only its idle
    # safety net (a claim every IDLE_WAIT seconds, against a lost wake-up), not a poll for
    # the due time: that it knew, and it started the job to the instant.
    assert claims <= 100 / IDLE_WAIT + 4
