"""An app for the CLI tests: a job that takes a moment and records that it completed."""

from __future__ import annotations

import os

import trio
from quart_trio import QuartTrio

from asyncendpoints_trio import AsyncContext, AsyncEndpoints

app = QuartTrio(__name__)
endpoints = AsyncEndpoints(app)


@endpoints.handler("Slow")
async def slow(ctx: AsyncContext[float]) -> str:
    await trio.sleep(ctx.request)
    done_file = os.environ.get("CLI_APP_DONE_FILE")
    if done_file:
        with open(done_file, "a") as f:  # noqa: ASYNC230 - a test hook, one short write
            f.write(ctx.job_id + "\n")
    return "done"


endpoints.map_async_post("Slow", "/slow")
endpoints.map_job_details("/jobs/<uuid:job_id>")
