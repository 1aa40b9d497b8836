"""The app W6 runs with ``python -m asyncendpoints_trio worker bench.reclaim_app:app``.

Its one handler, ``Hold``, appends ``job_id pid wall_time`` to the file named by
``BENCH_RECORD`` when it starts, then holds its job (sleeps) until the process dies, so the
benchmark can tell which instance started each job, and when. ``BENCH_RECOVERY_INTERVAL``
sets how often the instance sweeps for expired leases (library default: 5 s).
"""

from __future__ import annotations

import os
import time
from typing import Any

import trio
from quart_trio import QuartTrio

from asyncendpoints_trio import AsyncContext, AsyncEndpoints, EndpointsConfig

_config: dict[str, Any] = {"concurrency": 16}
if "BENCH_RECOVERY_INTERVAL" in os.environ:
    _config["recovery_interval"] = float(os.environ["BENCH_RECOVERY_INTERVAL"])

app = QuartTrio("bench-reclaim")
endpoints = AsyncEndpoints(app, config=EndpointsConfig(**_config))


@endpoints.handler("Hold")
async def hold(ctx: AsyncContext[Any]) -> None:
    line = f"{ctx.job_id} {os.getpid()} {time.time():.6f}\n".encode()
    fd = os.open(os.environ["BENCH_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one O_APPEND write: lines of two processes never interleave
    finally:
        os.close(fd)
    await trio.sleep(3600)
