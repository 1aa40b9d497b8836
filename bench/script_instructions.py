"""Instructions the redis-server executes per job in the job scripts: submit, then claim +
finish, counted by valgrind's callgrind (``Ir``), for one or more checkouts.

    python bench/script_instructions.py TREE [TREE ...] [--n 5000]

Each TREE's package is imported in a process of its own (``TREE`` first on ``sys.path``),
against a redis-server of its own run under ``valgrind --tool=callgrind`` (about 50 times
slower than native, hence the smaller default ``--n``). Submits ``n`` no-op jobs in batches
of 256, then claims them 32 at a time and completes each batch, as bench/script_cost.py
does; the counters are zeroed before each phase and dumped after it, so script loading and
the client's connection are not counted. An instruction count is no time (it ignores cache
misses, which the sorted-set writes have more of than the Lua), but it is the same from
run to run, on a quiet machine or a busy one: the figure to compare two variants of a
script with when the machine is shared. Needs ``valgrind`` (callgrind_control comes with
it). Prints one ``BENCH_RESULT`` line: per tree, instructions per job of each phase.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench")]

from _common import RESULT_PREFIX  # noqa: E402

# The client side, run in a child process per tree so that each imports its own package.
CLIENT = r'''
import subprocess, sys, uuid
tree, port, pid, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
sys.path[:0] = [tree]
import trio
from asyncendpoints_trio import NewJob
from asyncendpoints_trio.stores._protocol import Complete
from asyncendpoints_trio.stores._redis import RedisStore


def ctl(flag: str) -> None:
    subprocess.run(["callgrind_control", flag, pid], check=True, capture_output=True)


async def main() -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0")
    with trio.fail_after(120):
        while True:
            try:
                await store.client.execute("PING")
                break
            except Exception:  # valgrind starts slowly: not listening yet
                await trio.sleep(0.1)
    jobs = [NewJob(id=str(uuid.uuid4()), name="Job", payload=b"null", max_retries=3)
            for _ in range(n + 1)]
    await store.submit(jobs[:1])  # loads the scripts
    ctl("--zero")
    for i in range(1, n + 1, 256):
        await store.submit(jobs[i:i + 256])
    ctl("--dump")
    done = 0
    while done < n + 1:
        claimed = await store.claim("bench", 32, 60.0)
        await store.finish([Complete(c.lease, b"null") for c in claimed])
        done += len(claimed)
    ctl("--dump")
    await store.aclose()

trio.run(main)
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def dumped_total(path: Path) -> int:
    found = re.search(r"^(?:summary|totals):\s+(\d+)", path.read_text(errors="replace"), re.M)
    assert found, path
    return int(found.group(1))


def measure(tree: Path, n: int) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="script-ir-"))
    port = free_port()
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={workdir}/cg.%p",
         "redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        subprocess.run([sys.executable, "-c", CLIENT, str(tree), str(port), str(server.pid),
                        str(n)], check=True, timeout=1200)
    finally:
        server.terminate()
        server.wait(timeout=60)
    dumps = sorted(workdir.glob("cg.*.*"), key=lambda p: int(p.name.rsplit(".", 1)[1]))
    submit, process = (dumped_total(p) for p in dumps[:2])
    shutil.rmtree(workdir, ignore_errors=True)
    return {"submit_instructions_per_job": submit / n,
            "claim_finish_instructions_per_job": process / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs="+", type=Path)
    parser.add_argument("--n", type=int, default=5000)
    args = parser.parse_args()
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        raise SystemExit("needs valgrind (apt-get install valgrind)")
    results = {}
    for tree in args.trees:
        results[str(tree.resolve())] = found = measure(tree.resolve(), args.n)
        print(f"{tree}: submit {found['submit_instructions_per_job']:,.0f}, claim + finish "
              f"{found['claim_finish_instructions_per_job']:,.0f} instructions per job",
              file=sys.stderr)
    print(RESULT_PREFIX + json.dumps({"n": args.n, "trees": results}))


if __name__ == "__main__":
    main()
