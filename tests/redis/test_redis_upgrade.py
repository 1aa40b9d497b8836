"""A job stored by the 0.1 layout (a record of 13 fields, before job versions) is still read,
claimed and finished: an upgrade does not strand the jobs already in Redis."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import trio
from quart_trio import QuartTrio

from asyncendpoints_trio import AsyncContext, AsyncEndpoints, EndpointsConfig, NewJob
from asyncendpoints_trio.redis import RedisClient
from asyncendpoints_trio.stores._redis_layout import RedisKeys, encode_data

from ..conftest import serving


async def test_a_job_in_the_0_1_record_layout_is_read_and_run(redis_url: str) -> None:
    queue = f"up-{uuid.uuid4().hex[:8]}"
    app = QuartTrio(__name__)
    endpoints = AsyncEndpoints(app, config=EndpointsConfig(redis_url=redis_url, queue=queue,
                                                           shutdown_grace=1))

    @endpoints.handler("Echo")
    async def echo(ctx: AsyncContext[dict[str, Any]]) -> dict[str, Any]:
        return ctx.request

    endpoints.map_job_details()
    keys = RedisKeys.of(queue)
    queued, finished = str(uuid.uuid4()), str(uuid.uuid4())
    now = int(time.time() * 1_000_000)
    # status|token|retries|maxRetries|cancel|created|started|completed|updated|owner|
    # priority|due|idem: no version field.
    old_queued = f"Queued|0|0|0|0|{now}|||{now}||0||"
    old_done = f"Completed|1|0|0|0|{now}|{now}|{now}|{now}||0||"
    assert old_queued.count("|") == 12
    async with RedisClient.from_url(redis_url) as redis:
        for job_id, record in ((queued, old_queued), (finished, old_done)):
            data = encode_data(NewJob(id=job_id, name="Echo", payload=b'{"a": 1}',
                                      max_retries=0))
            await redis.execute("HSET", keys.rec, job_id, record)
            await redis.execute("HSET", keys.data, job_id, data)
        await redis.execute("HSET", keys.out, finished, b'{"a": 0}')
        await redis.execute("ZADD", keys.ready, 1, queued)
        await redis.execute("RPUSH", keys.wake, "1")
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        with trio.fail_after(10):
            done = await client.get(f"/jobs/{finished}")
            ran = await client.get(f"/jobs/{queued}", params={"wait": 8})
    assert done.status_code == 200 and done.json()["result"] == {"a": 0}
    assert ran.status_code == 200, ran.text
    assert ran.json()["status"] == "Completed" and ran.json()["result"] == {"a": 1}
