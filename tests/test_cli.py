"""The command line, as real processes: serve, signals, graceful drain, several workers."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from ._processes import ROOT, Service, cli_process
from ._redis_server import RedisServer, free_port, redis_server_binary

pytestmark = pytest.mark.slow


async def test_serve_drains_running_job_on_sigterm(tmp_path: Path) -> None:
    done_file = tmp_path / "done"
    args = ["serve", "tests.apps.cli_app:app", "--bind", "127.0.0.1:0",
            "--graceful-timeout", "10"]
    async with cli_process(args, env={"CLI_APP_DONE_FILE": str(done_file)}) as service:
        async with httpx.AsyncClient(base_url=service.url) as client:
            response = await client.post("/slow", json=1.0)
            assert response.status_code == 202
            job_id = response.json()["id"]
            with trio.fail_after(10):
                while (await client.get(f"/jobs/{job_id}")).json()["status"] != "InProgress":
                    await client.get(f"/jobs/{job_id}", params={"wait": 0.2})
        service.process.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            assert await service.process.wait() == 0
        await service.wait_for_output(b"stopped")
    # The job that was running when SIGTERM came was allowed to finish.
    assert done_file.read_text().split() == [job_id]
    assert "received SIGTERM" in service.text


async def test_serve_with_several_workers_and_sigint(tmp_path: Path) -> None:
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed")
    with RedisServer() as server:
        await _several_workers(server.url)


async def _several_workers(url: str, *extra: str) -> None:
    args = ["serve", "tests.apps.cli_app:app", "--bind", "127.0.0.1:0", "--workers", "2",
            "--graceful-timeout", "2", "--redis-url", url, "--log-format", "json", *extra]
    async with cli_process(args) as service:
        async with httpx.AsyncClient(base_url=service.url) as client:
            for _ in range(4):
                response = await client.post("/slow", json=0.0)
                assert response.status_code == 202
                body = await client.get(response.headers["location"], params={"wait": 5})
                assert body.json()["status"] == "Completed"
        service.process.send_signal(signal.SIGINT)
        with trio.fail_after(30):
            assert await service.process.wait() == 0
    # Hypercorn's own lines too come once each, in our format, from every process.
    lines = [json.loads(line) for line in service.text.splitlines() if line.strip()]
    hypercorn = [line for line in lines if line["logger"] == "asyncendpoints_trio.server"]
    assert hypercorn and len({line["process"] for line in hypercorn}) >= 2
    running = [(line["process"], line["message"]) for line in hypercorn
               if "Running on" in line["message"]]
    assert len(running) == len(set(running)) == 2  # one each


async def test_worker_command_starts_and_stops() -> None:
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed")
    with RedisServer() as server:
        async with cli_process(["worker", "tests.apps.cli_app:app", "--redis-url", server.url],
                               ready=b"started") as service:
            service.process.send_signal(signal.SIGTERM)
            with trio.fail_after(20):
                assert await service.process.wait() == 0


def test_bad_app_path_exits_2() -> None:
    result = subprocess.run([sys.executable, "-m", "asyncendpoints_trio", "serve", "nosuch:app"],
                            cwd=ROOT, capture_output=True, timeout=60, check=False)
    assert result.returncode == 2 and b"error:" in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_plain_hypercorn_runs_the_runtime() -> None:
    """``hypercorn -k trio module:app`` works too: the runtime rides the app lifecycle."""
    hypercorn = Path(sys.executable).parent / "hypercorn"
    port = _free_port()  # hypercorn's CLI logs the bind it was given, so choose one
    process = await trio.lowlevel.open_process(
        [str(hypercorn), "-k", "trio", "--bind", f"127.0.0.1:{port}", "tests.apps.cli_app:app"],
        cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    service = Service(process)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(service.pump)
            with trio.fail_after(30):
                await service.wait_for_output(b"Running on")
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                    response = await client.post("/slow", json=0.0)
                    body = await client.get(response.headers["location"], params={"wait": 5})
                    assert body.json()["status"] == "Completed"
                process.send_signal(signal.SIGTERM)
                assert await process.wait() == 0
            nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.kill()


@pytest.mark.parametrize("args", [
    ["--redis-url", "http://nope"],
    ["--redis-url", "redis://localhost:notaport"],
    ["--redis-url", "redis+sentinel://localhost:26379"],  # no service name
    ["--redis-url", "redis+cluster://localhost:7000/3"],
    ["--lease-ttl", "1", "--heartbeat", "5"],
    ["--queue", "has space"],
])
def test_bad_options_exit_2(args: list[str]) -> None:
    for command in (["serve", "tests.apps.cli_app:app"], ["worker", "tests.apps.cli_app:app"]):
        result = subprocess.run([sys.executable, "-m", "asyncendpoints_trio", *command, *args],
                                cwd=ROOT, capture_output=True, timeout=60, check=False)
        assert result.returncode == 2, result.stderr.decode()
        assert b"error:" in result.stderr


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    return subprocess.run([sys.executable, "-m", "asyncendpoints_trio", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**inherited, **(env or {})})


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


APP = "tests.apps.cli_app:app"


@pytest.mark.parametrize(("args", "says"), [
    (["serve", APP, "--log-level", "LOUD"], "--log-level"),
    (["serve", APP, "--lease-ttl", "nan"], "--lease-ttl"),
    (["serve", APP, "--lease-ttl", "0"], "lease_ttl"),
    (["serve", APP, "--heartbeat", "inf"], "--heartbeat"),
    (["serve", APP, "--workers", "0"], "--workers"),
    (["serve", APP, "--bind", "nope"], "--bind"),
    (["serve", APP, "--bind", "127.0.0.1:99999"], "cannot listen on 127.0.0.1:99999"),
    (["serve", APP, "--workers", "2"], "in-memory store"),
    (["serve", APP, "--no-workers"], "in-memory store"),
    (["worker", APP], "in-memory store"),
    (["serve", APP, "--partitions", "0"], "--partitions"),
    (["serve", APP, "--partitions", "2"], "in-memory store has none"),
    (["serve", APP, "--partitions", "257", "--redis-url", "redis://127.0.0.1:1/0"],
     "at most 256"),
    (["serve", APP, "--replicas-ack", "-1"], "--replicas-ack: '-1' is not a whole number >= 0"),
    (["serve", APP, "--replicas-ack", "one"], "--replicas-ack: 'one' is not a whole number"),
    (["serve", APP, "--replicas-ack", "1.5"], "--replicas-ack"),
    (["serve", APP, "--replicas-timeout", "0"], "--replicas-timeout: '0' must be"),
    (["serve", APP, "--replicas-timeout", "soon"], "--replicas-timeout"),
    (["serve", APP, "--replicas-ack", "1"], "--replicas-ack 1 needs the Redis store"),
    (["worker", APP, "--replicas-ack", "1"], "--replicas-ack 1 needs the Redis store"),
    (["serve", "nosuch:app"], "nosuch"),
    (["serve", "tests.apps.cli_app:nothing"], "nothing"),
    (["serve", "tests.apps.broken_app:app"], "the settings file is missing"),
])
def test_mistakes_get_one_line_and_exit_2(args: list[str], says: str) -> None:
    assert says in one_line_error(cli(*args))


def test_a_taken_port_is_one_line_before_anything_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", APP, "--bind", f"127.0.0.1:{port}")
    line = one_line_error(result)
    assert f"cannot listen on 127.0.0.1:{port}" in line and "in use" in line
    assert "started" not in result.stderr  # refused before the runtime began


def test_an_unreachable_store_at_start_is_one_line_naming_it() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    for command in (["serve", "--bind", "127.0.0.1:0"], ["worker"]):
        line = one_line_error(cli(*command[:1], APP, *command[1:], "--redis-url", url))
        assert url in line and "--wait-for-store" in line


async def test_another_partition_count_stops_the_cli_at_start() -> None:
    """A queue recorded with three partitions that holds a job: an instance started with
    two is refused before it serves or claims anything, in one line naming both counts."""
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed")
    from asyncendpoints_trio.stores._redis import RedisStore

    from .store_contract import new_job, submit_one

    with RedisServer() as server:
        store = RedisStore.from_url(server.url, partitions=3)
        try:
            await submit_one(store, new_job())
        finally:
            await store.aclose()
        for command in (["serve", "--bind", "127.0.0.1:0"], ["worker"]):
            result = await trio.to_thread.run_sync(lambda c=command: cli(
                c[0], APP, *c[1:], "--redis-url", server.url, "--partitions", "2"))
            line = one_line_error(result)
            assert "3 partition(s)" in line and "partitions=2" in line, line


async def test_wait_for_store_waits_for_redis_to_come_up() -> None:
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer()
    url = server.url
    args = ["serve", APP, "--bind", "127.0.0.1:0", "--redis-url", url,
            "--wait-for-store", "20"]
    try:
        async with cli_process(args, ready=b"waiting up to") as service:
            server.start()  # it comes up while the service waits
            with trio.fail_after(30):
                await service.wait_for_output(b"Running on")
            async with httpx.AsyncClient(base_url=service.url) as client:
                assert (await client.post("/slow", json=0.0)).status_code == 202
            service.process.send_signal(signal.SIGTERM)
            with trio.fail_after(20):
                assert await service.process.wait() == 0
            text = service.text
    finally:
        server.cleanup()
    assert text.count("Running on") == 1  # once, and not under a logger named "error"
    assert "hypercorn.error" not in text and "Traceback" not in text


def test_help_describes_every_option_with_its_default() -> None:
    for command in ("serve", "worker"):
        result = cli(command, "--help")
        assert result.returncode == 0
        text = result.stdout
        assert "examples:" in text
        options = [line.split()[0] for line in text.splitlines()
                   if line.startswith("  --")]
        assert len(options) >= 7
    worker = " ".join(cli("worker", "--help").stdout.split())  # help lines wrap anywhere
    assert "HTTP requests" not in worker and "in-memory" not in worker
    assert "Redis" in worker and "(default: info)" in worker
    serve = " ".join(cli("serve", "--help").stdout.split())
    assert "(default: 127.0.0.1:8000)" in serve and "--backlog" in serve


def test_version() -> None:
    from asyncendpoints_trio import __version__

    result = cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"asyncendpoints-trio {__version__}"


async def test_an_app_runs_itself_with_endpoints_run() -> None:
    """examples/quickstart.py ends in sys.exit(endpoints.run()): a script is a service."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "examples/quickstart.py", "--bind", "127.0.0.1:0",
         "--graceful-timeout", "1"], cwd=ROOT, stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL, env={k: v for k, v in os.environ.items()
                                        if k != "REDIS_URL"})
    service = Service(process)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(service.pump)
            with trio.fail_after(30):
                await service.wait_for_output(b"Running on")
                async with httpx.AsyncClient(base_url=service.url) as client:
                    answer = await client.post("/api/process-data", json={"data": "hi"})
                    assert answer.status_code == 202
                # README's next step: the example client, against the example service.
                client_run = await trio.run_process(
                    [sys.executable, "examples/client.py", "--url", service.url, "--data",
                     "hello"], cwd=ROOT, capture_stdout=True, capture_stderr=True,
                    check=False,
                    # A script's sys.path starts at examples/: this checkout's package,
                    # not whichever one is installed.
                    env={**os.environ, "PYTHONPATH": str(ROOT)})
                assert client_run.returncode == 0, client_run.stderr.decode()
                assert b"HELLO" in client_run.stdout
                process.send_signal(signal.SIGTERM)
                assert await process.wait() == 0
            nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.kill()


async def test_access_log_is_opt_in() -> None:
    for flag in ([], ["--access-log"]):
        args = ["serve", APP, "--bind", "127.0.0.1:0", *flag]
        async with cli_process(args) as service:
            async with httpx.AsyncClient(base_url=service.url) as client:
                assert (await client.get("/openapi.json")).status_code == 200
            service.process.send_signal(signal.SIGTERM)
            with trio.fail_after(20):
                assert await service.process.wait() == 0
            logged = "asyncendpoints_trio.access" in service.text and \
                "GET /openapi.json" in service.text
        assert logged == bool(flag)


async def test_log_format_json_for_ours_and_hypercorns() -> None:
    import json

    args = ["serve", APP, "--bind", "127.0.0.1:0", "--log-format", "json"]
    async with cli_process(args, ready=re.compile(rb'"Running on http://127\.0\.0\.1:\d+'))\
            as service:
        service.process.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            assert await service.process.wait() == 0
        text = service.text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert {line["logger"] for line in lines} >= {"asyncendpoints_trio.runtime",
                                                  "asyncendpoints_trio.server"}
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
