"""What keeping the admin indexes costs: W1 and W7 of bench/run.py, and the scripts' server
time per job (S, bench/script_cost.py), another checkout (the baseline, by default
/work/main) against this one, interleaved in one run.

    python bench/admin_cost.py --reps 5
    python bench/admin_cost.py --baseline /path/to/other/checkout --workloads W1

Each repetition runs every workload on the baseline and then on this tree (A B, A B, ...),
each on a fresh private redis-server, with the same script bench/libs/ours.py of its own
tree (each imports its own package first). Prints the median of each figure per tree and
the ratio this/baseline, and the median of each repetition's own ratio (``paired``: less
noisy on a shared machine). One JSON line at the end (``BENCH_RESULT``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from _common import RESULT_PREFIX  # noqa: E402

from tests._redis_server import RedisServer  # noqa: E402

SIZES = {"W1": 20000, "W7": 5000, "S": 20000}
FIGURES = {"W1": ("enqueue_jobs_per_s", "process_jobs_per_s", "commands_per_job"),
           "W7": ("bytes_per_job", "commands_per_job", "jobs_per_redis_cpu_s"),
           "S": ("submit_server_us_per_job", "claim_finish_server_us_per_job",
                 "submit_jobs_per_s", "claim_finish_jobs_per_s")}


def run_once(tree: Path, workload: str) -> dict[str, Any]:
    if workload == "S":  # the scripts' server time (bench/script_cost.py, this tree's copy)
        argv = [sys.executable, str(ROOT / "bench" / "script_cost.py"), str(tree)]
        done = subprocess.run(argv, cwd=tree, capture_output=True, text=True, timeout=600,
                              check=False)
        lines = [x for x in done.stdout.splitlines() if x.startswith(RESULT_PREFIX)]
        if done.returncode != 0 or not lines:
            raise SystemExit(f"{tree} S failed:\n{done.stderr[-2000:]}")
        found: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX):])
        return found
    with RedisServer() as server:
        argv = [sys.executable, str(tree / "bench" / "libs" / "ours.py"), workload,
                "--redis-url", server.url, "--n", str(SIZES[workload]),
                "--concurrency", "32"]
        done = subprocess.run(argv, cwd=tree, capture_output=True, text=True, timeout=600,
                              check=False)
    lines = [x for x in done.stdout.splitlines() if x.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{tree} {workload} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX):])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, default=Path("/work/main"))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--workloads", default="W1,W7,S",
                        help="W1, W7 (bench/run.py's), S (bench/script_cost.py)")
    args = parser.parse_args()
    trees = {"baseline": args.baseline.resolve(), "this": ROOT}
    workloads = args.workloads.split(",")
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        w: {t: [] for t in trees} for w in workloads}
    for rep in range(args.reps):
        for w in workloads:
            for label, tree in trees.items():
                results[w][label].append(run_once(tree, w))
                print(f"rep {rep + 1} {w} {label}: " + ", ".join(
                    f"{k} {results[w][label][-1][k]:,.1f}" for k in FIGURES[w]),
                    file=sys.stderr)
    summary: dict[str, Any] = {}
    for w in workloads:
        print(f"\n{w} ({SIZES[w]:,} jobs, {args.reps} reps, medians)")
        print(f"  {'figure':<24}{'baseline':>14}{'this':>14}{'this/baseline':>15}"
              f"{'paired':>9}")
        for figure in FIGURES[w]:
            base = statistics.median(r[figure] for r in results[w]["baseline"])
            this = statistics.median(r[figure] for r in results[w]["this"])
            # The median of each repetition's own ratio: the two runs of a repetition follow
            # each other, so on a shared machine they more often share its load.
            paired = statistics.median(
                t[figure] / b[figure]
                for b, t in zip(results[w]["baseline"], results[w]["this"], strict=True))
            summary[f"{w}.{figure}"] = {"baseline": base, "this": this, "ratio": this / base,
                                        "paired_ratio": paired}
            print(f"  {figure:<24}{base:>14,.1f}{this:>14,.1f}{this / base:>15.3f}"
                  f"{paired:>9.3f}")
    print(RESULT_PREFIX + json.dumps({"baseline": str(trees["baseline"]), "reps": args.reps,
                                      "figures": summary}))


if __name__ == "__main__":
    main()
