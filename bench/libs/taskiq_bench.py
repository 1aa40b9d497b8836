"""taskiq + taskiq-redis (asyncio): W1, W2, W3, W7 through the public API, defaults.

    bench/.venv-peers/taskiq/bin/python bench/libs/taskiq_bench.py W1 --redis-url URL --n 20000

Broker and result backend as in taskiq-redis's README: ``RedisStreamBroker`` with
``RedisAsyncResultBackend``. Enqueue: ``task.kiq()`` for every job, ``ENQUEUE_CONCURRENCY``
in flight at once (taskiq has no bulk enqueue). Worker: ``taskiq.api.run_receiver_task``
with ``max_async_tasks=32`` in this process (taskiq's programmatic worker; the CLI starts
two processes by default). Drain complete: N result keys exist (``DBSIZE`` grew by N).
W3: ``AsyncTaskiqTask.wait_result()``, which polls (default ``check_interval`` 0.2 s).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

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
from redis.asyncio import Redis
from taskiq.api import run_receiver_task
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

ENQUEUE_CONCURRENCY = 64


def make_broker(url: str) -> RedisStreamBroker:
    return RedisStreamBroker(url=url).with_result_backend(RedisAsyncResultBackend(redis_url=url))


async def bounded(coros: list[Any], limit: int) -> None:
    it = iter(coros)

    async def lane() -> None:
        for coro in it:
            await coro

    await asyncio.gather(*(lane() for _ in range(limit)))


async def stop(task: asyncio.Task[Any], broker: RedisStreamBroker) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await broker.shutdown()


async def w_drain(args: Any) -> dict[str, Any]:
    d = Drain()
    broker = make_broker(args.redis_url)

    @broker.task(task_name="job")
    async def job(data: str | None = None) -> str | None:
        d.handler_called()
        if args.workload == "W2":
            await asyncio.sleep(args.sleep)
        return data

    # The stream's consumer group starts at "$": it must exist before the jobs are sent.
    await broker.startup()
    kwargs = {"data": PAYLOAD_100} if args.workload == "W7" else {}
    before = redis_snapshot(args.redis_url)
    start = time.perf_counter()
    await bounded([job.kiq(**kwargs) for _ in range(args.n)], ENQUEUE_CONCURRENCY)
    enqueue_s = time.perf_counter() - start

    admin = Redis.from_url(args.redis_url)
    base_keys = await admin.dbsize()
    d.worker_started = time.perf_counter()
    task = asyncio.create_task(run_receiver_task(broker, max_async_tasks=args.concurrency))
    while True:
        if d.handler_calls >= args.n:
            d.polls += 1
            if await admin.dbsize() - base_keys >= args.n:
                d.done_at = time.perf_counter()
                break
        await asyncio.sleep(POLL_INTERVAL)
    after_run = redis_snapshot(args.redis_url)
    await admin.aclose()
    await stop(task, broker)
    await asyncio.sleep(0.1)
    return throughput_figures(args.workload, args, enqueue_s, d, before, after_run,
                              extra_ignored_calls=1)


async def noop() -> None:
    return None


async def worker(args: Any) -> None:
    broker = make_broker(args.redis_url)
    broker.task(task_name="job")(noop)
    await broker.startup()
    await run_receiver_task(broker, max_async_tasks=args.concurrency)


async def w3(args: Any) -> dict[str, Any]:
    broker = make_broker(args.redis_url)
    job = broker.task(task_name="job")(noop)
    await broker.startup()
    samples: list[float] = []
    with WorkerProcess(__file__, args):
        budget_end = time.perf_counter() + args.budget
        for i in range(args.warmup + args.n):
            start = time.perf_counter()
            sent = await job.kiq()
            result = await sent.wait_result(timeout=30)
            elapsed = time.perf_counter() - start
            assert not result.is_err, result
            if i >= args.warmup:
                samples.append(elapsed)
                if time.perf_counter() > budget_end:
                    break
    await broker.shutdown()
    return latency_figures(samples)


async def main() -> None:
    args = script_args(__doc__.splitlines()[0])
    if args.workload == "worker":
        await worker(args)
    else:
        emit(await (w3(args) if args.workload == "W3" else w_drain(args)))


if __name__ == "__main__":
    asyncio.run(main())
