"""An app for the multi-process Redis tests. Handlers announce their start on a Redis
channel (``fleet:events``), so tests wait on events instead of polling or sleeping."""

from __future__ import annotations

import os
import signal
from typing import Any

import trio
from quart_trio import QuartTrio

from asyncendpoints_trio import AsyncContext, AsyncEndpoints, EndpointsConfig, RetryPolicy
from asyncendpoints_trio.redis import RedisClient

app = QuartTrio(__name__)
endpoints = AsyncEndpoints(app, config=EndpointsConfig(
    shutdown_grace=2, default_retry=RetryPolicy(max_retries=3, base_delay=0.1)))
_events: RedisClient | None = None


async def announce(what: str, job_id: str) -> None:
    global _events
    url = os.environ.get("FLEET_EVENTS_URL")
    if not url:
        return
    if _events is None:
        _events = RedisClient.from_url(url)
    await _events.execute("PUBLISH", "fleet:events", f"{what} {job_id} {os.getpid()}")


@endpoints.handler("Work")
async def work(ctx: AsyncContext[float]) -> dict[str, Any]:
    await announce("started", ctx.job_id)
    await trio.sleep(ctx.request)
    return {"pid": os.getpid(), "attempt": ctx.attempt}


@endpoints.handler("Crash")
async def crash(ctx: AsyncContext[float]) -> None:
    """A poison job: its handler takes its process down (as a segfault or the OOM killer
    would), before any heartbeat could report its start."""
    await announce("started", ctx.job_id)
    os.kill(os.getpid(), signal.SIGKILL)


endpoints.map_async_post("Work", "/work")
endpoints.map_job_details("/jobs/<uuid:job_id>")
