"""asyncendpoints-trio: W1, W2, W3, W7 (see docs/pages/benchmarks.md).

    python bench/libs/ours.py W1 --redis-url redis://127.0.0.1:PORT/0 --n 20000

Enqueue uses the store's batch submit (``RedisStore.submit`` with lists of ``NewJob``, as the
runtime's group commit does); processing runs a ``Runtime`` with
``EndpointsConfig(concurrency=32)`` in this process. W7 ``--store memory`` measures
``MemoryStore`` with tracemalloc instead of Redis.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import sys
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import _telemetry  # noqa: E402
import orjson  # noqa: E402
import trio  # noqa: E402
from _common import (  # noqa: E402
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
from pydantic import TypeAdapter  # noqa: E402

from asyncendpoints_trio import (  # noqa: E402
    AsyncContext,
    AsyncEndpoints,
    EndpointsConfig,
    NewJob,
    Runtime,
)
from asyncendpoints_trio.stores import RedisStore  # noqa: E402
from asyncendpoints_trio.stores._memory import MemoryStore  # noqa: E402
from asyncendpoints_trio.stores._protocol import Complete  # noqa: E402
from asyncendpoints_trio.telemetry._instrumented import InstrumentedStore  # noqa: E402

# Jobs per store.submit call, and how many such calls are in flight at once. 256 is the
# runtime's own group-commit limit (EndpointsConfig.submit_batch).
BATCH = int(os.environ.get("BENCH_OURS_BATCH", "256"))
SUBMITTERS = int(os.environ.get("BENCH_OURS_SUBMITTERS", "1"))
TERMINAL_KEY = "ae:{default}:expiry"  # ZSET of terminal jobs (retention clock)


def new_job(name: str, payload: bytes) -> NewJob:
    return NewJob(id=str(uuid.uuid4()), name=name, payload=payload, max_retries=3)


def make_endpoints(concurrency: int) -> AsyncEndpoints:
    # No app: AsyncEndpoints is only the handler registry and config here.
    _telemetry.install()
    return AsyncEndpoints(config=EndpointsConfig(concurrency=concurrency, max_queued=None,
                                                 shutdown_grace=1.0,
                                                 metrics=_telemetry.metrics_on()))


async def bulk_submit(store: RedisStore, jobs: list[NewJob]) -> float:
    batches = [jobs[i:i + BATCH] for i in range(0, len(jobs), BATCH)]
    start = time.perf_counter()

    async def submitter(mine: list[list[NewJob]]) -> None:
        for batch in mine:
            answers = await store.submit(batch)
            assert all(not isinstance(a, Exception) for a in answers), answers[:3]

    async with trio.open_nursery() as nursery:
        for k in range(SUBMITTERS):
            nursery.start_soon(submitter, batches[k::SUBMITTERS])
    return time.perf_counter() - start


async def drain(store: RedisStore, endpoints: AsyncEndpoints, d: Drain, n: int) -> None:
    """Start a Runtime on ``n`` queued jobs; return once all are terminal in Redis."""
    # As AsyncEndpoints would: the store's calls timed and counted when metrics are on.
    timed = InstrumentedStore(store) if endpoints.config.metrics else store
    runtime = Runtime(timed, endpoints.handlers, endpoints.config)
    async with trio.open_nursery() as nursery:
        d.worker_started = time.perf_counter()
        await nursery.start(runtime.run)
        while True:
            if d.handler_calls >= n:
                d.polls += 1
                if await store.client.execute("ZCARD", TERMINAL_KEY) >= n:
                    d.done_at = time.perf_counter()
                    break
            await trio.sleep(POLL_INTERVAL)
        stats = runtime.statistics()
        runtime.stop()
        await runtime.wait_stopped()
    d.extra = stats  # type: ignore[attr-defined]


async def w_drain(args: Any, workload: str) -> dict[str, Any]:
    d = Drain()
    endpoints = make_endpoints(args.concurrency)

    if workload == "W2":
        @endpoints.handler("Job")
        async def sleeper(ctx: AsyncContext[Any]) -> None:
            d.handler_called()
            await trio.sleep(args.sleep)
        payload = b"null"
    elif workload == "W7":
        @endpoints.handler("Job")
        async def echo(ctx: AsyncContext[str]) -> str:
            d.handler_called()
            return ctx.request
        payload = orjson.dumps(PAYLOAD_100)
    else:
        @endpoints.handler("Job")
        async def noop(ctx: AsyncContext[Any]) -> None:
            d.handler_called()
        payload = b"null"

    store = RedisStore.from_url(args.redis_url)
    jobs = [new_job("Job", payload) for _ in range(args.n)]
    before = redis_snapshot(args.redis_url)
    enqueue_s = await bulk_submit(store, jobs)
    await drain(store, endpoints, d, args.n)
    after_run = redis_snapshot(args.redis_url)
    await store.aclose()
    await trio.sleep(0.1)
    out = throughput_figures(workload, args, enqueue_s, d, before, after_run)
    stats = d.extra  # type: ignore[attr-defined]
    out["runtime"] = {k: dataclasses.asdict(getattr(stats, k))
                      for k in ("intake", "dispatcher", "workers", "outcomes")}
    return out


async def w3(args: Any) -> dict[str, Any]:
    """Client side: store.submit of one job, then store.wait_for_terminal, which wakes on
    the store's pub/sub feed (this process runs ``watch_events`` for it, as a Runtime does).
    The worker is another process (``worker`` mode)."""
    store = RedisStore.from_url(args.redis_url)
    samples: list[float] = []
    with WorkerProcess(__file__, args):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store.watch_events, lambda _job_id: None)
            with trio.fail_after(10):
                while not store.statistics()["subscribed"]:  # noqa: ASYNC110
                    await trio.sleep(0.01)
            budget_end = time.perf_counter() + args.budget
            for i in range(args.warmup + args.n):
                start = time.perf_counter()
                new = new_job("Job", b"null")
                [submitted] = await store.submit([new])
                assert not isinstance(submitted, Exception), submitted
                job = await store.wait_for_terminal(new.id, 30.0)
                elapsed = time.perf_counter() - start
                assert job is not None and job.is_terminal, job
                if i >= args.warmup:
                    samples.append(elapsed)
                    if time.perf_counter() > budget_end:
                        break
            nursery.cancel_scope.cancel()
    await store.aclose()
    return latency_figures(samples)


async def worker(args: Any) -> None:
    """An idle Runtime (concurrency 32) on the Redis store, until killed."""
    endpoints = make_endpoints(args.concurrency)

    @endpoints.handler("Job")
    async def noop(ctx: AsyncContext[Any]) -> None:
        return None

    store = RedisStore.from_url(args.redis_url)
    async with trio.open_nursery() as nursery:
        await nursery.start(Runtime(store, endpoints.handlers, endpoints.config).run)


async def w7_memory(args: Any) -> dict[str, Any]:
    """Bytes a MemoryStore keeps per terminal job (100-byte payload and result)."""
    store = MemoryStore(retention=3600.0)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    # Built while tracing: each job's id and payload are its own objects, made as the
    # library makes them (the handler's pydantic adapter; orjson.dumps output would be
    # over-allocated to ~4 KiB per object and distort the figure).
    dump = TypeAdapter(str).dump_json
    jobs = [new_job("Job", dump(PAYLOAD_100)) for _ in range(args.n)]
    for i in range(0, len(jobs), BATCH):
        await store.submit(jobs[i:i + BATCH])
    del jobs  # the store's own copies are what we measure
    claimed = await store.claim("bench", args.n, 3600.0)
    await store.finish([Complete(c.lease, dump(PAYLOAD_100)) for c in claimed])
    del claimed
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return {"n": args.n, "bytes_per_job": used / args.n}


async def main() -> None:
    args = script_args(__doc__.splitlines()[0])
    if args.workload == "worker":
        await worker(args)
    elif args.workload == "W3":
        emit(await w3(args))
    elif args.workload == "W7" and os.environ.get("BENCH_STORE") == "memory":
        emit(await w7_memory(args))
    else:
        emit(await w_drain(args, args.workload))


if __name__ == "__main__":
    trio.run(main)
