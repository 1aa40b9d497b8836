"""arq (asyncio): W1, W2, W3, W7 through its public API, library defaults.

    bench/.venv-peers/arq/bin/python bench/libs/arq_bench.py W1 --redis-url URL --n 20000

Enqueue: ``ArqRedis.enqueue_job`` for every job, ``ENQUEUE_CONCURRENCY`` calls in flight at
once (arq has no bulk enqueue; each call is its own WATCH/MULTI transaction on its own pooled
connection, so an unbounded gather would open one connection per job). Worker:
``arq.Worker(functions, max_jobs=32)`` in this process. Drain complete: the queue ZSET is
empty (arq removes a job from it when its result is written). W3: ``Job.result()``, which
polls (default ``poll_delay`` 0.5 s); the worker polls its queue every 0.5 s by default too.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import (
    PAYLOAD_100,
    POLL_INTERVAL,
    Drain,
    WorkerProcess,
    emit,
    latency_figures,
    redis_snapshot,
    script_args,
    throughput_figures,
)
from arq import Worker, create_pool
from arq.connections import RedisSettings
from arq.constants import default_queue_name
from arq.worker import func

ENQUEUE_CONCURRENCY = 64


def settings(url: str) -> RedisSettings:
    parsed = urlparse(url)
    return RedisSettings(host=parsed.hostname or "127.0.0.1", port=parsed.port or 6379)


async def bounded(coros: list[Any], limit: int) -> None:
    it = iter(coros)

    async def lane() -> None:
        for coro in it:
            assert await coro is not None

    await asyncio.gather(*(lane() for _ in range(limit)))


def make_worker(url: str, fn: Any, concurrency: int) -> Worker:
    # handle_signals=False: the worker shares this process with the benchmark's loop.
    return Worker(functions=[func(fn, name="job")], redis_settings=settings(url),
                  max_jobs=concurrency, handle_signals=False)


async def w_drain(args: Any) -> dict[str, Any]:
    d = Drain()

    async def job(ctx: dict[str, Any], data: str | None = None) -> str | None:
        d.handler_called()
        if args.workload == "W2":
            await asyncio.sleep(args.sleep)
        return data

    redis = await create_pool(settings(args.redis_url))
    jargs = (PAYLOAD_100,) if args.workload == "W7" else ()
    before = redis_snapshot(args.redis_url)
    start = time.perf_counter()
    await bounded([redis.enqueue_job("job", *jargs) for _ in range(args.n)],
                  ENQUEUE_CONCURRENCY)
    enqueue_s = time.perf_counter() - start

    worker = make_worker(args.redis_url, job, args.concurrency)
    d.worker_started = time.perf_counter()
    task = asyncio.create_task(worker.async_run())
    while True:
        if d.handler_calls >= args.n:
            d.polls += 1
            if await redis.zcard(default_queue_name) == 0:
                d.done_at = time.perf_counter()
                break
        await asyncio.sleep(POLL_INTERVAL)
    after_run = redis_snapshot(args.redis_url)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await worker.close()
    await redis.aclose()
    await asyncio.sleep(0.1)
    return throughput_figures(args.workload, args, enqueue_s, d, before, after_run)


async def noop(ctx: dict[str, Any]) -> None:
    return None


async def worker(args: Any) -> None:
    await Worker(functions=[func(noop, name="job")], redis_settings=settings(args.redis_url),
                 max_jobs=args.concurrency).async_run()


async def w3(args: Any) -> dict[str, Any]:
    redis = await create_pool(settings(args.redis_url))
    samples: list[float] = []
    with WorkerProcess(__file__, args):
        budget_end = time.perf_counter() + args.budget
        for i in range(args.warmup + args.n):
            start = time.perf_counter()
            enqueued = await redis.enqueue_job("job")
            assert enqueued is not None
            await enqueued.result(timeout=30)
            elapsed = time.perf_counter() - start
            if i >= args.warmup:
                samples.append(elapsed)
                if time.perf_counter() > budget_end:
                    break
    await redis.aclose()
    return latency_figures(samples)


async def main() -> None:
    args = script_args(__doc__.splitlines()[0])
    if args.workload == "worker":
        await worker(args)
    else:
        emit(await (w3(args) if args.workload == "W3" else w_drain(args)))


if __name__ == "__main__":
    asyncio.run(main())
