"""The ProcessData service from the README, on the in-memory store.

Run it:   python examples/quickstart.py            (serves on http://127.0.0.1:8000)
    or:   python -m asyncendpoints_trio serve examples.quickstart:app --bind 127.0.0.1:8000
    or:   hypercorn -k trio examples.quickstart:app

Then:     curl -si -X POST localhost:8000/api/process-data \
               -H 'content-type: application/json' -d '{"data": "hello"}'
          curl -s 'localhost:8000/jobs/<id from Location>?wait=10'
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import trio
from quart_trio import QuartTrio

from asyncendpoints_trio import AsyncContext, AsyncEndpoints, RetryPolicy


@dataclass
class DataRequest:
    data: str
    processing_priority: int = 1


@dataclass
class ProcessResult:
    processed_data: str
    character_count: int


app = QuartTrio(__name__)
endpoints = AsyncEndpoints(app)  # MemoryStore() is the default store


@endpoints.handler("ProcessData", retry=RetryPolicy(max_retries=3, base_delay=2.0), timeout=60)
async def process_data(ctx: AsyncContext[DataRequest]) -> ProcessResult:
    await trio.sleep(5)
    return ProcessResult(f"Processed: {ctx.request.data.upper()}", len(ctx.request.data))


endpoints.map_async_post("ProcessData", "/api/process-data")
endpoints.map_job_details("/jobs/<uuid:job_id>")  # GET (with ?wait=), DELETE cancels


if __name__ == "__main__":
    sys.exit(endpoints.run())  # the options of `serve`: --bind, --redis-url, ...
