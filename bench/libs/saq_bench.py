"""SAQ (asyncio): W1, W2, W3, W7 through its public API, library defaults.

    bench/.venv-peers/saq/bin/python bench/libs/saq_bench.py W1 --redis-url URL --n 20000

Enqueue: ``Queue.enqueue`` for every job at once under ``asyncio.gather`` (what SAQ's own
``Queue.map`` does; the queue bounds its in-flight operations itself). Worker:
``saq.Worker(queue, functions, concurrency=32)`` started in this process.
Drain complete: ``Queue.count("incomplete") == 0``. W3: ``Job.refresh(until_complete=1)``,
which waits on SAQ's pub/sub job updates, repeated until the job is terminal.
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
from saq import Queue, Worker
from saq.job import TERMINAL_STATUSES


async def w_drain(args: Any) -> dict[str, Any]:
    d = Drain()

    async def job(ctx: dict[str, Any], data: str | None = None) -> str | None:
        d.handler_called()
        if args.workload == "W2":
            await asyncio.sleep(args.sleep)
        return data

    job.__qualname__ = job.__name__ = "job"
    queue = Queue.from_url(args.redis_url)
    await queue.connect()
    kwargs = {"data": PAYLOAD_100} if args.workload == "W7" else {}
    before = redis_snapshot(args.redis_url)
    start = time.perf_counter()
    await asyncio.gather(*(queue.enqueue("job", **kwargs) for _ in range(args.n)))
    enqueue_s = time.perf_counter() - start

    worker = Worker(queue, functions=[job], concurrency=args.concurrency)
    d.worker_started = time.perf_counter()
    task = asyncio.create_task(worker.start())
    while True:
        if d.handler_calls >= args.n:
            d.polls += 1
            if await queue.count("incomplete") == 0:
                d.done_at = time.perf_counter()
                break
        await asyncio.sleep(POLL_INTERVAL)
    after_run = redis_snapshot(args.redis_url)
    await worker.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await queue.disconnect()
    await asyncio.sleep(0.1)
    return throughput_figures(args.workload, args, enqueue_s, d, before, after_run)


async def noop(ctx: dict[str, Any]) -> None:
    return None


noop.__qualname__ = noop.__name__ = "job"


async def worker(args: Any) -> None:
    queue = Queue.from_url(args.redis_url)
    await Worker(queue, functions=[noop], concurrency=args.concurrency).start()


async def w3(args: Any) -> dict[str, Any]:
    queue = Queue.from_url(args.redis_url)
    await queue.connect()
    samples: list[float] = []
    with WorkerProcess(__file__, args):
        budget_end = time.perf_counter() + args.budget
        for i in range(args.warmup + args.n):
            start = time.perf_counter()
            enqueued = await queue.enqueue("job")
            assert enqueued is not None
            # Job.refresh reads the job, then subscribes: an end between the two is missed
            # and the wait runs to its timeout (seen here, rarely). Re-check each second,
            # as a robust SAQ client must; such a sample costs up to 1 s and shows in max.
            for _ in range(30):
                try:
                    await enqueued.refresh(until_complete=1.0)
                except TimeoutError:
                    await enqueued.refresh()
                if enqueued.status in TERMINAL_STATUSES:
                    break
            elapsed = time.perf_counter() - start
            assert enqueued.status == "complete", enqueued.status
            if i >= args.warmup:
                samples.append(elapsed)
                if time.perf_counter() > budget_end:
                    break
    await queue.disconnect()
    return latency_figures(samples)


async def main() -> None:
    args = script_args(__doc__.splitlines()[0])
    if args.workload == "worker":
        await worker(args)
    else:
        emit(await (w3(args) if args.workload == "W3" else w_drain(args)))


if __name__ == "__main__":
    asyncio.run(main())
