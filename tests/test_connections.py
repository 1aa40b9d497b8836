"""Connection hygiene: after any burst, the server's descriptors and memory come back.

The reviewer's case: after a response, ``Connection: close``, HTTP/1.0 and the keep-alive
timeout were all ignored (Quart-Trio's per-request cancellation landed inside Hypercorn's
connection recycling), so 3,000 answered connections stayed 3,000 open descriptors and a
low ``ulimit -n`` left fresh clients unanswered. Each burst here keeps the client's end of
every socket open, so only the server can bring the count back down.
"""

from __future__ import annotations

import os
import resource
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from ._processes import Service, cli_process

pytestmark = pytest.mark.slow

KEEP_ALIVE = 1.0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def read_response(stream: trio.SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        body += chunk
    return head


async def burst(port: int, count: int, one: Callable[[trio.SocketStream], Awaitable[None]],
                held: list[trio.SocketStream]) -> None:
    """``count`` connections, 100 at a time; their client ends stay open in ``held``."""
    limit = trio.Semaphore(100)

    async def connect() -> None:
        async with limit:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            held.append(stream)
            await one(stream)

    # The caller closes what ``held`` holds, even when a connection here failed.

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(connect)


async def settle(pid: int, baseline: int, slack: int, seconds: float) -> int:
    """Wait (bounded) for the server's descriptors to come back near ``baseline``."""
    with trio.move_on_after(seconds):
        # Another process's descriptors: nothing to wait on but /proc itself.
        while open_fds(pid) > baseline + slack:  # noqa: ASYNC110
            await trio.sleep(0.1)
    return open_fds(pid)


@asynccontextmanager
async def server() -> AsyncIterator[tuple[Service, int]]:
    args = ["serve", "tests.apps.cli_app:app", "--bind", "127.0.0.1:0",
            "--keep-alive", str(KEEP_ALIVE), "--graceful-timeout", "1"]
    async with cli_process(args) as service:
        port = int(service.url.rsplit(":", 1)[1])
        # Warm up (imports, first-request caches) before reading the baseline.
        async with httpx.AsyncClient(base_url=service.url) as client:
            for _ in range(20):
                await client.get("/openapi.json")
        yield service, port


async def test_answered_connections_are_closed() -> None:
    async with server() as (service, port):
        pid = service.process.pid
        baseline = open_fds(pid)
        rss_before = rss_kib(pid)
        held: list[trio.SocketStream] = []

        async def close_after(stream: trio.SocketStream) -> None:
            await stream.send_all(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n"
                                  b"Connection: close\r\n\r\n")
            assert (await read_response(stream)).startswith(b"HTTP/1.1 200")

        async def http10(stream: trio.SocketStream) -> None:
            await stream.send_all(b"GET /openapi.json HTTP/1.0\r\n\r\n")
            assert (await read_response(stream)).startswith(b"HTTP/1.1 200")

        async def keep_alive(stream: trio.SocketStream) -> None:
            await stream.send_all(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await read_response(stream)).startswith(b"HTTP/1.1 200")

        try:
            with trio.fail_after(120):
                await burst(port, 1500, close_after, held)
                await burst(port, 500, http10, held)
                closed_now = await settle(pid, baseline, 10, 10)
                await burst(port, 1000, keep_alive, held)
                after_idle = await settle(pid, baseline, 10, KEEP_ALIVE * 10)
            rss_after = rss_kib(pid)
        finally:
            for stream in held:
                await stream.aclose()
    assert closed_now <= baseline + 10, (baseline, closed_now)
    assert after_idle <= baseline + 10, (baseline, after_idle)
    # 3,000 connections must not leave their buffers behind (the old leak: ~1 MB each).
    assert rss_after - rss_before < 64 * 1024, (rss_before, rss_after)


async def test_slow_bodies_aborted_long_polls_and_late_bodies() -> None:
    async with server() as (service, port):
        pid = service.process.pid
        baseline = open_fds(pid)
        held: list[trio.SocketStream] = []
        async with httpx.AsyncClient(base_url=service.url) as client:
            job = (await client.post("/slow", json=60.0)).json()["id"]

        async def slow_body_then_abort(stream: trio.SocketStream) -> None:
            await stream.send_all(b"POST /slow HTTP/1.1\r\nHost: x\r\n"
                                  b"content-type: application/json\r\ncontent-length: 10\r\n"
                                  b"\r\n1")
            await trio.sleep(0.2)
            await stream.aclose()

        async def long_poll_then_abort(stream: trio.SocketStream) -> None:
            await stream.send_all(f"GET /jobs/{job}?wait=30 HTTP/1.1\r\nHost: x\r\n\r\n"
                                  .encode())
            await trio.sleep(0.2)
            await stream.aclose()

        async def options_with_late_body(stream: trio.SocketStream) -> None:
            # The body arrives after the answer: the connection must still close or go on.
            await stream.send_all(b"OPTIONS /slow HTTP/1.1\r\nHost: x\r\ncontent-length: 4"
                                  b"\r\n\r\n")
            await read_response(stream)
            await trio.sleep(0.05)
            # The server may answer the next request, or close the connection (it cannot
            # tell where the unread body ends); what it must not do is stall.
            try:
                await stream.send_all(b"abcd")
                await stream.send_all(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n"
                                      b"Connection: close\r\n\r\n")
                with trio.fail_after(5):  # it used to stall here
                    answer = await read_response(stream)
            except trio.BrokenResourceError:
                answer = b""
            assert answer == b"" or answer.startswith(b"HTTP/1.1 200"), answer

        try:
            with trio.fail_after(120):
                await burst(port, 500, slow_body_then_abort, held)
                await burst(port, 300, long_poll_then_abort, held)
                await burst(port, 200, options_with_late_body, held)
                after = await settle(pid, baseline, 10, 10)
        finally:
            for stream in held:
                await stream.aclose()
        text = service.text
    assert after <= baseline + 10, (baseline, after)
    assert "Traceback" not in text, text[-3000:]


async def test_low_descriptor_limit_still_serves() -> None:
    """At ``ulimit -n 256``, 600 answered connections later (client ends kept open), a fresh
    client still gets its answer: the server closed what it had answered."""

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    args = ["serve", "tests.apps.cli_app:app", "--bind", "127.0.0.1:0",
            "--keep-alive", str(KEEP_ALIVE)]
    held: list[trio.SocketStream] = []
    async with cli_process(args, preexec_fn=low_limit) as service:
        port = int(service.url.rsplit(":", 1)[1])

        async def close_after(stream: trio.SocketStream) -> None:
            await stream.send_all(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n"
                                  b"Connection: close\r\n\r\n")
            assert (await read_response(stream)).startswith(b"HTTP/1.1 200")

        try:
            with trio.fail_after(60):
                for _ in range(6):
                    await burst(port, 100, close_after, held)
                async with httpx.AsyncClient(base_url=service.url) as client:
                    assert (await client.get("/openapi.json")).status_code == 200
        finally:
            for stream in held:
                await stream.aclose()
        text = service.text
    assert "Too many open files" not in text
