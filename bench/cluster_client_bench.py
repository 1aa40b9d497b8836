"""The cost of routing: ``ClusterClient`` against ``RedisClient`` talking to the same node.

    python bench/cluster_client_bench.py [--seconds-per-case 1.0]

Starts a private 6-node Redis Cluster (3 primaries with a replica each). ``RedisClient``
connects straight to the primary serving the benchmark key; ``ClusterClient`` gets the
cluster URL and routes. Both run the same calls, alternately, in one run; the ratio is
cluster/direct throughput (1.00: routing costs nothing), from the medians of alternating
short rounds. The last row has no direct
counterpart: a pipeline of 100 spread over all three primaries, against the direct
client's one-node pipeline of 100. Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asyncendpoints_trio.redis import ClusterClient, RedisClient, Script
from tests._redis_cluster import redis_cluster

PIPELINE = 100
ROUNDS = 7
SCRIPT = Script("return redis.call('GET', KEYS[1])")
KEY = "{bench}key"


async def measure(seconds: float, batch: Callable[[], Awaitable[int]]) -> float:
    """Run ``batch`` (returns calls done) until ``seconds`` pass; calls per second."""
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        done += await batch()
    return done / (time.perf_counter() - start)


def cases(redis: Any, spread: list[str]) -> list[tuple[str, Callable[[], Awaitable[int]]]]:
    one_slot = [("GET", KEY)] * PIPELINE
    scripts = [(SCRIPT, [KEY], [])] * PIPELINE
    many_nodes = [("GET", key) for key in spread]

    async def sequential_evalsha() -> int:
        for _ in range(100):
            await redis.evalsha(SCRIPT, [KEY])
        return 100

    async def pipeline() -> int:
        await redis.pipeline(one_slot)
        return PIPELINE

    async def evalsha_many() -> int:
        await redis.evalsha_many(scripts)
        return PIPELINE

    async def pipeline_three_nodes() -> int:
        await redis.pipeline(many_nodes if isinstance(redis, ClusterClient) else one_slot)
        return PIPELINE

    return [("sequential EVALSHA", sequential_evalsha),
            (f"pipeline of {PIPELINE} GET, one slot", pipeline),
            (f"evalsha_many of {PIPELINE}, one slot", evalsha_many),
            (f"pipeline of {PIPELINE} GET over 3 primaries*", pipeline_three_nodes)]


async def run(cluster_url: str, node_port: int, spread: list[str],
              seconds: float) -> list[tuple[str, float, float]]:
    async with RedisClient.from_url(f"redis://127.0.0.1:{node_port}/0") as direct, \
            ClusterClient.from_url(cluster_url) as routed:
        await routed.execute("SET", KEY, b"x" * 64)
        for key in spread:
            await routed.execute("SET", key, b"y" * 64)
        rows = []
        for (name, direct_case), (_, routed_case) in zip(
                cases(direct, spread), cases(routed, spread), strict=True):
            await measure(0.1, direct_case)  # warm up: connections, script caches
            await measure(0.1, routed_case)
            # Short alternating rounds, medians: the machine's load drifts during a run,
            # and both clients should see the same drift.
            direct_rates, routed_rates = [], []
            for _ in range(ROUNDS):
                direct_rates.append(await measure(seconds / ROUNDS, direct_case))
                routed_rates.append(await measure(seconds / ROUNDS, routed_case))
            rows.append((name, statistics.median(direct_rates),
                         statistics.median(routed_rates)))
        assert routed.statistics().connection_errors == 0
        assert routed.statistics().moved == 0
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds-per-case", type=float, default=1.0)
    options = parser.parse_args()
    with redis_cluster() as cluster:
        print(f"cluster of 6 started in {cluster.start_seconds:.2f}s")
        port = cluster.owner_of(KEY)
        spread = [key for p in cluster.primaries()
                  for key in cluster.keys_on(p, PIPELINE // 3 + 1, "bench:")][:PIPELINE]
        rows = trio.run(run, cluster.url, port, spread, options.seconds_per_case)
    width = max(len(name) for name, *_ in rows)
    print(f"{'case':<{width}}  {'direct/s':>10}  {'cluster/s':>10}  {'ratio':>6}")
    print(f"{'-' * width}  {'-' * 10}  {'-' * 10}  {'-' * 6}")
    for name, direct, routed in rows:
        print(f"{name:<{width}}  {direct:>10,.0f}  {routed:>10,.0f}  {routed / direct:>6.2f}")
    print("* direct: its pipeline of 100 on one node, for comparison")


if __name__ == "__main__":
    main()
