"""The command line, as real processes: serve, signals, graceful drain, several workers."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from ._processes import ROOT, Service, cli_process

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
    args = ["serve", "tests.apps.cli_app:app", "--bind", "127.0.0.1:0", "--workers", "2",
            "--graceful-timeout", "2"]
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


async def test_worker_command_starts_and_stops() -> None:
    async with cli_process(["worker", "tests.apps.cli_app:app"], ready=b"started") as service:
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
    ["--lease-ttl", "1", "--heartbeat", "5"],
    ["--queue", "has space"],
])
def test_bad_options_exit_2(args: list[str]) -> None:
    for command in (["serve", "tests.apps.cli_app:app"], ["worker", "tests.apps.cli_app:app"]):
        result = subprocess.run([sys.executable, "-m", "asyncendpoints_trio", *command, *args],
                                cwd=ROOT, capture_output=True, timeout=60, check=False)
        assert result.returncode == 2, result.stderr.decode()
        assert b"error:" in result.stderr
