"""Event streams under the CLI: a shutdown ends them at once, not after the graceful
timeout (Hypercorn waits for its connections before the app's drain begins)."""

from __future__ import annotations

import signal

import httpx
import pytest
import trio

from ._processes import cli_process
from ._sse import open_stream

pytestmark = pytest.mark.slow


async def test_sigterm_ends_open_event_streams_at_once() -> None:
    args = ["serve", "tests.apps.cli_app:app", "--bind", "127.0.0.1:0",
            "--graceful-timeout", "60"]
    async with cli_process(args) as service:
        async with httpx.AsyncClient(base_url=service.url) as client:
            location = (await client.post("/slow", json=30.0)).headers["location"]
        with trio.fail_after(20):  # far below the 60 s the server would otherwise wait
            async with open_stream(f"{service.url}{location}") as stream:
                first = await stream.next()
                assert first is not None and first.event == "status"
                service.process.send_signal(signal.SIGTERM)
                await service.wait_for_output(b"received SIGTERM")
                assert await stream.rest() == []  # the stream closed without a terminal event
    assert "Traceback" not in service.text
