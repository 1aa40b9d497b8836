"""A small Server-Sent Events client for tests, on a raw Trio socket.

Raw, not httpx: a test must be able to leave a stream in the middle (that is the case it
tests), and an httpx stream left early leaves its async generators to the garbage
collector, which warnings-as-errors turns into failures. Light enough for thousands of
streams in one process, too. HTTP/1.1, chunked transfer coding, as Hypercorn streams.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
import trio


@dataclass
class Event:
    id: int | None
    event: str | None
    data: Any
    retry: int | None = None


@dataclass
class SseStream:
    """One open stream: ``status``/``headers`` of the answer, then ``next()`` per event."""

    socket: trio.SocketStream
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""  # a non-streamed answer's body
    comments: list[str] = field(default_factory=list)
    closed: bool = False
    _raw: bytearray = field(default_factory=bytearray)  # received, not yet de-chunked
    _text: bytearray = field(default_factory=bytearray)  # de-chunked, not yet parsed

    async def _fill(self) -> bool:
        chunk = await self.socket.receive_some(65536)
        if not chunk:
            return False
        self._raw += chunk
        return True

    async def _head(self) -> None:
        while b"\r\n\r\n" not in self._raw:
            if not await self._fill():
                raise AssertionError("no answer")
        head, _, rest = bytes(self._raw).partition(b"\r\n\r\n")
        self._raw = bytearray(rest)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.lower(): v.strip() for k, _, v in
                        (line.partition(":") for line in lines[1:])}
        if "content-length" in self.headers:
            length = int(self.headers["content-length"])
            while len(self._raw) < length:
                if not await self._fill():
                    break
            self.body = bytes(self._raw[:length])
            self.closed = True

    def _dechunk(self) -> None:
        while True:
            size_end = self._raw.find(b"\r\n")
            if size_end < 0:
                return
            size = int(self._raw[:size_end].split(b";")[0], 16)
            if size == 0:
                self.closed = True
                return
            if len(self._raw) < size_end + 2 + size + 2:
                return
            self._text += self._raw[size_end + 2:size_end + 2 + size]
            del self._raw[:size_end + 2 + size + 2]

    def _parse_one(self) -> Event | None:
        while True:
            end = self._text.find(b"\n\n")
            if end < 0:
                return None
            block = bytes(self._text[:end]).decode()
            del self._text[:end + 2]
            fields: dict[str, str] = {}
            for line in block.split("\n"):
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                    continue
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
            if "data" in fields or "event" in fields:
                return Event(int(fields["id"]) if "id" in fields else None, fields.get("event"),
                             orjson.loads(fields["data"]) if "data" in fields else None,
                             int(fields["retry"]) if "retry" in fields else None)

    async def next(self) -> Event | None:
        """The next event; ``None`` once the server ended the stream."""
        while True:
            self._dechunk()
            event = self._parse_one()
            if event is not None:
                return event
            if self.closed or not await self._fill():
                self.closed = True
                return None

    async def rest(self) -> list[Event]:
        """Every event up to the end of the stream."""
        found = []
        while (event := await self.next()) is not None:
            found.append(event)
        return found

    async def comment(self) -> str:
        """Wait for the next comment line (a keep-alive)."""
        seen = len(self.comments)
        while len(self.comments) == seen:
            self._dechunk()
            if self._parse_one() is not None:
                continue
            if self.closed or not await self._fill():
                raise AssertionError("the stream closed")
        return self.comments[seen]


@asynccontextmanager
async def open_stream(url: str, headers: Mapping[str, str] | None = None,
                      accept: str = "text/event-stream") -> AsyncIterator[SseStream]:
    """``GET url`` asking for an event stream; the connection closes on leaving."""
    parts = urlsplit(url)
    socket = await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 80)
    try:
        lines = [f"GET {parts.path}{'?' + parts.query if parts.query else ''} HTTP/1.1",
                 f"Host: {parts.netloc}", f"Accept: {accept}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        await socket.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
        stream = SseStream(socket)
        await stream._head()
        yield stream
    finally:
        await socket.aclose()
