"""The admin list on Redis with many terminal jobs retained: page-read latency.

    python bench/admin_list.py                    # 1,000,000 jobs, 1,000 reads each way
    python bench/admin_list.py --jobs 100000 --reads 300

A private redis-server (loopback, persistence off) is filled through the store's real
scripts: pipelined ``submit``, ``claim`` and ``finish`` calls in batches of ``--batch``
jobs, several in flight at once, so every key (records, data, the status and name indexes,
retention) holds exactly what production writes. The jobs end Completed (80 %), Failed
(15 %) and Canceled (5 %), under five names; retention is long, so none is purged.

Then ``--reads`` page reads of 50 are timed, spread over these kinds: the first page and a
deep page (from a random job's position, as a cursor would be), unfiltered, by one status,
by name, by name and status, and by two statuses (a merge of two indexes). Each is timed
twice: a ``RedisStore.list_jobs`` call (script and decoding) and a ``GET /admin/jobs`` on a
real Hypercorn in this process (JSON included). Prints p50/p99 per kind and overall, the
server's own time per page script, and the memory the indexes take. One JSON line at the
end (``BENCH_RESULT``). Not a test: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import httpx  # noqa: E402
import trio  # noqa: E402
from quart_trio import QuartTrio  # noqa: E402

from asyncendpoints_trio import AsyncEndpoints, EndpointsConfig, JobStatus, NewJob  # noqa: E402
from asyncendpoints_trio.http._admin_json import encode_cursor  # noqa: E402
from asyncendpoints_trio.redis import RedisClient  # noqa: E402
from asyncendpoints_trio.stores._admin import JobQuery, PagePosition  # noqa: E402
from asyncendpoints_trio.stores._protocol import AckCancel, Complete, Fail  # noqa: E402
from asyncendpoints_trio.stores._redis import RedisStore  # noqa: E402
from tests._redis_server import RedisServer  # noqa: E402
from tests.conftest import serving  # noqa: E402

NAMES = ("Ship", "Pack", "Bill", "Mail", "Sync")
ERROR = {"code": "HandlerError", "message": "boom", "exception": None}
PAGE = 50
_S = JobStatus


async def fill(store: RedisStore, jobs: int, batch: int, lanes: int,
               positions: list[PagePosition]) -> float:
    """Submit, claim and finish ``jobs`` jobs through the store's scripts."""
    rng = random.Random(1)
    started = time.perf_counter()
    rounds = list(range(0, jobs, batch))
    done = 0

    async def lane(mine: list[int]) -> None:
        nonlocal done
        for start in mine:
            n = min(batch, jobs - start)
            news = [NewJob(id=str(uuid.uuid4()), name=NAMES[(start + i) % len(NAMES)],
                           payload=b'{"order":12345,"note":"admin bench"}', max_retries=0)
                    for i in range(n)]
            answers = await store.submit(news)
            for answer in answers:
                assert not isinstance(answer, Exception), answer
                if rng.random() < 0.01:
                    positions.append(PagePosition.of(answer.job))
            claimed = []
            while len(claimed) < n:  # other lanes' jobs may come first: finish them too
                claimed += await store.claim("loader", n - len(claimed), 600.0)
            outcomes: list[Any] = []
            for c in claimed:
                roll = rng.random()
                if roll < 0.80:
                    outcomes.append(Complete(c.lease, b'{"ok":true}'))
                elif roll < 0.95:
                    outcomes.append(Fail(c.lease, ERROR, None))
                else:
                    outcomes.append(AckCancel(c.lease))
            assert all(await store.finish(outcomes))
            done += n
            if done % (batch * lanes * 20) < batch:
                print(f"  {done:,} jobs stored ({time.perf_counter() - started:.0f} s)",
                      file=sys.stderr)

    async with trio.open_nursery() as nursery:
        for k in range(lanes):
            nursery.start_soon(lane, rounds[k::lanes])
    return time.perf_counter() - started


def kinds(positions: list[PagePosition]) -> list[tuple[str, JobQuery]]:
    """(label, query) of every kind of read, a deep one from a random position each."""
    rng = random.Random(2)

    def deep() -> PagePosition:
        return rng.choice(positions)

    out: list[tuple[str, JobQuery]] = []
    for _ in range(1000):
        out += [
            ("first page", JobQuery(limit=PAGE)),
            ("deep", JobQuery(limit=PAGE, after=deep())),
            ("status=Failed deep", JobQuery(frozenset({_S.FAILED}), limit=PAGE, after=deep())),
            ("name=Pack deep", JobQuery(name="Pack", limit=PAGE, after=deep())),
            ("name+status deep", JobQuery(frozenset({_S.CANCELED}), "Mail", PAGE, deep())),
            ("two statuses deep", JobQuery(frozenset({_S.FAILED, _S.CANCELED}), limit=PAGE,
                                           after=deep())),
        ]
    return out


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": statistics.median(ordered) * 1000,
            "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
            "n": len(ordered)}


