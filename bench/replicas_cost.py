"""What ``replicas_ack=1`` costs W4 and W5, against a primary and one replica on loopback.

    python bench/replicas_cost.py [--reps 3] [--seconds 10] [--n 300]

For every repetition, each row with ``replicas_ack`` 0 and then 1 (interleaved: 0 1, 0 1,
...), on a fresh primary + replica pair (persistence off, the replica with ``--replicaof``;
see tests/_redis_replica.py), runs bench/services.py as a subprocess. Rows:

- W4 redis-api: POST -> 202 under wrk -c50, API only: the submit path alone, so the
  ``WAIT`` after each group commit is all that differs.
- W4 redis: the same with the workers in the process: outcomes wait for the replica too.
- W5 redis: one client, POST then GET ?wait= until terminal: the latency of a submit and of
  an outcome, each followed by a ``WAIT``.
- store: ``RedisStore`` calls alone, in this process, no HTTP: one job per ``submit``, then
  one outcome per ``finish``, one call at a time (``--store-n`` of each). The least noisy
  reading of what ``WAIT`` adds to one round trip.

Prints medians over repetitions (min-max), the ratio of the medians of ``replicas_ack=1``
to 0, and the median of each repetition's own ratio (its two runs were back to back).
On loopback a replica acknowledges in microseconds: this is the floor of the cost, a
replica in another zone adds its round trip to every submit and every outcome batch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]

from _common import RESULT_PREFIX  # noqa: E402

from tests._redis_replica import PrimaryWithReplica  # noqa: E402

ROWS = (  # (label, services.py arguments, figures: (key, label, higher is better))
    ("W4 redis-api", ("W4", "--variant", "redis-api"),
     (("req_per_s", "req/s", True), ("p50_ms", "p50 ms", False), ("p99_ms", "p99 ms", False))),
    ("W4 redis", ("W4", "--variant", "redis"),
     (("req_per_s", "req/s", True), ("p50_ms", "p50 ms", False), ("p99_ms", "p99 ms", False))),
    ("W5 redis", ("W5", "--variant", "redis"),
     (("p50_ms", "p50 ms", False), ("p99_ms", "p99 ms", False),
      ("submit_p50_ms", "POST p50 ms", False))),
    ("store", ("store",),
     (("submit_p50_ms", "submit p50 ms", False), ("submit_p99_ms", "submit p99 ms", False),
      ("finish_p50_ms", "finish p50 ms", False), ("finish_p99_ms", "finish p99 ms", False))),
)


def store_row(url: str, ack: int, n: int) -> dict[str, Any]:
    import trio

    from asyncendpoints_trio import NewJob
    from asyncendpoints_trio.stores._protocol import Claimed, Complete
    from asyncendpoints_trio.stores._redis import RedisStore

    def ms(samples: list[float]) -> tuple[float, float]:
        ordered = sorted(samples)
        return (ordered[len(ordered) // 2] * 1000, ordered[int(len(ordered) * 0.99)] * 1000)

    async def go() -> dict[str, Any]:
        store = RedisStore.from_url(url, queue=f"cost{ack}", replicas_ack=ack,
                                    replicas_timeout=5.0)
        try:
            submits: list[float] = []
            for i in range(n + 50):
                began = time.perf_counter()
                [answer] = await store.submit([NewJob(f"j{i}", "W", b"{}", 0)])
                if i >= 50:  # the first ones load scripts and open connections
                    submits.append(time.perf_counter() - began)
                assert not isinstance(answer, Exception), answer
            claimed: list[Claimed] = []
            while len(claimed) < n + 50:
                claimed += await store.claim("me", 500, 600.0)
            finishes: list[float] = []
            for i, job in enumerate(claimed):
                began = time.perf_counter()
                assert await store.finish([Complete(job.lease, b"1")]) == [True]
                if i >= 50:
                    finishes.append(time.perf_counter() - began)
            assert store.statistics()["replication_shortfalls"] == 0
        finally:
            await store.aclose()
        (s50, s99), (f50, f99) = ms(submits), ms(finishes)
        return {"submit_p50_ms": s50, "submit_p99_ms": s99, "finish_p50_ms": f50,
                "finish_p99_ms": f99}

    return trio.run(go)


def run_once(args: argparse.Namespace, row: tuple[str, ...], ack: int) -> dict[str, Any]:
    if row == ("store",):
        with PrimaryWithReplica() as pair:
            figures = store_row(pair.primary.url, ack, args.store_n)
        figures["replica_online"] = True
        return figures
    with PrimaryWithReplica() as pair:
        argv = [sys.executable, str(BENCH / "services.py"), *row, "--redis-url",
                pair.primary.url, "--replicas-ack", str(ack), "--seconds", str(args.seconds),
                "--n", str(args.n)]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False,
                              timeout=args.seconds * 3 + 300)
        info = subprocess.run(["redis-cli", "-p", str(pair.primary.port), "INFO",
                               "replication"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(row)} (replicas_ack={ack}) failed:\n{done.stderr[-3000:]}")
    [line] = [x for x in done.stdout.splitlines() if x.startswith(RESULT_PREFIX)]
    result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX):])
    result["replica_online"] = "state=online" in info.stdout
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0, help="W4: wrk duration")
    p.add_argument("--n", type=int, default=300, help="W5: round trips")
    p.add_argument("--store-n", type=int, default=2000, help="store: calls of each kind")
    p.add_argument("--rows", default=",".join(label for label, _, _ in ROWS),
                   help="which rows, by label, comma-separated")
    args = p.parse_args()
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    rows = [r for r in ROWS if r[0] in args.rows.split(",")]
    for rep in range(args.reps):
        for label, row, _ in rows:
            for ack in (0, 1):
                result = run_once(args, row, ack)
                results.setdefault((label, ack), []).append(result)
                print(f"rep {rep + 1}: {label} replicas_ack={ack}: {json.dumps(result)}",
                      file=sys.stderr, flush=True)
    print(f"replicas_ack cost, {args.reps} reps, median (min-max); ratio = ack 1 / ack 0; "
          f"load average at the end {os.getloadavg()[0]:.2f}")
    for label, _, figures in rows:
        for key, name, _higher in figures:
            cells = []
            medians = []
            for ack in (0, 1):
                values = [r[key] for r in results[(label, ack)]]
                medians.append(statistics.median(values))
                cells.append(f"{medians[-1]:10,.2f} ({min(values):,.2f}-{max(values):,.2f})")
            ratio = medians[1] / medians[0] if medians[0] else float("nan")
            # Each repetition's pair ran back to back: its ratio is the one least moved by
            # load that drifts over the run (another process on the machine).
            paired = statistics.median(
                one[key] / zero[key] for zero, one in zip(results[(label, 0)],
                                                          results[(label, 1)], strict=True))
            print(f"{label:13} {name:12} ack=0 {cells[0]:>28}  ack=1 {cells[1]:>28}  "
                  f"x{ratio:.2f}  (paired x{paired:.2f})")
        errors = sum(r.get("non_2xx", 0) for ack in (0, 1) for r in results[(label, ack)])
        if errors:
            print(f"{label:13} non-2xx answers: {errors}")
    offline = sum(not r["replica_online"] for rs in results.values() for r in rs)
    if offline:
        print(f"warning: the replica was not online after {offline} runs")


if __name__ == "__main__":
    main()
