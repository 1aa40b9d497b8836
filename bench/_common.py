"""Shared by the benchmark entry point and every per-library script.

Standard library only: the peers' scripts import it from their own virtual environments.

* ``Resp``: a tiny synchronous Redis client (RESP2) used only *outside* the measured windows
  (``INFO`` snapshots), so that every library is observed the same way.
* ``redis_snapshot``/``redis_delta``: memory, command counts and CPU of the server.
* ``emit``: a script's single result line on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlparse

RESULT_PREFIX = "BENCH_RESULT "
# W7 and the 100-byte case: one argument of 100 characters, returned as the result.
PAYLOAD_100 = "x" * 100
# How often a worker process checks whether the drain is complete (see docs).
POLL_INTERVAL = 0.005
# W3: seconds between starting the worker process and sending the first job.
STARTUP_PAUSE = 2.0


class Resp:
    """Blocking RESP2 client for a handful of admin commands (INFO, DBSIZE, ...)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        parsed = urlparse(url)
        self._sock = socket.create_connection((parsed.hostname or "127.0.0.1",
                                               parsed.port or 6379), timeout=timeout)
        self._buf = b""

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Resp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def execute(self, *args: str | bytes | int) -> Any:
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self._sock.sendall(b"".join(parts))
        return self._read()

    def _line(self) -> bytes:
        while b"\r\n" not in self._buf:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\r\n", 1)
        return line

    def _exact(self, n: int) -> bytes:
        while len(self._buf) < n + 2:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self._buf += chunk
        data, self._buf = self._buf[:n], self._buf[n + 2:]
        return data

    def _read(self) -> Any:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RuntimeError(f"bad reply {line!r}")


def parse_info(text: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in text.decode().splitlines():
        if raw and not raw.startswith("#") and ":" in raw:
            k, v = raw.split(":", 1)
            out[k] = v
    return out


def redis_snapshot(url: str) -> dict[str, Any]:
    """Memory, per-command call counts and CPU seconds of the server, right now."""
    with Resp(url) as r:
        info = parse_info(r.execute("INFO", "all"))
    calls: dict[str, int] = {}
    for key, value in info.items():
        if key.startswith("cmdstat_"):
            fields = dict(f.split("=", 1) for f in value.split(","))
            calls[key[len("cmdstat_"):]] = int(fields["calls"])
    return {
        "used_memory": int(info["used_memory"]),
        "used_memory_dataset": int(info["used_memory_dataset"]),
        "cpu": float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
        "calls": calls,
        "keys": sum(int(v.split(",")[0].split("=")[1]) for k, v in info.items()
                    if k.startswith("db") and k[2:].isdigit()),
    }


def redis_delta(before: dict[str, Any], after: dict[str, Any], jobs: int,
                ignore_calls: int = 0) -> dict[str, Any]:
    """Per-job figures between two snapshots. ``ignore_calls``: commands the benchmark's own
    completion poller sent (subtracted). INFO itself is never counted."""
    per_cmd = {c: after["calls"].get(c, 0) - before["calls"].get(c, 0)
               for c in set(after["calls"]) | set(before["calls"])}
    per_cmd.pop("info", None)
    per_cmd = {c: n for c, n in per_cmd.items() if n}
    total = sum(per_cmd.values()) - ignore_calls
    scripts = sum(n for c, n in per_cmd.items() if c in ("eval", "evalsha", "fcall",
                                                         "eval_ro", "evalsha_ro", "fcall_ro"))
    cpu = after["cpu"] - before["cpu"]
    return {
        "bytes_per_job": (after["used_memory"] - before["used_memory"]) / jobs,
        "dataset_bytes_per_job": (after["used_memory_dataset"]
                                  - before["used_memory_dataset"]) / jobs,
        "keys_per_job": (after["keys"] - before["keys"]) / jobs,
        "commands_per_job": total / jobs,
        "scripts_per_job": scripts / jobs,
        "redis_cpu_s": cpu,
        "jobs_per_redis_cpu_s": jobs / cpu if cpu > 0 else math.inf,
        "command_mix": dict(sorted(per_cmd.items(), key=lambda kv: -kv[1])[:12]),
    }


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_figures(samples_s: Iterable[float]) -> dict[str, Any]:
    ms = [s * 1000 for s in samples_s]
    return {"n": len(ms), "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99),
            "max_ms": max(ms) if ms else math.nan}


def emit(figures: dict[str, Any]) -> None:
    """The script's result: one JSON line, marked, on stdout."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(figures, allow_nan=True) + "\n")
    sys.stdout.flush()


def script_args(description: str) -> argparse.Namespace:
    """The command line every per-library script shares."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("workload", choices=["W1", "W2", "W3", "W7", "worker"],
                   help="'worker': only run an idle worker until killed (W3 starts one)")
    p.add_argument("--redis-url", required=True)
    p.add_argument("--n", type=int, required=True, help="jobs")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--sleep", type=float, default=0.05, help="W2: seconds each job sleeps")
    p.add_argument("--budget", type=float, default=40.0,
                   help="W3: stop after this many seconds even if fewer than N jobs ran")
    p.add_argument("--warmup", type=int, default=5, help="W3: unmeasured jobs first")
    return p.parse_args()