def report(title: str, times: dict[str, list[float]]) -> dict[str, Any]:
    print(f"\n{title}")
    print(f"  {'kind':<22}{'p50 ms':>9}{'p99 ms':>9}{'reads':>7}")
    out: dict[str, Any] = {}
    every: list[float] = []
    for label, samples in times.items():
        figures = percentiles(samples)
        out[label] = figures
        every += samples
        print(f"  {label:<22}{figures['p50_ms']:>9.2f}{figures['p99_ms']:>9.2f}"
              f"{figures['n']:>7}")
    out["all"] = overall = percentiles(every)
    print(f"  {'all':<22}{overall['p50_ms']:>9.2f}{overall['p99_ms']:>9.2f}{overall['n']:>7}")
    return out


async def time_store(store: RedisStore, plan: list[tuple[str, JobQuery]]) -> dict[str, Any]:
    times: dict[str, list[float]] = {}
    for label, query in plan:
        started = time.perf_counter()
        page = await store.list_jobs(query)
        times.setdefault(label, []).append(time.perf_counter() - started)
        assert len(page.jobs) == PAGE or query.after is not None, (label, len(page.jobs))
    return report("RedisStore.list_jobs (script + decoding 50 jobs)", times)


async def time_http(store: RedisStore, plan: list[tuple[str, JobQuery]]) -> dict[str, Any]:
    app = QuartTrio(__name__)
    endpoints = AsyncEndpoints(app, store=store, config=EndpointsConfig(run_workers=False))
    endpoints.map_admin("/admin", authorize=lambda request: True)
    times: dict[str, list[float]] = {}
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        for label, query in plan:
            params: dict[str, Any] = {"limit": PAGE}
            if query.statuses:
                params["status"] = ",".join(s.value for s in query.statuses)
            if query.name:
                params["name"] = query.name
            if query.after is not None:
                params["cursor"] = encode_cursor(query.after, query)
            started = time.perf_counter()
            answer = await client.get("/admin/jobs", params=params)
            times.setdefault(label, []).append(time.perf_counter() - started)
            assert answer.status_code == 200, answer.text
    return report("GET /admin/jobs over HTTP (Hypercorn in this process, JSON)", times)


async def index_memory(client: RedisClient, store: RedisStore) -> dict[str, int]:
    keys = store.keys
    sizes = {}
    for name in ("by_name", "counts"):
        used = await client.execute("MEMORY", "USAGE", getattr(keys, name), "SAMPLES", "0")
        sizes[name] = int(used or 0)
    return sizes


async def main(args: argparse.Namespace) -> None:
    with RedisServer() as server:
        client = RedisClient.from_url(server.url)
        store = RedisStore(client, queue="default", retention=10_000_000.0)
        positions: list[PagePosition] = []
        print(f"filling {args.jobs:,} jobs in batches of {args.batch} ...", file=sys.stderr)
        fill_s = await fill(store, args.jobs, args.batch, args.lanes, positions)
        info = (await client.execute("INFO", "memory")).decode()
        used = int(info.split("used_memory:")[1].split()[0])
        counts = (await store.stats()).by_status
        print(f"stored {args.jobs:,} jobs in {fill_s:.0f} s; {counts}; used_memory "
              f"{used / 1e6:,.0f} MB ({used / args.jobs:,.0f} bytes/job)")
        plan = kinds(positions)
        random.Random(3).shuffle(plan)
        plan = plan[:args.reads]
        await client.execute("CONFIG", "RESETSTAT")
        on_store = await time_store(store, plan)
        stats = (await client.execute("INFO", "commandstats")).decode()
        line = next(x for x in stats.splitlines() if x.startswith("cmdstat_evalsha:"))
        server_us = float(line.split("usec_per_call=")[1].split(",")[0])
        print(f"\n  server time per page script (INFO commandstats, evalsha): "
              f"{server_us / 1000:.3f} ms")
        over_http = await time_http(store, plan)
        memory = await index_memory(client, store)
        index_bytes = sum(memory.values())
        print(f"\nindex memory: {index_bytes / 1e6:,.0f} MB ({index_bytes / args.jobs:,.0f} "
              f"bytes/job of {used / args.jobs:,.0f}): "
              + ", ".join(f"{k} {v / 1e6:,.0f} MB" for k, v in memory.items() if v))
        print("BENCH_RESULT " + json.dumps({
            "jobs": args.jobs, "fill_s": fill_s, "used_bytes_per_job": used / args.jobs,
            "index_bytes_per_job": index_bytes / args.jobs, "server_ms_per_page":
            server_us / 1000, "store": on_store, "http": over_http}))
        await store.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--reads", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--lanes", type=int, default=4)
    trio.run(main, parser.parse_args())
