"""Rough throughput of the Redis client against a private redis-server (about 5 s).

    python bench/redis_client_bench.py [--seconds-per-case 1.5]

Not a test: numbers depend on the machine and its load. Prints GET/s for sequential calls,
concurrent calls from 16 tasks (pool of 16), and pipelines of 100.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asyncendpoints_trio.redis import RedisClient
from tests._redis_server import RedisServer

PIPELINE = 100
TASKS = 16


async def measure(seconds: float, batch: Callable[[], Awaitable[int]]) -> float:
    """Run ``batch`` (returns GETs done) until ``seconds`` pass; GETs per second."""
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        done += await batch()
    return done / (time.perf_counter() - start)


async def run(url: str, seconds: float) -> list[tuple[str, float]]:
    async with RedisClient.from_url(url, max_connections=TASKS) as redis:
        await redis.execute("SET", "bench:key", b"x" * 64)

        async def sequential() -> int:
            for _ in range(100):
                await redis.execute("GET", "bench:key")
            return 100

        async def concurrent() -> int:
            async def worker() -> None:
                for _ in range(50):
                    await redis.execute("GET", "bench:key")

            async with trio.open_nursery() as nursery:
                for _ in range(TASKS):
                    nursery.start_soon(worker)
            return 50 * TASKS

        commands = [("GET", "bench:key")] * PIPELINE

        async def pipelined() -> int:
            await redis.pipeline(commands)
            return PIPELINE

        await measure(0.2, sequential)  # warm up: connections, caches
        results = [
            ("sequential GET", await measure(seconds, sequential)),
            (f"concurrent GET ({TASKS} tasks)", await measure(seconds, concurrent)),
            (f"pipelined GET (x{PIPELINE})", await measure(seconds, pipelined)),
        ]
        stats = redis.statistics()
        assert stats.connection_errors == 0, stats
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds-per-case", type=float, default=1.5)
    options = parser.parse_args()
    with RedisServer() as server:
        results = trio.run(run, server.url, options.seconds_per_case)
    width = max(len(name) for name, _ in results)
    print(f"{'case':<{width}}  {'GET/s':>12}")
    print(f"{'-' * width}  {'-' * 12}")
    for name, rate in results:
        print(f"{name:<{width}}  {rate:>12,.0f}")


if __name__ == "__main__":
    main()
