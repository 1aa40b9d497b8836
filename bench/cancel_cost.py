"""What cancelling a queued job costs Redis, by queue length.

    python bench/cancel_cost.py [--queued 1000,10000,100000] [--cancels 200]

Fills a fresh private redis-server with N queued jobs, then cancels jobs from the middle of
the queue and reads the server's own time for the cancel script (INFO commandstats,
usec per EVALSHA call), so client and network time do not count. Redis runs one script at a
time: while a cancel runs, every other client (heartbeats included) waits.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asyncendpoints_trio import NewJob
from asyncendpoints_trio.stores._redis import RedisStore
from tests._redis_server import RedisServer


def evalsha_stats(info: bytes) -> tuple[int, int]:
    for line in info.decode().splitlines():
        if line.startswith("cmdstat_evalsha:"):
            fields = dict(part.split("=") for part in line.split(":", 1)[1].split(","))
            return int(fields["calls"]), int(fields["usec"])
    return 0, 0


async def measure(url: str, queued: int, cancels: int) -> float:
    store = RedisStore.from_url(url, queue=f"c{queued}")
    try:
        ids = [str(uuid.uuid4()) for _ in range(queued)]
        for start in range(0, queued, 1000):
            await store.submit([NewJob(i, "W", b"1", 0) for i in ids[start:start + 1000]],
                               max_queued=None)
        middle = ids[queued // 4: queued // 4 + cancels]
        calls0, usec0 = evalsha_stats(await store.client.execute("INFO", "commandstats"))
        for job_id in middle:
            await store.cancel(job_id)
        calls1, usec1 = evalsha_stats(await store.client.execute("INFO", "commandstats"))
        return (usec1 - usec0) / max(1, calls1 - calls0)
    finally:
        await store.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queued", default="1000,10000,100000")
    parser.add_argument("--cancels", type=int, default=200)
    args = parser.parse_args()
    with RedisServer() as server:
        for queued in (int(n) for n in args.queued.split(",")):
            usec = await measure(server.url, queued, args.cancels)
            print(f"{queued:>7} queued: cancel takes {usec:7.1f} us of Redis time")


if __name__ == "__main__":
    trio.run(main)
