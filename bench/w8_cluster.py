"""W8: W1's drain on a Redis Cluster, by two worker processes, one queue of P partitions.

    python bench/w8_cluster.py                        # P = 1 and 6; 30,000 jobs; 3 reps
    python bench/w8_cluster.py --smoke                # 600 jobs, 1 rep: the harness still works
    python bench/w8_cluster.py --n 50000 --reps 5 --partitions 1,6,12
    python bench/w8_cluster.py one --partitions 6     # one measurement, one JSON line (run.py)

Each measurement starts a private 6-node cluster (3 primaries with a replica each, as
tests/_redis_cluster.py makes it: slots 0-5460, 5461-10922, 10923-16383), ``CONFIG
RESETSTAT`` on every primary, seeds N no-op jobs with the store's bulk submit (batches of
256, as W1), starts two worker processes (each a ``Runtime`` at concurrency 32, as W1's, on
``RedisStore.from_url("redis+cluster://...", partitions=P)``), waits until both are
connected, lets them go at once and times the drain: from the first handler call in either
process until every partition's terminal set holds its jobs. ``INFO commandstats`` and
``INFO cpu`` (``used_cpu_user + used_cpu_sys``) are read on the primaries only, before and
after the drain (a replica's CPU is its own and is never added in); the completion poller's
``ZCARD`` calls are subtracted from the node they went to. Job ids come from a seeded
generator (the same ids for every P of a repetition), so where the jobs land is
reproducible; which partitions each primary serves is reported.

The figures per primary: commands per job and Redis CPU-ms per job (both over all N jobs,
so they add up to the cluster's), the share of jobs it holds, and the spread across the
primaries (largest deviation from their mean, in %). Not a test: the numbers depend on the
machine and its load.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import mmap
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]

import trio  # noqa: E402
from _common import Resp, emit, parse_info  # noqa: E402

from asyncendpoints_trio import (  # noqa: E402
    AsyncContext,
    AsyncEndpoints,
    EndpointsConfig,
    NewJob,
    Runtime,
)
from asyncendpoints_trio.redis._slots import key_slot  # noqa: E402
from asyncendpoints_trio.stores import RedisStore  # noqa: E402
from asyncendpoints_trio.stores._partitions import partition_of, tags  # noqa: E402
from asyncendpoints_trio.stores._redis_layout import RedisKeys  # noqa: E402
from tests._redis_cluster import RedisCluster, command  # noqa: E402
from tests._redis_server import PortTaken  # noqa: E402

QUEUE = "default"
WORKERS = 2
CONCURRENCY = 32
BATCH = 256  # jobs per store.submit call: the runtime's own group-commit limit (as W1)
POLL_INTERVAL = 0.005  # the parent's look at the workers' handler counts (shared memory)
DRAIN_TIMEOUT = 600.0
READY_TIMEOUT = 60.0
SEED = 8000  # + the repetition: the job ids of a repetition
# The counters file the workers write and the parent reads: a go flag, then per worker
# (ready, handler calls, monotonic time of the first handler call).
HEADER = struct.Struct("<q")
SLOT = struct.Struct("<qqd")
NOT_COUNTED = {"info", "config"}  # the benchmark's own INFO and CONFIG RESETSTAT


# -- the worker process -------------------------------------------------------------------


def slot_offset(index: int) -> int:
    return HEADER.size + index * SLOT.size


async def worker(args: argparse.Namespace, shared: mmap.mmap) -> None:
    """A Runtime on the cluster store, started once the parent sets the go flag; its handler
    counts into the shared counters file. Runs until the parent kills it."""
    at = slot_offset(args.index)
    calls = 0
    first = 0.0
    endpoints = AsyncEndpoints(config=EndpointsConfig(concurrency=CONCURRENCY,
                                                      max_queued=None, shutdown_grace=1.0))

    @endpoints.handler("Job")
    async def noop(ctx: AsyncContext[Any]) -> None:
        nonlocal calls, first
        calls += 1
        if calls == 1:
            first = time.monotonic()
        SLOT.pack_into(shared, at, 1, calls, first)

    store = RedisStore.from_url(args.redis_url, queue=args.queue,
                                partitions=int(args.partitions))
    await store.client.execute("PING")  # connected: the slot map is read
    SLOT.pack_into(shared, at, 1, 0, 0.0)
    with trio.fail_after(READY_TIMEOUT):
        while HEADER.unpack_from(shared, 0)[0] == 0:  # noqa: ASYNC110
            await trio.sleep(0.001)  # a flag in shared memory: no Redis traffic
    async with trio.open_nursery() as nursery:
        await nursery.start(Runtime(store, endpoints.handlers, endpoints.config).run)


# -- the parent ---------------------------------------------------------------------------


def job_ids(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]


async def seed_jobs(url: str, queue: str, partitions: int, ids: list[str]) -> float:
    store = RedisStore.from_url(url, queue=queue, partitions=partitions)
    try:
        jobs = [NewJob(id=i, name="Job", payload=b"null", max_retries=3) for i in ids]
        start = time.perf_counter()
        for k in range(0, len(jobs), BATCH):
            answers = await store.submit(jobs[k:k + BATCH])
            assert all(not isinstance(a, Exception) for a in answers), answers[:3]
        return time.perf_counter() - start
    finally:
        await store.aclose()


def node_snapshot(port: int) -> dict[str, Any]:
    with Resp(f"redis://127.0.0.1:{port}/0") as r:
        info = parse_info(r.execute("INFO", "all"))
    calls = {key[len("cmdstat_"):]: int(dict(f.split("=", 1) for f in value.split(","))
                                        ["calls"])
             for key, value in info.items() if key.startswith("cmdstat_")}
    return {"cpu": float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
            "cpu_main": (float(info.get("used_cpu_user_main_thread", "nan"))
                         + float(info.get("used_cpu_sys_main_thread", "nan"))),
            "calls": calls, "used_memory": int(info["used_memory"])}


def window(before: dict[int, dict[str, Any]], after: dict[int, dict[str, Any]],
           polls: dict[int, int]) -> dict[int, dict[str, Any]]:
    """Per primary: commands (ours and the scripts'), CPU seconds, between two snapshots."""
    out = {}
    for port in before:
        b, a = before[port], after[port]
        mix = {c: a["calls"].get(c, 0) - b["calls"].get(c, 0)
               for c in set(a["calls"]) | set(b["calls"]) if c not in NOT_COUNTED}
        if "zcard" in mix:
            mix["zcard"] -= polls.get(port, 0)
        mix = {c: v for c, v in mix.items() if v}
        out[port] = {"commands": sum(mix.values()), "cpu_s": a["cpu"] - b["cpu"],
                     "cpu_main_s": a["cpu_main"] - b["cpu_main"],
                     "memory": a["used_memory"] - b["used_memory"],
                     "mix": dict(sorted(mix.items(), key=lambda kv: -kv[1]))}
    return out


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spread(values: list[float]) -> dict[str, float]:
    """How unevenly ``values`` (one per primary) are spread: the largest deviation from
    their mean, and max / min - 1, both in %."""
    mean = statistics.fmean(values)
    low = min(values)
    return {"max_dev_pct": 100 * max(abs(v - mean) for v in values) / mean if mean else 0.0,
            "max_over_min_pct": 100 * (max(values) / low - 1) if low > 0 else float("inf")}


@contextlib.contextmanager
def workers(url: str, queue: str, partitions: int, counters: Path,
            log_dir: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = []
    try:
        for i in range(WORKERS):
            with open(log_dir / f"worker{i}.log", "wb") as log:
                procs.append(subprocess.Popen(
                    [sys.executable, __file__, "worker", "--redis-url", url, "--queue", queue,
                     "--partitions", str(partitions), "--index", str(i),
                     "--counters", str(counters)],
                    cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env={k: v for k, v in os.environ.items() if k != "REDIS_URL"}))
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)


def wait_until(condition: Any, timeout: float, what: str, procs: list[Any],
               log_dir: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        dead = [p for p in procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            logs = "\n".join(f.read_text()[-2000:] for f in sorted(log_dir.glob("*.log")))
            raise RuntimeError(f"W8: {what} did not happen within {timeout:.0f} s"
                               f"{' (a worker exited)' if dead else ''}\n{logs}")
        time.sleep(POLL_INTERVAL)  # a bounded poll of shared memory, not a synchronisation


def start_cluster(attempts: int = 3) -> RedisCluster:
    """A started cluster. Its ports were free when chosen, not when bound: a port another
    process took meanwhile means new ports, at most ``attempts`` times."""
    for attempt in range(attempts):
        cluster = RedisCluster()
        try:
            cluster.start()
            return cluster
        except PortTaken:
            cluster.cleanup()
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def measure(n: int, partitions: int, seed: int) -> dict[str, Any]:
    """One measurement on a fresh cluster: the figures, per primary and in all."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-w8-"))
    cluster = start_cluster()
    try:
        # In the order of the slot ranges they were created with (0-5460 first), so that
        # "primary 1" is the same role in every repetition, whatever its port.
        created = cluster.owners(cluster.primaries()[0])
        first_slot = {p: min(s for s, o in created.items() if o == p)
                      for p in cluster.primaries()}
        primaries = sorted(first_slot, key=first_slot.__getitem__)
        owners = cluster.owners(primaries[0])
        keys = [RedisKeys.of(tag) for tag in tags(QUEUE, partitions)]
        part_port = [owners[key_slot(k.rec)] for k in keys]
        expiry = [k.expiry for k in keys]
        ids = job_ids(n, seed)
        jobs_on = {p: 0 for p in primaries}
        for i in ids:
            jobs_on[part_port[partition_of(i, partitions)]] += 1
        for port in primaries:
            command(port, "CONFIG", "RESETSTAT")
        snap0 = {p: node_snapshot(p) for p in primaries}
        enqueue_s = trio.run(seed_jobs, cluster.url, QUEUE, partitions, ids)
        snap1 = {p: node_snapshot(p) for p in primaries}

        counters = tmp / "counters"
        counters.write_bytes(bytes(slot_offset(WORKERS)))
        with open(counters, "r+b") as f:
            shared = mmap.mmap(f.fileno(), 0)
        slots = [slot_offset(i) for i in range(WORKERS)]
        with workers(cluster.url, QUEUE, partitions, counters, tmp) as procs:
            wait_until(lambda: all(SLOT.unpack_from(shared, s)[0] for s in slots),
                       READY_TIMEOUT, "both workers connecting", procs, tmp)
            snap2 = {p: node_snapshot(p) for p in primaries}
            cpu2 = [process_cpu(w.pid) for w in procs]
            go_at = time.monotonic()
            HEADER.pack_into(shared, 0, 1)
            wait_until(lambda: sum(SLOT.unpack_from(shared, s)[1] for s in slots) >= n,
                       DRAIN_TIMEOUT, f"{n} handler calls", procs, tmp)
            # Every handler ran: now ask Redis (each partition's terminal set, on its node)
            # until the outcomes are in. These ZCARDs are subtracted from the counts.
            polls = {p: 0 for p in primaries}
            deadline = time.monotonic() + 60
            while True:
                done = 0
                for k, key in enumerate(expiry):
                    done += command(part_port[k], "ZCARD", key)
                    polls[part_port[k]] += 1
                if done >= n:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"W8: {done} of {n} jobs terminal after 60 s")
                time.sleep(POLL_INTERVAL)
            done_at = time.monotonic()
            snap3 = {p: node_snapshot(p) for p in primaries}
            cpu3 = [process_cpu(w.pid) for w in procs]
            per = [SLOT.unpack_from(shared, s) for s in slots]
        first = min(f for _, c, f in per if c)
        seed_w = window(snap0, snap1, {})
        drain_w = window(snap2, snap3, polls)
        nodes = []
        for p in primaries:
            d = drain_w[p]
            nodes.append({
                "port": p, "partitions": [k for k in range(partitions) if part_port[k] == p],
                "job_share": jobs_on[p] / n,
                "commands_per_job": d["commands"] / n, "cpu_ms_per_job": 1000 * d["cpu_s"] / n,
                "cpu_main_ms_per_job": 1000 * d["cpu_main_s"] / n,
                "cpu_ms_per_job_held": (1000 * d["cpu_s"] / jobs_on[p] if jobs_on[p]
                                        else None),
                "seed_commands_per_job": seed_w[p]["commands"] / n,
                "seed_cpu_ms_per_job": 1000 * seed_w[p]["cpu_s"] / n,
                "mix": d["mix"]})
        cpu = [x["cpu_ms_per_job"] for x in nodes]
        cmds = [x["commands_per_job"] for x in nodes]
        seconds = done_at - first
        return {
            "n": n, "partitions": partitions, "tags": list(tags(QUEUE, partitions)),
            "enqueue_s": enqueue_s, "enqueue_jobs_per_s": n / enqueue_s,
            "process_s": seconds, "process_jobs_per_s": n / seconds,
            "process_from_go_s": done_at - go_at,
            "handler_calls": [c for _, c, _ in per],
            # The two worker processes' own CPU (user + system), per job: the Python side.
            "worker_cpu_ms_per_job": 1000 * sum(b - a for a, b in zip(cpu2, cpu3,
                                                                     strict=True)) / n,
            "commands_per_job": sum(cmds), "cpu_ms_per_job": sum(cpu),
            "busiest_cpu_ms_per_job": max(cpu),
            "cpu_spread_pct": spread(cpu)["max_dev_pct"],
            "cpu_max_over_min_pct": spread(cpu)["max_over_min_pct"],
            "commands_spread_pct": spread(cmds)["max_dev_pct"],
            "primaries": nodes,
        }
    finally:
        cluster.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


# -- the report ---------------------------------------------------------------------------


def label(variant: str) -> str:
    return f"P = {variant}"


def render(runs: dict[str, list[dict[str, Any]]], meta: dict[str, Any]) -> str:
    def med(variant: str, key: str) -> float:
        return float(statistics.median(r[key] for r in runs[variant]))

    def rng(variant: str, key: str, fmt: str) -> str:
        values = [r[key] for r in runs[variant]]
        return f"{fmt.format(min(values))}–{fmt.format(max(values))}"  # noqa: RUF001

    base = next(iter(runs))
    lines = [f"Run of {meta['date']}: {meta['n']:,} jobs, {meta['reps']} interleaved "
             f"repetitions, {WORKERS} worker processes at concurrency {CONCURRENCY}; "
             f"machine: {meta['machine']}; load average {meta['loadavg_start'][0]:.2f} at the "
             f"start, {meta['loadavg_end'][0]:.2f} at the end; library at {meta['commit']}.",
             "", f"| figure | {' | '.join(label(v) for v in runs)} | "
             + " | ".join(f"{label(v)} / {label(base)}" for v in runs if v != base) + " |",
             "|---|" + "---:|" * (2 * len(runs) - 1)]
    rows = [("process jobs/s", "process_jobs_per_s", "{:,.0f}"),
            ("enqueue jobs/s", "enqueue_jobs_per_s", "{:,.0f}"),
            ("Redis commands/job (all primaries)", "commands_per_job", "{:.2f}"),
            ("Redis CPU-ms/job (all primaries)", "cpu_ms_per_job", "{:.4f}"),
            ("busiest primary's CPU-ms/job", "busiest_cpu_ms_per_job", "{:.4f}"),
            ("worker processes' CPU-ms/job (both)", "worker_cpu_ms_per_job", "{:.3f}"),
            ("CPU spread over primaries, max dev. from mean %", "cpu_spread_pct", "{:.0f}"),
            ("commands spread, max dev. from mean %", "commands_spread_pct", "{:.0f}")]
    for name, key, fmt in rows:
        cells = [f"{fmt.format(med(v, key))} ({rng(v, key, fmt)})" for v in runs]
        ratios = [f"{med(v, key) / med(base, key):.2f}×" if med(base, key) else "—"  # noqa: RUF001
                  for v in runs if v != base]
        lines.append(f"| {name} | {' | '.join(cells)} | {' | '.join(ratios)} |")
    lines += ["", "Per primary (medians over the repetitions; per job = over all N jobs):", "",
              "| variant | primary | partitions | job share | commands/job | CPU-ms/job "
              "| CPU-ms per job held | seed CPU-ms/job |", "|---|---|---|---:|---:|---:|---:|---:|"]
    def node_median(rs: list[dict[str, Any]], i: int, key: str) -> float:
        values = [r["primaries"][i][key] for r in rs if r["primaries"][i][key] is not None]
        return float(statistics.median(values)) if values else float("nan")

    for v, rs in runs.items():
        for i, node in enumerate(rs[0]["primaries"]):
            def m(key: str, rs: list[dict[str, Any]] = rs, i: int = i) -> float:
                return node_median(rs, i, key)
            lines.append(f"| {label(v)} | {i + 1} | {','.join(map(str, node['partitions'])) or '—'}"
                         f" | {m('job_share'):.3f} | {m('commands_per_job'):.3f} | "
                         f"{m('cpu_ms_per_job'):.4f} | {m('cpu_ms_per_job_held'):.4f} | "
                         f"{m('seed_cpu_ms_per_job'):.4f} |")
    return "\n".join(lines)


def library_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "asyncendpoints_trio"],
                               cwd=ROOT, text=True, capture_output=True, timeout=10).stdout
    except OSError:
        return "?"
    return head + (" + uncommitted library changes" if dirty.strip() else "")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", nargs="?", default="run", choices=["run", "one", "worker"],
                   help="run: every variant, interleaved (default); one: a single "
                        "measurement, one JSON line; worker: internal")
    p.add_argument("--n", type=int, default=None, help="jobs (default 30,000; smoke 600)")
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 3; smoke 1)")
    p.add_argument("--smoke", action="store_true", help="600 jobs, one repetition")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON results (default bench/results/w8-DATE.json); .md beside it")
    p.add_argument("--partitions", default="1,6",
                   help="partition counts, comma-separated (default 1,6; one and worker: "
                        "the first)")
    p.add_argument("--seed", type=int, default=SEED, help="one")
    p.add_argument("--redis-url", help="worker")
    p.add_argument("--queue", default=QUEUE, help="worker")
    p.add_argument("--index", type=int, default=0, help="worker")
    p.add_argument("--counters", help="worker")
    args = p.parse_args()
    counts = [int(x) for x in args.partitions.split(",") if x]
    if args.mode == "worker":
        with open(args.counters, "r+b") as f:
            shared = mmap.mmap(f.fileno(), 0)
        trio.run(worker, args, shared)
        return 0
    n = args.n or (600 if args.smoke else 30_000)
    if args.mode == "one":
        emit(measure(n, counts[0], args.seed))
        return 0
    reps = args.reps or (1 if args.smoke else 3)
    from run import machine  # the same machine line as the main harness

    meta: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(), "commit": library_commit(), "n": n, "reps": reps,
        "smoke": args.smoke, "loadavg_start": os.getloadavg()}
    variants = [str(c) for c in counts]
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    began = time.monotonic()
    for rep in range(reps):
        for v in variants:  # interleaved, and the same job ids for every variant of a rep
            r = measure(n, int(v), SEED + rep)
            runs[v].append(r)
            cpu = " / ".join(f"{x['cpu_ms_per_job']:.4f}" for x in r["primaries"])
            print(f"[{time.monotonic() - began:5.0f}s] rep {rep + 1} {label(v)}: "
                  f"{r['process_jobs_per_s']:,.0f} jobs/s, {r['commands_per_job']:.2f} "
                  f"commands/job, CPU-ms/job per primary {cpu} "
                  f"(spread {r['cpu_spread_pct']:.0f} %)", flush=True)
    meta["loadavg_end"] = os.getloadavg()
    meta["total_s"] = time.monotonic() - began
    table = render(runs, meta)
    print()
    print(table)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or BENCH / "results" / f"w8-{'smoke-' if args.smoke else ''}{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    out.with_suffix(".md").write_text(table + "\n")
    print(f"wrote {out} and {out.with_suffix('.md')} in {meta['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
