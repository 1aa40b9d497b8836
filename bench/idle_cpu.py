"""Idle cost: CPU seconds an idle service burns per minute (and, with Redis, commands/s).

    python bench/idle_cpu.py [--seconds 30] [--app examples.quickstart:app] [-- extra CLI args]

Starts ``python -m asyncendpoints_trio serve APP`` on a loopback port, lets it settle,
then reads the process's CPU time from /proc before and after an idle window.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--app", default="examples.quickstart:app")
    parser.add_argument("extra", nargs="*")
    args = parser.parse_args()
    process = subprocess.Popen(
        [sys.executable, "-m", "asyncendpoints_trio", "serve", args.app, "--bind",
         "127.0.0.1:0", "--log-level", "WARNING", *args.extra],
        cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)  # let imports and startup finish; not part of the idle window
        before = cpu_seconds(process.pid)
        time.sleep(args.seconds)
        used = cpu_seconds(process.pid) - before
        print(f"idle {args.seconds:.0f}s: {used:.3f} CPU s "
              f"({used / args.seconds * 100:.3f}% of a core, {used / args.seconds * 60:.3f} "
              "CPU s per minute)")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
