"""Apps for the HTTP benchmarks: ours with a no-op handler, and a bare Quart-Trio route that
answers the same 202 JSON without the library (the ceiling our submit path is measured by)."""

from __future__ import annotations

import os
import uuid

from quart import Response
from quart_trio import QuartTrio

from asyncendpoints_trio import AsyncContext, AsyncEndpoints, EndpointsConfig
from bench import _telemetry

_telemetry.install()
ours = QuartTrio("bench-ours")
endpoints = AsyncEndpoints(ours, config=EndpointsConfig(
    concurrency=int(os.environ.get("BENCH_CONCURRENCY", "32")), max_queued=None,
    shutdown_grace=1, metrics=_telemetry.metrics_on()))


@endpoints.handler("Noop")
async def noop(ctx: AsyncContext[dict[str, str]]) -> dict[str, str]:
    return ctx.request


endpoints.map_async_post("Noop", "/submit")
endpoints.map_job_details("/jobs/<uuid:job_id>")

bare = QuartTrio("bench-bare")

_TEMPLATE = (
    '{"id":"%s","name":"Noop","status":"Queued","retryCount":0,"maxRetries":3,'
    '"createdAt":"2026-01-01T00:00:00+00:00","startedAt":null,"completedAt":null,'
    '"lastUpdatedAt":"2026-01-01T00:00:00+00:00","result":null,"error":null,'
    '"cancelRequested":false}'
)


@bare.post("/submit")
async def bare_submit() -> Response:
    from quart import request

    await request.get_data()
    job_id = str(uuid.uuid4())
    return Response(_TEMPLATE % job_id, status=202, content_type="application/json",
                    headers={"Location": f"/jobs/{job_id}", "Retry-After": "1"})
