"""The runtime and the HTTP layer on RedisStore, in-process, against a real redis-server."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from quart_trio import QuartTrio

from asyncendpoints_trio import (
    AsyncContext,
    AsyncEndpoints,
    EndpointsConfig,
    JobStatus,
    RetryPolicy,
)
from asyncendpoints_trio.redis import RedisClient
from asyncendpoints_trio.stores._redis import RedisStore

from .._runtime_kit import new, registry, running, wait_terminal
from ..conftest import client_for
from .conftest import fast_settings


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(RedisClient(fast_settings(redis_url)), queue=f"rt-{uuid.uuid4().hex[:8]}",
                       owns_client=True)
    yield store
    await store.aclose()


async def test_retry_delays_are_kept_on_redis(store: RedisStore) -> None:
    starts: list[float] = []

    async def flaky(ctx: AsyncContext[Any]) -> str:
        starts.append(trio.current_time())
        if ctx.attempt < 3:
            raise RuntimeError("not yet")
        return "ok"

    policy = RetryPolicy(max_retries=3, base_delay=0.3, multiplier=2, jitter=0)
    reg = registry(Flaky=(flaky, {"retry": policy}))
    async with running(reg, EndpointsConfig(shutdown_grace=1), store) as rt:
        job = await wait_terminal(rt, (await rt.submit(new("Flaky"))).job.id, 20)
    assert job.status is JobStatus.COMPLETED and job.retry_count == 2
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # The second attempt waits 0.3 s, the third 0.6 s: never earlier (server clock).
    assert gaps[0] >= 0.29 and gaps[1] >= 0.59


async def test_long_poll_ends_when_the_job_does(store: RedisStore) -> None:
    release = trio.Event()

    async def gated(ctx: AsyncContext[Any]) -> int:
        await release.wait()
        return 7

    async with running(registry(Gated=gated), EndpointsConfig(shutdown_grace=1), store) as rt:
        job_id = (await rt.submit(new("Gated"))).job.id
        seen: list[Any] = []

        async def poll() -> None:
            seen.append(await store.wait_for_terminal(job_id, 30))

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(poll)
                await trio.testing.wait_all_tasks_blocked()
                release.set()
        assert store.statistics()["subscribed"]
        read = await store.get(job_id)
    assert seen[0].status is JobStatus.COMPLETED and seen[0].result == b"7"
    # Answered from the done message, which carries the record (with its own NUL between
    # name and key) and the attempt history: every part must land in its own field.
    assert seen[0] == read


async def test_http_on_redis(redis_url: str) -> None:
    app = QuartTrio(__name__)
    queue = f"http-{uuid.uuid4().hex[:8]}"
    endpoints = AsyncEndpoints(app, config=EndpointsConfig(redis_url=redis_url, queue=queue,
                                                           shutdown_grace=1))
    entered = trio.Event()

    @endpoints.handler("Echo")
    async def echo(ctx: AsyncContext[dict[str, int]]) -> dict[str, int]:
        if ctx.request.get("block"):
            entered.set()
            await trio.sleep_forever()
        return ctx.request

    endpoints.map_async_post("Echo", "/echo")
    endpoints.map_job_details()
    async with client_for(app) as client:
        response = await client.post("/echo", json={"a": 1}, headers={"Idempotency-Key": "k"})
        assert response.status_code == 202
        done = (await client.get(response.headers["location"], params={"wait": 10})).json()
        assert done["status"] == "Completed" and done["result"] == {"a": 1}
        again = await client.post("/echo", json={"a": 1}, headers={"Idempotency-Key": "k"})
        assert again.json()["id"] == done["id"] and again.json()["status"] == "Completed"
        conflict = await client.post("/echo", json={"a": 2}, headers={"Idempotency-Key": "k"})
        assert conflict.status_code == 422
        blocked = (await client.post("/echo", json={"block": 1})).headers["location"]
        with trio.fail_after(10):
            await entered.wait()
        assert (await client.delete(blocked)).status_code == 202
        canceled = (await client.get(blocked, params={"wait": 10})).json()
        assert canceled["status"] == "Canceled"
