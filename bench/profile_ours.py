"""Profile our W1 process path (the drain only, not the enqueue) on a private redis-server.

    python bench/profile_ours.py [--n 20000] [--profiler pyinstrument|cprofile] [--top 30]

Needs ``pip install pyinstrument`` for the default profiler. Prints the functions with the
most self time (time spent in their own code, not their callees), per job.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH), str(BENCH / "libs")]

import ours  # noqa: E402
import trio  # noqa: E402
from _common import Drain  # noqa: E402

from asyncendpoints_trio import AsyncContext  # noqa: E402
from asyncendpoints_trio.stores import RedisStore  # noqa: E402
from tests._redis_server import RedisServer  # noqa: E402


async def run(url: str, n: int, profiler: Any) -> Drain:
    d = Drain()
    endpoints = ours.make_endpoints(32)

    @endpoints.handler("Job")
    async def noop(ctx: AsyncContext[Any]) -> None:
        d.handler_called()

    store = RedisStore.from_url(url)
    await ours.bulk_submit(store, [ours.new_job("Job", b"null") for _ in range(n)])
    profiler.enable() if isinstance(profiler, cProfile.Profile) else profiler.start()
    await ours.drain(store, endpoints, d, n)
    profiler.disable() if isinstance(profiler, cProfile.Profile) else profiler.stop()
    await store.aclose()
    return d


def self_times_pyinstrument(session: Any) -> list[tuple[float, str]]:
    """Self time per function: the time of every leaf of the call tree, where pyinstrument's
    synthetic ``[self]`` leaves count for their parent. The leaves partition the total."""
    totals: dict[str, float] = {}

    def key(frame: Any) -> str:
        return f"{frame.function} ({Path(frame.file_path or '?').name}:{frame.line_no})"

    def walk(frame: Any, parent: Any) -> None:
        if not frame.children:
            owner = parent if frame.function == "[self]" and parent is not None else frame
            totals[key(owner)] = totals.get(key(owner), 0.0) + frame.time
        for child in frame.children:
            walk(child, frame)

    walk(session.root_frame(), None)
    return sorted(((t, k) for k, t in totals.items()), reverse=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--profiler", choices=["pyinstrument", "cprofile"], default="pyinstrument")
    p.add_argument("--top", type=int, default=30)
    args = p.parse_args()
    if args.profiler == "cprofile":
        profiler: Any = cProfile.Profile()
    else:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005, async_mode="disabled")
    with RedisServer() as server:
        start = time.perf_counter()
        d = trio.run(run, server.url, args.n, profiler)
        wall = time.perf_counter() - start
    figures = d.figures(args.n)
    print(f"drain of {args.n} jobs: {figures['process_s']:.2f} s "
          f"({figures['process_jobs_per_s']:,.0f} jobs/s under the profiler); total {wall:.1f} s")
    if args.profiler == "cprofile":
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(args.top)
        return
    session = profiler.last_session
    total = session.duration
    print(f"{'self s':>8} {'%':>6} {'us/job':>8}  function")
    for seconds, key in self_times_pyinstrument(session)[:args.top]:
        print(f"{seconds:8.3f} {seconds / total * 100:6.1f} {seconds / args.n * 1e6:8.1f}  {key}")
    print()
    print(profiler.output_text(unicode=False, color=False, show_all=False)[:12000])


if __name__ == "__main__":
    main()
