"""Redis round trips per job, submit -> Completed, counted by our client (not timed).

    python bench/roundtrips.py [--jobs 2000] [--submitters 50]

Two cases on a private redis-server: a loaded instance (concurrent single submits, as HTTP
routes make them, at concurrency 32), and one job at a time on an idle instance.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asyncendpoints_trio import AsyncContext, EndpointsConfig, HandlerRegistry, NewJob, Runtime
from asyncendpoints_trio._handlers import make_spec
from asyncendpoints_trio.stores._redis import RedisStore
from tests._redis_server import RedisServer


def sent(store: RedisStore) -> int:
    """Round trips by both of the store's pools (HTTP-side and the runtime's own)."""
    return store.client.statistics().commands_sent + store.control.statistics().commands_sent


async def noop(ctx: AsyncContext[int]) -> int:
    return ctx.request


def job() -> NewJob:
    return NewJob(str(uuid.uuid4()), "Noop", b"1", 3)


async def measure(url: str, jobs: int, submitters: int) -> None:
    handlers = HandlerRegistry()
    handlers.add(make_spec("Noop", noop))
    store = RedisStore.from_url(url)
    watcher = RedisStore.from_url(url)  # its own client: waiting is not counted
    runtime = Runtime(store, handlers, EndpointsConfig(concurrency=32))
    async with trio.open_nursery() as nursery:
        await nursery.start(runtime.run)
        ids: list[str] = []

        async def submitter(count: int) -> None:
            for _ in range(count):
                ids.append((await runtime.submit(job())).job.id)

        before = sent(store)
        async with trio.open_nursery() as inner:
            for _ in range(submitters):
                inner.start_soon(submitter, jobs // submitters)
        with trio.fail_after(120):
            for job_id in ids:
                await watcher.wait_for_terminal(job_id, 60)
        loaded = (sent(store) - before) / len(ids)

        before = sent(store)
        for _ in range(50):
            job_id = (await runtime.submit(job())).job.id
            with trio.fail_after(10):
                await watcher.wait_for_terminal(job_id, 10)
            await trio.sleep(0.05)  # let the dispatcher go back to sleep on BLPOP
        single = (sent(store) - before) / 50
        runtime.stop()
    await store.aclose()
    await watcher.aclose()
    print(f"loaded ({len(ids)} jobs, {submitters} concurrent submitters, concurrency 32): "
          f"{loaded:.2f} round trips per job")
    print(f"one job at a time on an idle instance: {single:.2f} round trips per job")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--submitters", type=int, default=50)
    args = parser.parse_args()
    with RedisServer() as server:
        trio.run(measure, server.url, args.jobs, args.submitters)


if __name__ == "__main__":
    main()
