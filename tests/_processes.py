"""Start our CLI as a real OS process, read what it logs, find the port it bound."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
_URL = re.compile(rb"Running on (http://127\.0\.0\.1:\d+)")


@dataclass
class Service:
    process: trio.Process
    output: bytearray = field(default_factory=bytearray)
    _changed: trio.Event = field(default_factory=trio.Event)
    _closed: bool = False

    @property
    def url(self) -> str:
        match = _URL.search(self.output)
        assert match, self.text
        return match.group(1).decode()

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace")

    async def wait_for_output(self, marker: bytes | re.Pattern[bytes]) -> None:
        """Until the process has logged ``marker`` (the caller bounds the wait)."""
        while not (marker.search(self.output) if isinstance(marker, re.Pattern)
                   else marker in self.output):
            if self._closed:
                raise AssertionError(f"process ended without logging {marker!r}:\n{self.text}")
            await self._changed.wait()

    async def pump(self) -> None:
        assert self.process.stderr is not None
        async for chunk in self.process.stderr:
            self.output += chunk
            self._changed.set()
            self._changed = trio.Event()
        self._closed = True
        self._changed.set()


@asynccontextmanager
async def cli_process(
    args: Sequence[str], *, env: dict[str, str] | None = None,
    ready: bytes | re.Pattern[bytes] | None = _URL,
    preexec_fn: Callable[[], None] | None = None,
) -> AsyncIterator[Service]:
    """Run ``python -m asyncendpoints_trio ARGS``; kill it at the end if still running."""
    # REDIS_URL would switch the CLI to Redis: tests choose the store explicitly.
    inherited = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    full_env = {**inherited, "PYTHONUNBUFFERED": "1", **(env or {})}
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "asyncendpoints_trio", *args], cwd=ROOT, env=full_env,
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        preexec_fn=preexec_fn)
    service = Service(process)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(service.pump)
        try:
            if ready is not None:
                with trio.fail_after(30):
                    await service.wait_for_output(ready)
            yield service
        finally:
            if process.returncode is None:
                process.kill()
            with trio.move_on_after(10):
                await process.wait()
            nursery.cancel_scope.cancel()
