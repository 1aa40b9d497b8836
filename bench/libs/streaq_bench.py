"""streaq (anyio on asyncio, its default backend): W1, W2, W3, W7, public API, defaults.

    bench/.venv-peers/streaq/bin/python bench/libs/streaq_bench.py W1 --redis-url URL --n 20000

Enqueue: ``Worker.enqueue_many`` (streaq's bulk API: one pipeline). Worker:
``streaq.Worker(concurrency=32)`` run in this process with ``run_async``. Drain complete:
the worker's results ZSET holds N entries (streaq adds each finished task there when it
writes the result). W3: ``Task.result()``, which waits on streaq's pub/sub result channel.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anyio
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
from streaq import Worker


def pair(args: Any) -> tuple[Worker, Worker]:
    """A client (enqueues, reads results) and the worker that runs tasks: streaq allows one
    ``async with`` per Worker object, and ``run_async`` enters its own. handle_signals=False:
    the worker shares this process with the benchmark's loop."""
    return (Worker(redis_url=args.redis_url, handle_signals=False),
            Worker(redis_url=args.redis_url, concurrency=args.concurrency,
                   handle_signals=False))


async def w_drain(args: Any) -> dict[str, Any]:
    d = Drain()

    async def run(data: str | None = None) -> str | None:
        d.handler_called()
        if args.workload == "W2":
            await anyio.sleep(args.sleep)
        return data

    client, worker = pair(args)
    job = client.task(name="job")(run)
    worker.task(name="job")(run)
    kwargs = {"data": PAYLOAD_100} if args.workload == "W7" else {}
    async with client:
        before = redis_snapshot(args.redis_url)
        tasks = [job.enqueue(**kwargs) for _ in range(args.n)]
        start = time.perf_counter()
        await client.enqueue_many(tasks)
        enqueue_s = time.perf_counter() - start
        async with anyio.create_task_group() as tg:
            d.worker_started = time.perf_counter()
            await tg.start(worker.run_async)
            while True:
                if d.handler_calls >= args.n:
                    d.polls += 1
                    if await client.redis.zcard(client._results_set) >= args.n:
                        d.done_at = time.perf_counter()
                        break
                await anyio.sleep(POLL_INTERVAL)
            after_run = redis_snapshot(args.redis_url)
            tg.cancel_scope.cancel()
    await anyio.sleep(0.1)
    return throughput_figures(args.workload, args, enqueue_s, d, before, after_run)


async def noop() -> None:
    return None


async def worker(args: Any) -> None:
    runner = Worker(redis_url=args.redis_url, concurrency=args.concurrency)
    runner.task(name="job")(noop)
    await runner.run_async()


async def w3(args: Any) -> dict[str, Any]:
    client = Worker(redis_url=args.redis_url)
    job = client.task(name="job")(noop)
    samples: list[float] = []
    with WorkerProcess(__file__, args):
        async with client:
            budget_end = time.perf_counter() + args.budget
            for i in range(args.warmup + args.n):
                start = time.perf_counter()
                task = await job.enqueue()
                result = await task.result(timeout=30)
                elapsed = time.perf_counter() - start
                assert result.success, result
                if i >= args.warmup:
                    samples.append(elapsed)
                    if time.perf_counter() > budget_end:
                        break
    return latency_figures(samples)


async def main() -> None:
    args = script_args(__doc__.splitlines()[0])
    if args.workload == "worker":
        await worker(args)
    else:
        emit(await (w3(args) if args.workload == "W3" else w_drain(args)))


if __name__ == "__main__":
    anyio.run(main, backend="asyncio")
