"""Workloads of ours that need whole services: W4 (HTTP submit vs a bare route), W5 (HTTP
round trip), W6 (reclaim after ``kill -9``). Run by bench/run.py; by hand:

    python bench/services.py W4 --variant bare|memory|redis [--redis-url URL] [--seconds 10]
    python bench/services.py W5 --variant memory|redis [--redis-url URL] [--n 300]
    (W4, W5: --replicas-ack N serves with that setting; bench/replicas_cost.py uses it)
    python bench/services.py W6 --redis-url URL [--jobs 8] [--lease-ttl 2]
                                [--recovery-interval SECONDS]

Every process started here is on 127.0.0.1 and is stopped before the script returns.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from _common import emit, latency_figures  # noqa: E402

HOST = "127.0.0.1"
# 100 bytes of JSON, valid for both apps' routes (ours validates dict[str, str]).
BODY = ('{"data":"' + "x" * 89 + '"}').encode()
assert len(BODY) == 100
TERMINAL = {"Completed", "Failed", "Canceled"}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def stop_process(process: subprocess.Popen[Any], grace: float = 15.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def server(variant: str, redis_url: str | None, log: Path,
           replicas_ack: int | None = None) -> Iterator[int]:
    """Serve ``bench.http_apps`` (single process) on a free loopback port."""
    port = free_port()
    bind = f"{HOST}:{port}"
    if variant == "bare":
        cmd = [sys.executable, "-m", "hypercorn", "-k", "trio", "-b", bind,
               "bench.http_apps:bare"]
    else:
        cmd = [sys.executable, "-m", "asyncendpoints_trio", "serve", "bench.http_apps:ours",
               "--bind", bind, "--log-level", "WARNING", "--graceful-timeout", "1"]
        if variant.startswith("redis"):
            assert redis_url, "--redis-url is required for the redis variants"
            cmd += ["--redis-url", redis_url]
            if replicas_ack is not None:
                cmd += ["--replicas-ack", str(replicas_ack)]
        if variant.endswith("-api"):
            # API only: the submit path alone, as the W4 target defines it; the jobs
            # would run on worker instances elsewhere.
            cmd += ["--no-workers"]
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    with open(log, "ab") as out:
        process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
            try:
                status, _, _ = post(port)
                if status == 202:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server not ready within 30 s")
            time.sleep(0.1)
        yield port
    finally:
        stop_process(process)


def post(port: int, conn: http.client.HTTPConnection | None = None, *,
         prefer: str | None = None) -> tuple[int, Any, bytes]:
    own = conn is None
    c = conn or http.client.HTTPConnection(HOST, port, timeout=10)
    headers = {"Content-Type": "application/json", **({"Prefer": prefer} if prefer else {})}
    try:
        c.request("POST", "/submit", BODY, headers)
        r = c.getresponse()
        return r.status, r.headers, r.read()  # headers: case-insensitive
    finally:
        if own:
            c.close()


# ---- W4 --------------------------------------------------------------------------------

WRK_SCRIPT = f"""wrk.method = "POST"
wrk.body = '{BODY.decode()}'
wrk.headers["Content-Type"] = "application/json"
"""


def parse_wrk(text: str) -> dict[str, Any]:
    def unit(value: str) -> float:
        m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
        assert m, value
        return float(m[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m[2]]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text)[1])  # type: ignore[index]
    out: dict[str, Any] = {"req_per_s": rps}
    for q in ("50", "99"):
        m = re.search(rf"^\s+{q}(?:\.000)?%\s+(\S+)", text, re.M)
        if m:
            out[f"p{q}_ms"] = unit(m[1])
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    out["non_2xx"] = int(m[1]) if m else 0
    m = re.search(r"Socket errors: (.*)", text)
    out["socket_errors"] = m[1] if m else ""
    out["requests"] = int(re.search(r"(\d+) requests in", text)[1])  # type: ignore[index]
    return out


def w4(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("W4 needs wrk (apt-get install wrk)")
    lua = tmp / "post.lua"
    lua.write_text(WRK_SCRIPT)
    with server(args.variant, args.redis_url, tmp / "server.log", args.replicas_ack) as port:
        base = [wrk, "-t1", f"-c{args.connections}", "-s", str(lua), "--latency",
                f"http://{HOST}:{port}/submit"]
        subprocess.run([*base[:1], "-d2s", *base[1:]], check=True, capture_output=True,
                       timeout=30)  # warm-up, not measured
        done = subprocess.run([*base[:1], f"-d{args.seconds:g}s", *base[1:]], check=True,
                              capture_output=True, text=True, timeout=args.seconds + 30)
    out = parse_wrk(done.stdout)
    out["wrk"] = f"wrk -t1 -c{args.connections} -d{args.seconds:g}s (POST, 100-byte JSON)"
    return out


# ---- W5 --------------------------------------------------------------------------------

def w5(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """One client, one request at a time: POST, then GET Location?wait=5 until terminal.
    With --prefer-wait the POST asks ``Prefer: wait=5``, and a ``200`` is the final job."""
    samples: list[float] = []
    submits: list[float] = []
    gets = 0
    synchronous = 0
    prefer = "wait=5" if args.prefer_wait else None
    with server(args.variant, args.redis_url, tmp / "server.log", args.replicas_ack) as port:
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        for i in range(args.warmup + args.n):
            start = time.perf_counter()
            status, headers, body = post(port, conn, prefer=prefer)
            submitted = time.perf_counter()
            assert status == 202 or (prefer and status == 200), status
            location = headers["Location"]
            job = json.loads(body)
            if status == 200:
                assert headers["Preference-Applied"] == "wait=5", headers
                synchronous += 1
            while job["status"] not in TERMINAL:
                conn.request("GET", f"{location}?wait=5")
                r = conn.getresponse()
                job = json.loads(r.read())
                gets += 1
                assert r.status == 200, (r.status, job)
            done = time.perf_counter()
            assert job["status"] == "Completed", job
            if i >= args.warmup:
                samples.append(done - start)
                submits.append(submitted - start)
        conn.close()
    out = latency_figures(samples)
    out["submit_p50_ms"] = latency_figures(submits)["p50_ms"]
    out["gets_per_job"] = gets / (args.warmup + args.n)
    out["sync_share"] = synchronous / (args.warmup + args.n)
    return out


# ---- W6 --------------------------------------------------------------------------------

def submit_jobs(redis_url: str, count: int) -> list[str]:
    import trio

    from asyncendpoints_trio import NewJob
    from asyncendpoints_trio.stores import RedisStore

    ids = [str(uuid.uuid4()) for _ in range(count)]

    async def go() -> None:
        store = RedisStore.from_url(redis_url)
        try:
            answers = await store.submit([NewJob(id=i, name="Hold", payload=b"null",
                                                 max_retries=3) for i in ids])
            assert all(not isinstance(a, Exception) for a in answers), answers
        finally:
            await store.aclose()

    trio.run(go)
    return ids


def read_starts(record: Path) -> list[tuple[str, int, float]]:
    if not record.exists():
        return []
    rows = []
    for line in record.read_text().splitlines():
        job_id, pid, at = line.split()
        rows.append((job_id, int(pid), float(at)))
    return rows


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.005)


def w6(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    record = tmp / "starts.txt"
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["BENCH_RECORD"] = str(record)
    if args.recovery_interval is not None:
        env["BENCH_RECOVERY_INTERVAL"] = str(args.recovery_interval)
    cmd = [sys.executable, "-m", "asyncendpoints_trio", "worker", "bench.reclaim_app:app",
           "--redis-url", args.redis_url, "--lease-ttl", str(args.lease_ttl),
           "--graceful-timeout", "0", "--log-level", "INFO"]
    processes: list[subprocess.Popen[Any]] = []

    def start(name: str) -> tuple[subprocess.Popen[Any], Path]:
        log = tmp / f"{name}.log"
        with open(log, "wb") as out:
            p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=subprocess.STDOUT)
        processes.append(p)
        return p, log

    try:
        victim, _ = start("victim")
        ids = submit_jobs(args.redis_url, args.jobs)
        wait_for(lambda: len(read_starts(record)) >= args.jobs, 30, "the victim's starts")
        assert {pid for _, pid, _ in read_starts(record)} == {victim.pid}
        peer, peer_log = start("peer")
        wait_for(lambda: "started" in peer_log.read_text(), 30, "the peer's runtime")
        time.sleep(1.0)  # both steady: the victim renews its leases, the peer idles
        killed_at = time.time()
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)

        def restarted() -> dict[str, float]:
            return {j: at for j, pid, at in read_starts(record) if pid == peer.pid}

        wait_for(lambda: len(restarted()) >= args.jobs, 60, "the peer to restart every job")
        delays = sorted(restarted()[j] - killed_at for j in ids)
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    interval = args.recovery_interval if args.recovery_interval is not None else 5.0
    return {"jobs": args.jobs, "lease_ttl_s": args.lease_ttl, "recovery_interval_s": interval,
            "first_s": delays[0], "median_s": delays[len(delays) // 2], "max_s": delays[-1],
            "max_over_lease_ttl": delays[-1] / args.lease_ttl}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workload", choices=["W4", "W5", "W6"])
    p.add_argument("--variant", default="memory",
                   choices=["bare", "memory", "redis", "redis-api"])
    p.add_argument("--redis-url")
    p.add_argument("--seconds", type=float, default=10.0, help="W4: wrk duration")
    p.add_argument("--connections", type=int, default=50, help="W4: wrk connections")
    p.add_argument("--n", type=int, default=300, help="W5: round trips")
    p.add_argument("--warmup", type=int, default=10, help="W5: unmeasured round trips")
    p.add_argument("--prefer-wait", action="store_true",
                   help="W5: POST with Prefer: wait=5 (one round trip for a fast job)")
    p.add_argument("--replicas-ack", type=int, default=None,
                   help="W4, W5 (redis variants): serve with --replicas-ack N")
    p.add_argument("--jobs", type=int, default=8, help="W6: jobs held by the killed instance")
    p.add_argument("--lease-ttl", type=float, default=2.0, help="W6")
    p.add_argument("--recovery-interval", type=float, default=None,
                   help="W6: the instances' recovery sweep interval (default: library's)")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        emit({"W4": w4, "W5": w5, "W6": w6}[args.workload](args, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
