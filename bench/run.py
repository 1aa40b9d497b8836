"""The benchmark harness: our library against streaq, SAQ, arq and taskiq-redis.

    python bench/run.py                                  # the full run (about 20 minutes)
    python bench/run.py --smoke                          # ours only, tiny N (CI, < 30 s)
    python bench/run.py --libs ours,saq --workloads W1,W3 --reps 3
    python bench/run.py --out bench/results/NAME.json    # + NAME.md beside it

Peers run from their own pinned environments (``bash bench/setup_peers.sh`` first). For every
repetition, every workload and every library in turn (interleaved: A B C D, A B C D, ...),
a fresh private redis-server (loopback, persistence off) is started, the library's script
runs as a subprocess with a timeout and prints one JSON line of figures, and the server is
killed. The table gives, per figure, the median over repetitions, min-max, and the ratio to
the best peer of the same run. See docs/pages/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]

from _common import RESULT_PREFIX  # noqa: E402

from tests._redis_server import RedisServer  # noqa: E402

PEERS = ("saq", "arq", "streaq", "taskiq")
LIBS = ("ours", *PEERS)
WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "T1", "T4")
TELEMETRY = ("off", "metrics", "tracing", "sampled")  # see bench/_telemetry.py
PEER_VENV = BENCH / ".venv-peers"
SCRIPTS = {"ours": "ours.py", "saq": "saq_bench.py", "arq": "arq_bench.py",
           "streaq": "streaq_bench.py", "taskiq": "taskiq_bench.py"}
PACKAGES = {"saq": "saq", "arq": "arq", "streaq": "streaq", "taskiq": "taskiq-redis"}


@dataclass(frozen=True)
class Figure:
    key: str  # in the script's JSON
    label: str
    higher_is_better: bool
    fmt: str = "{:,.0f}"


@dataclass(frozen=True)
class Entry:
    """One row group of a workload: a library, or a variant of ours."""

    name: str
    lib: str  # whose interpreter runs it (ours or a peer)
    argv: tuple[str, ...]  # after the interpreter
    redis: bool = True
    env: tuple[tuple[str, str], ...] = ()
    timeout: float = 300.0
    baseline: str | None = None  # this row's ratio is to that entry (W5: Prefer vs long-poll)


@dataclass
class Workload:
    name: str
    title: str
    figures: tuple[Figure, ...]
    entries: list[Entry] = field(default_factory=list)
    baseline: str | None = None  # ratio to this entry instead of the best peer (W4: bare)


def lib_python(lib: str) -> str:
    if lib == "ours":
        return sys.executable
    python = PEER_VENV / lib / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"{python} is missing: run `bash bench/setup_peers.sh` first")
    return str(python)


def plan(libs: list[str], workloads: list[str], smoke: bool) -> list[Workload]:
    lat = "{:,.2f}"
    sizes = ({"W1": 200, "W2": 64, "W3": 20, "W5": 20, "W7": 200, "W8": 600} if smoke else
             {"W1": 20000, "W2": 2000, "W3": 500, "W5": 300, "W7": 5000, "W8": 30000})
    sleep = 0.01 if smoke else 0.05
    budget = "10" if smoke else "40"

    def lib_script(lib: str, workload: str, *extra: str, n: int) -> tuple[str, ...]:
        return (str(BENCH / "libs" / SCRIPTS[lib]), workload, "--redis-url", "{redis_url}",
                "--n", str(n),
                "--concurrency", "32", *extra)

    services = str(BENCH / "services.py")
    out: list[Workload] = []
    for w in workloads:
        if w == "W1":
            wl = Workload(w, f"W1 noop: enqueue {sizes['W1']:,} no-op jobs (bulk), then drain "
                          "them with one worker process at concurrency 32", (
                              Figure("enqueue_jobs_per_s", "enqueue jobs/s", True),
                              Figure("process_jobs_per_s", "process jobs/s", True),
                              Figure("commands_per_job", "Redis commands/job", False,
                                     "{:,.1f}")))
            wl.entries = [Entry(lib, lib, lib_script(lib, w, n=sizes[w])) for lib in libs]
        elif w == "W2":
            wl = Workload(w, f"W2 sleep: {sizes['W2']:,} jobs sleeping {sleep * 1000:g} ms, "
                          "concurrency 32", (
                              Figure("wall_over_ideal", "wall time / ideal", False, "{:.3f}"),
                              Figure("process_s", "wall time s", False, "{:.2f}")))
            wl.entries = [Entry(lib, lib, lib_script(lib, w, "--sleep", str(sleep),
                                                     n=sizes[w])) for lib in libs]
        elif w == "W3":
            wl = Workload(w, f"W3 latency: idle worker (separate process), one job at a time, "
                          f"{sizes['W3']} jobs or {budget} s; enqueue -> result available", (
                              Figure("p50_ms", "p50 ms", False, lat),
                              Figure("p99_ms", "p99 ms", False, lat),
                              Figure("n", "jobs measured", True)))
            wl.entries = [Entry(lib, lib, lib_script(lib, w, "--budget", budget,
                                                     n=sizes[w])) for lib in libs]
        elif w == "W4":
            if "ours" not in libs or smoke:
                continue
            wl = Workload(w, "W4 HTTP submit: POST -> 202, Hypercorn trio worker, one process, "
                          "wrk -t1 -c50 -d10s; ratio to a bare Quart-Trio route", (
                              Figure("req_per_s", "req/s", True),
                              Figure("p50_ms", "p50 ms", False, lat),
                              Figure("p99_ms", "p99 ms", False, lat)), baseline="bare")
            wl.entries = [
                Entry("bare", "ours", (services, w, "--variant", "bare"), redis=False),
                Entry("ours-memory", "ours", (services, w, "--variant", "memory"),
                      redis=False),
                Entry("ours-redis", "ours", (services, w, "--variant", "redis",
                                             "--redis-url", "{redis_url}")),
                Entry("ours-redis-api", "ours", (services, w, "--variant", "redis-api",
                                                 "--redis-url", "{redis_url}"))]
        elif w == "T1":
            if "ours" not in libs:
                continue
            wl = Workload(w, f"T1 telemetry cost on W1: {sizes['W1']:,} no-op jobs, Redis; "
                          "off / metrics / metrics + tracing (SDK, every span, batch "
                          "processor, dropping exporter) / sampled (1 trace in 10); ratio "
                          "to off", (
                              Figure("process_jobs_per_s", "process jobs/s", True),),
                          baseline="ours-off")
            wl.entries = [Entry(f"ours-{mode}", "ours", lib_script("ours", "W1", n=sizes["W1"]),
                                env=(("BENCH_TELEMETRY", mode),)) for mode in TELEMETRY]
        elif w == "T4":
            if "ours" not in libs or smoke:
                continue
            wl = Workload(w, "T4 telemetry cost on W4: HTTP submit, in-memory store, API and "
                          "workers in one process; off / metrics / metrics + tracing / "
                          "sampled (1 in 10); ratio to off", (Figure("req_per_s", "req/s", True),
                                     Figure("p50_ms", "p50 ms", False, lat)),
                          baseline="ours-off")
            wl.entries = [Entry(f"ours-{mode}", "ours", (services, "W4", "--variant", "memory"),
                                redis=False, env=(("BENCH_TELEMETRY", mode),))
                          for mode in TELEMETRY]
        elif w == "W5":
            if "ours" not in libs:
                continue
            n = str(sizes["W5"])
            wl = Workload(w, f"W5 HTTP round trip: POST, then GET ?wait= until terminal, one "
                          f"client, {n} jobs; -prefer: POST with Prefer: wait=5 (ratio to "
                          "the long-poll row of its store)", (
                              Figure("p50_ms", "p50 ms", False, lat),
                              Figure("p99_ms", "p99 ms", False, lat),
                              Figure("submit_p50_ms", "POST p50 ms", False, lat),
                              Figure("sync_share", "answered by the POST", True, "{:.2f}")))
            wl.entries = [
                Entry("ours-memory", "ours", (services, w, "--variant", "memory", "--n", n),
                      redis=False),
                Entry("ours-redis", "ours", (services, w, "--variant", "redis", "--n", n,
                                             "--redis-url", "{redis_url}")),
                Entry("ours-memory-prefer", "ours", (services, w, "--variant", "memory",
                                                     "--n", n, "--prefer-wait"),
                      redis=False, baseline="ours-memory"),
                Entry("ours-redis-prefer", "ours", (services, w, "--variant", "redis", "--n", n,
                                                    "--redis-url", "{redis_url}",
                                                    "--prefer-wait"),
                      baseline="ours-redis")]
        elif w == "W6":
            if "ours" not in libs or smoke:
                continue
            wl = Workload(w, "W6 reclaim: kill -9 an instance holding 8 running jobs (lease "
                          "TTL 2 s); time from the kill until the peer instance starts each", (
                              Figure("median_s", "median s", False, "{:.2f}"),
                              Figure("max_s", "max s", False, "{:.2f}"),
                              Figure("max_over_lease_ttl", "max / lease TTL", False,
                                     "{:.2f}")))
            wl.entries = [
                Entry("ours (recovery 5 s, default)", "ours",
                      (services, w, "--redis-url", "{redis_url}")),
                Entry("ours (recovery 0.5 s)", "ours",
                      (services, w, "--redis-url", "{redis_url}",
                       "--recovery-interval", "0.5"))]
        elif w == "W7":
            wl = Workload(w, f"W7 footprint: {sizes['W7']:,} terminal jobs, 100-byte payload "
                          "and result", (
                              Figure("bytes_per_job", "bytes/job", False),
                              Figure("commands_per_job", "Redis commands/job", False,
                                     "{:,.1f}"),
                              Figure("jobs_per_redis_cpu_s", "jobs per Redis CPU-s", True)))
            wl.entries = [Entry(lib, lib, lib_script(lib, w, n=sizes[w])) for lib in libs]
            if "ours" in libs:
                wl.entries.insert(1, Entry("ours-memory (MemoryStore)", "ours",
                                           lib_script("ours", w, n=sizes[w]), redis=False,
                                           env=(("BENCH_STORE", "memory"),)))
        elif w == "W8":
            if "ours" not in libs:
                continue
            # A private 6-node cluster per measurement, started by the script itself;
            # bench/w8_cluster.py gives the per-primary detail. Smoke: the P = 6 row only.
            wl = Workload(w, f"W8 cluster drain: {sizes['W8']:,} no-op jobs, 2 worker "
                          "processes at concurrency 32, Redis Cluster of 3 primaries (and 3 "
                          "replicas); one queue of P partitions; Redis CPU read on the "
                          "primaries only; ratio to P = 1", (
                              Figure("process_jobs_per_s", "process jobs/s", True),
                              Figure("commands_per_job", "Redis commands/job", False,
                                     "{:,.2f}"),
                              Figure("cpu_ms_per_job", "Redis CPU-ms/job, all primaries",
                                     False, "{:.4f}"),
                              Figure("busiest_cpu_ms_per_job",
                                     "Redis CPU-ms/job, busiest primary", False, "{:.4f}"),
                              Figure("cpu_spread_pct", "CPU spread over primaries %", False,
                                     "{:.0f}")), baseline="ours P=1")
            w8 = str(BENCH / "w8_cluster.py")
            wl.entries = [Entry(f"ours P={p}", "ours",
                                (w8, "one", "--n", str(sizes[w]), "--partitions", p),
                                redis=False)
                          for p in (("6",) if smoke else ("1", "6"))]
        else:
            raise SystemExit(f"unknown workload {w}")
        out.append(wl)
    return out


def run_entry(entry: Entry) -> dict[str, Any]:
    server = RedisServer() if entry.redis else None
    try:
        if server is not None:
            server.start()
        # Entries without a server never connect; scripts that require the option get a
        # URL nothing listens on.
        url = server.url if server is not None else "redis://127.0.0.1:1/0"
        argv = [lib_python(entry.lib), *(a.replace("{redis_url}", url) for a in entry.argv)]
        env = {**os.environ, **dict(entry.env)}
        env.pop("REDIS_URL", None)
        started = time.monotonic()
        # A session of its own: on timeout the whole group (servers, workers) is killed.
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
        try:
            stdout, stderr = process.communicate(timeout=entry.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            return {"error": f"timed out after {entry.timeout:.0f} s"}
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        with_prefix = [line for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
        if process.returncode != 0 or not with_prefix:
            return {"error": f"exit {process.returncode}: {stderr.strip()[-1500:]}"}
        result: dict[str, Any] = json.loads(with_prefix[-1][len(RESULT_PREFIX):])
        result["elapsed_s"] = time.monotonic() - started
        return result
    finally:
        if server is not None:
            server.cleanup()


def summarize(workloads: list[Workload], results: dict[str, dict[str, list[dict[str, Any]]]]
              ) -> dict[str, Any]:
    """Per workload, entry and figure: values, median, min, max, ratio."""
    summary: dict[str, Any] = {}
    for wl in workloads:
        per: dict[str, Any] = {}
        for entry in wl.entries:
            runs = results[wl.name][entry.name]
            figs: dict[str, Any] = {}
            for f in wl.figures:
                values = [r[f.key] for r in runs if "error" not in r and f.key in r
                          and r[f.key] is not None and not math.isnan(r[f.key])]
                if values:
                    figs[f.key] = {"values": values, "median": statistics.median(values),
                                   "min": min(values), "max": max(values)}
            per[entry.name] = {"figures": figs,
                               "errors": [r["error"] for r in runs if "error" in r]}
        for f in wl.figures:
            if wl.baseline is not None:
                ref_name = wl.baseline
                ref = per.get(ref_name, {}).get("figures", {}).get(f.key)
            else:
                peers = [(name, d["figures"][f.key]) for name, d in per.items()
                         if name in PEERS and f.key in d["figures"]]
                if not peers:
                    continue
                ref_name, ref = (max if f.higher_is_better else min)(
                    peers, key=lambda p: p[1]["median"])
            if not ref or not ref["median"]:
                continue
            for d in per.values():
                if f.key in d["figures"]:
                    d["figures"][f.key]["ratio"] = d["figures"][f.key]["median"] / ref["median"]
                    d["figures"][f.key]["ratio_to"] = ref_name
        for entry in wl.entries:
            # A row with a baseline of its own is compared with that row, figure by figure.
            mine = per.get(entry.name, {}).get("figures", {})
            base = per.get(entry.baseline or "", {}).get("figures", {})
            for key, fig in mine.items():
                if entry.baseline is not None and base.get(key, {}).get("median"):
                    fig["ratio"] = fig["median"] / base[key]["median"]
                    fig["ratio_to"] = entry.baseline
        summary[wl.name] = per
    return summary


def render(workloads: list[Workload], summary: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [f"Run of {meta['date']}: {meta['reps']} interleaved repetitions; machine: "
             f"{meta['machine']}; load average {meta['loadavg_start'][0]:.2f} at the start, "
             f"{meta['loadavg_end'][0]:.2f} at the end; library at {meta['commit']}; "
             + ", ".join(meta["versions"].values()) + ".", ""]
    for wl in workloads:
        ratio_head = (f"ratio to {wl.baseline}" if wl.baseline else
                      "ratio" if any(e.baseline for e in wl.entries) else "ratio to best peer")
        lines += [f"### {wl.title}", "",
                  f"| library | figure | median | min–max | {ratio_head} |",  # noqa: RUF001
                  "|---|---|---:|---:|---:|"]
        for entry in wl.entries:
            d = summary[wl.name][entry.name]
            for f in wl.figures:
                fig = d["figures"].get(f.key)
                if fig is None:
                    continue
                ratio = (f"{fig['ratio']:.2f}× {fig['ratio_to']}" if "ratio" in fig else "—")  # noqa: RUF001
                lines.append(f"| {entry.name} | {f.label} | {f.fmt.format(fig['median'])} | "
                             f"{f.fmt.format(fig['min'])}–{f.fmt.format(fig['max'])} | "  # noqa: RUF001
                             f"{ratio} |")
            for err in d["errors"]:
                lines.append(f"| {entry.name} | **error** | {err.splitlines()[-1][:120]} | | |")
        lines.append("")
    return "\n".join(lines)


def versions(libs: list[str]) -> dict[str, str]:
    import asyncendpoints_trio

    found = {"ours": f"asyncendpoints-trio {asyncendpoints_trio.__version__}"}
    for lib in libs:
        if lib == "ours":
            continue
        code = (f"import importlib.metadata as m; print(m.version({PACKAGES[lib]!r}))")
        v = subprocess.run([lib_python(lib), "-c", code], capture_output=True, text=True,
                           timeout=60).stdout.strip()
        found[lib] = f"{PACKAGES[lib]} {v}"
    return found


def library_commit() -> str:
    """The commit measured, and whether the library's files differ from it (read-only).
    A snapshot tree (``git archive``) names its commit in ``.bench-commit``."""
    marker = ROOT / ".bench-commit"
    if marker.exists():
        return marker.read_text().strip()
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "asyncendpoints_trio"],
                               cwd=ROOT, text=True, capture_output=True, timeout=10).stdout
    except OSError:
        return "?"
    return head + (" + uncommitted library changes" if dirty.strip() else "")


def machine() -> str:
    redis_v = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                             timeout=10).stdout.split()
    redis_v = next((w[2:] for w in redis_v if w.startswith("v=")), "?")
    return (f"{os.cpu_count()} cores, Python {platform.python_version()}, "
            f"redis-server {redis_v}, {platform.system()} {platform.release()}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--libs", default=",".join(LIBS),
                   help=f"comma-separated subset of {','.join(LIBS)}")
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help=f"comma-separated subset of {','.join(WORKLOADS)}")
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 3; smoke 1)")
    p.add_argument("--smoke", action="store_true",
                   help="ours only, tiny N, no W4/W6: the CI check that the harness runs")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON results (default bench/results/<date>.json); .md beside it")
    args = p.parse_args()
    libs = [x for x in args.libs.split(",") if x]
    workloads = [x.upper() for x in args.workloads.split(",") if x]
    if args.smoke:
        libs = ["ours"]
    unknown = [x for x in libs if x not in LIBS] + [x for x in workloads if x not in WORKLOADS]
    if unknown:
        raise SystemExit(f"unknown: {', '.join(unknown)}")
    reps = args.reps or (1 if args.smoke else 3)
    for lib in libs:
        lib_python(lib)  # fail early when a peer environment is missing
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or BENCH / "results" / f"{'smoke' if args.smoke else 'run'}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    todo = plan(libs, workloads, args.smoke)
    meta = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": machine(), "versions": versions(libs), "commit": library_commit(),
            "reps": reps,
            "smoke": args.smoke, "loadavg_start": os.getloadavg()}
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        wl.name: {e.name: [] for e in wl.entries} for wl in todo}
    began = time.monotonic()
    for rep in range(1, reps + 1):
        for wl in todo:
            for entry in wl.entries:  # interleaved: every library once per workload per rep
                result = run_entry(entry)
                results[wl.name][entry.name].append(result)
                shown = ("ERROR " + result["error"].splitlines()[-1][:200] if "error" in result
                         else ", ".join(f"{f.label} {f.fmt.format(result[f.key])}"
                                        for f in wl.figures if f.key in result))
                print(f"[{time.monotonic() - began:6.0f}s] rep {rep} {wl.name} {entry.name}: "
                      f"{shown}", flush=True)
    meta["loadavg_end"] = os.getloadavg()
    meta["total_s"] = time.monotonic() - began
    summary = summarize(todo, results)
    table = render(todo, summary, meta)
    print()
    print(table)
    out.write_text(json.dumps({"meta": meta, "summary": summary, "runs": results}, indent=1,
                              default=str))
    out.with_suffix(".md").write_text(table + "\n")
    print(f"wrote {out} and {out.with_suffix('.md')} in {meta['total_s']:.0f} s")
    failed = sum(1 for w in results.values() for runs in w.values() for r in runs
                 if "error" in r)
    if failed:
        print(f"{failed} run(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