class WorkerProcess:
    """W3's worker: this same script in ``worker`` mode, as a separate process, so that the
    client and the worker never share an event loop (as in a real deployment)."""

    def __init__(self, script: str, args: argparse.Namespace) -> None:
        self._process = subprocess.Popen(
            [sys.executable, script, "worker", "--redis-url", args.redis_url, "--n", "0",
             "--concurrency", str(args.concurrency)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def __enter__(self) -> WorkerProcess:
        # Let the worker finish starting before the first (warm-up) job: SAQ's start-up
        # sweep aborts a job it catches between dequeue and "active" (seen here).
        time.sleep(STARTUP_PAUSE)
        return self

    def __exit__(self, *exc: object) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)


class Drain:
    """Shared bookkeeping of a drain: the first handler start, completion time, polls.

    Every script's completion poller checks the in-process handler count first and asks
    Redis only once the N-th handler has started, so polling adds no load during the drain;
    ``polls`` counts the Redis round trips it made (subtracted from the command counts)."""

    def __init__(self) -> None:
        self.worker_started = 0.0
        self.first_start: float | None = None
        self.handler_calls = 0
        self.done_at = 0.0
        self.polls = 0

    def handler_called(self) -> None:
        self.handler_calls += 1
        if self.first_start is None:
            self.first_start = time.perf_counter()

    def figures(self, n: int) -> dict[str, Any]:
        assert self.first_start is not None
        seconds = self.done_at - self.first_start
        return {
            "process_s": seconds,
            "process_jobs_per_s": n / seconds,
            "process_from_worker_start_s": self.done_at - self.worker_started,
            "handler_calls": self.handler_calls,
            "polls": self.polls,
        }


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def throughput_figures(workload: str, args: Any, enqueue_s: float, drain: Drain,
                       before: dict[str, Any], after_run: dict[str, Any],
                       extra_ignored_calls: int = 0) -> dict[str, Any]:
    """The W1/W2/W7 figures every library's script reports, computed one way for all."""
    out: dict[str, Any] = {"n": args.n, "enqueue_s": enqueue_s,
                           "enqueue_jobs_per_s": args.n / enqueue_s, **drain.figures(args.n)}
    if workload == "W2":
        ideal = args.n * args.sleep / args.concurrency
        out |= {"ideal_s": ideal, "wall_over_ideal": out["process_s"] / ideal}
    if workload in ("W1", "W7"):
        out |= redis_delta(before, after_run, args.n,
                           ignore_calls=drain.polls + extra_ignored_calls)
        if workload == "W7":
            after_close = redis_snapshot(args.redis_url)
            out["bytes_per_job"] = (after_close["used_memory"] - before["used_memory"]) / args.n
            out["keys_per_job"] = (after_close["keys"] - before["keys"]) / args.n
    return out
