"""Redis server time of the job scripts, per job: submit, and claim + finish.

    python bench/script_cost.py [TREE]      # TREE: a checkout whose package to import

Submits 20,000 no-op jobs in batches of 256, then claims them 32 at a time and completes
each batch, on a fresh private redis-server, and reads ``INFO commandstats`` (the
server's own time in ``EVALSHA``, nested commands included) after each phase. Less sensitive
to a busy machine than a throughput, since it counts the server's time alone. Prints one
``BENCH_RESULT`` line; bench/admin_cost.py runs it for two trees side by side.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

TREE = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
sys.path[:0] = [str(TREE), str(Path(__file__).resolve().parents[1])]

import trio  # noqa: E402

from asyncendpoints_trio import NewJob  # noqa: E402
from asyncendpoints_trio.stores._protocol import Complete  # noqa: E402
from asyncendpoints_trio.stores._redis import RedisStore  # noqa: E402
from tests._redis_server import RedisServer  # noqa: E402

N = 20000


def evalsha_us(info: bytes) -> float:
    line = next(x for x in info.decode().splitlines() if x.startswith("cmdstat_evalsha:"))
    return float(line.split("usec=")[1].split(",")[0])


async def main() -> None:
    with RedisServer() as server:
        store = RedisStore.from_url(server.url)
        jobs = [NewJob(id=str(uuid.uuid4()), name="Job", payload=b"null", max_retries=3)
                for _ in range(N)]
        await store.client.execute("CONFIG", "RESETSTAT")
        started = time.perf_counter()
        for i in range(0, N, 256):
            await store.submit(jobs[i:i + 256])
        submit_s = time.perf_counter() - started
        submit_us = evalsha_us(await store.client.execute("INFO", "commandstats"))
        await store.client.execute("CONFIG", "RESETSTAT")
        started = time.perf_counter()
        done = 0
        while done < N:
            claimed = await store.claim("bench", 32, 60.0)
            await store.finish([Complete(c.lease, b"null") for c in claimed])
            done += len(claimed)
        process_s = time.perf_counter() - started
        process_us = evalsha_us(await store.client.execute("INFO", "commandstats"))
        await store.aclose()
    print("BENCH_RESULT " + json.dumps({
        "submit_server_us_per_job": submit_us / N,
        "claim_finish_server_us_per_job": process_us / N,
        "submit_jobs_per_s": N / submit_s, "claim_finish_jobs_per_s": N / process_s}))


if __name__ == "__main__":
    trio.run(main)
