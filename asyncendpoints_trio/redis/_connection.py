"""One Redis connection: a trio stream, ``hiredis`` to pack commands and parse replies.

The rule that makes everything above it simple: **a connection that was interrupted is never
used again.** A cancellation, timeout or transport error while a reply is due closes the socket
at once (synchronously, so it also happens while a ``Cancelled`` is on its way out). Otherwise
the late reply would be read as the answer to the next command, and a cancelled ``BLPOP`` would
stay blocked on the server and swallow a later push.

Replies are what hiredis makes of RESP2: ``bytes``, ``int``, ``None``, lists of those, and
``RedisReplyError`` instances for error replies (returned, not raised, so a pipeline can report
each command's outcome in place).
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final, TypeAlias, cast

import hiredis
import trio

from .._errors import (
    ConfigurationError,
    RedisConnectionError,
    RedisReplyError,
    RedisTimeoutError,
)
from ._url import RedisSettings

Arg: TypeAlias = str | bytes | int | float
Command: TypeAlias = Sequence[Arg]

# Returned by ``Connection.receive`` when nothing arrived in time.
NO_REPLY: Final = cast(Any, object())
# hiredis answers ``gets()`` with this while a reply is incomplete. Its default, ``False``, could
# be mistaken for a reply by a careless ``if not reply``.
_NEED_DATA: Final = object()
_RECEIVE_SIZE: Final = 64 * 1024
# Large requests go out in pieces, each under its own write deadline.
_SEND_CHUNK: Final = 256 * 1024

# Everything the transport can throw at us; translated to RedisConnectionError at this boundary.
# ssl.SSLError is an OSError; trio wraps the SSL errors it sees in BrokenResourceError.
_TRANSPORT_ERRORS: Final = (
    OSError, hiredis.ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError)


def _pack(command: Command) -> bytes:
    # hiredis wants a tuple exactly (and its stub types it as a 1-tuple).
    packed: bytes = hiredis.pack_command(cast(Any, tuple(command)))
    return packed


def make_ssl_context(settings: RedisSettings) -> ssl.SSLContext | None:
    """The TLS context for ``settings`` (None without TLS). Build it once: it reads CA files."""
    if not settings.tls:
        return None
    if settings.ssl_context is not None:
        return settings.ssl_context
    try:
        return ssl.create_default_context(cafile=settings.tls_ca_file)
    except (OSError, ssl.SSLError) as exc:  # a missing or unreadable CA file
        raise ConfigurationError(f"cannot load the TLS CA file {settings.tls_ca_file!r}: "
                                 f"{exc}") from exc


class Connection:
    """A single connection. Not for concurrent use: the pool hands it to one task at a time."""

    __slots__ = ("_address", "_closed", "_read_timeout", "_reader", "_stream", "_write_timeout",
                 "generation")

    def __init__(self, stream: trio.abc.Stream, settings: RedisSettings) -> None:
        self._stream = stream
        self._reader = hiredis.Reader(replyError=RedisReplyError, notEnoughData=_NEED_DATA)
        self._address = settings.address
        self._read_timeout = settings.read_timeout
        self._write_timeout = settings.write_timeout
        self._closed = False
        self.generation = 0  # set by the pool: connections of an older generation are dropped

    @property
    def closed(self) -> bool:
        return self._closed

    # -- request/reply -----------------------------------------------------------------

    async def execute(self, *args: Arg) -> Any:
        """Send one command and return its reply; an error reply raises ``RedisReplyError``."""
        (reply,) = await self.request((args,), read_timeout=self._read_timeout)
        if isinstance(reply, RedisReplyError):
            raise reply
        return reply

    async def pipeline(self, commands: Sequence[Command]) -> list[Any]:
        """Send all commands in one write; return their replies, error replies in place."""
        return await self.request(commands, read_timeout=self._read_timeout)

    async def request(self, commands: Sequence[Command], *,
                      read_timeout: float | None) -> list[Any]:
        """Write ``commands`` at once, read one reply each.

        ``write_timeout`` bounds each stall while the request goes out (a large request that
        keeps moving is healthy), ``read_timeout`` each silence while replies are due (None:
        wait forever, for blocking commands without a server-side timeout). On any
        interruption the connection is closed before the exception leaves.
        """
        if self._closed:
            raise RedisConnectionError(f"{self._address}: connection is closed")
        payload = b"".join([_pack(command) for command in commands])
        phase = ["write"]
        with self._mapped(phase), trio.CancelScope() as scope:
            await self._send_all(scope, payload)
            phase[0] = "read"
            replies = []
            for _ in range(len(commands)):
                replies.append(await self._read_reply(scope, read_timeout))
            return replies
        # Only our own deadline gets here. The reply may still come: never reuse this socket.
        self.abort()
        raise RedisTimeoutError(f"{self._address}: {phase[0]} timed out")

    async def _send_all(self, scope: trio.CancelScope, payload: bytes) -> None:
        if len(payload) <= _SEND_CHUNK:
            scope.deadline = trio.current_time() + self._write_timeout
            await self._stream.send_all(payload)
            return
        view = memoryview(payload)
        for start in range(0, len(view), _SEND_CHUNK):
            scope.deadline = trio.current_time() + self._write_timeout
            await self._stream.send_all(view[start:start + _SEND_CHUNK])

    @contextmanager
    def _mapped(self, phase: list[str]) -> Iterator[None]:
        """The one place transport errors become ours: whatever interrupts a request or a
        push-stream read closes the link first (its state is unknown), then leaves as
        ``RedisConnectionError`` (transport) or as itself (cancellation, our own errors)."""
        try:
            yield
        except _TRANSPORT_ERRORS as exc:
            self.abort()
            raise RedisConnectionError(f"{self._address}: {phase[0]} failed: {exc!r}") from exc
        except BaseException:
            self.abort()
            raise

    async def _read_reply(self, scope: trio.CancelScope, read_timeout: float | None) -> Any:
        reader = self._reader
        while True:
            reply = reader.gets()
            if reply is not _NEED_DATA:
                return reply
            # A deadline per silence, not per pipeline: a long pipeline that keeps streaming
            # replies is healthy, a server that says nothing for read_timeout is not.
            scope.deadline = (
                math.inf if read_timeout is None else trio.current_time() + read_timeout)
            data = await self._stream.receive_some(_RECEIVE_SIZE)
            if not data:
                raise RedisConnectionError(f"{self._address}: server closed the connection")
            reader.feed(cast(bytes, data))  # any buffer will do; the stub says bytes

    # -- push streams (pub/sub) ----------------------------------------------------------

    async def send(self, commands: Sequence[Command]) -> None:
        """Write commands without reading replies (pub/sub). Interrupted: the link is closed."""
        if self._closed:
            raise RedisConnectionError(f"{self._address}: connection is closed")
        payload = b"".join([_pack(command) for command in commands])
        with self._mapped(["write"]), trio.CancelScope() as scope:
            await self._send_all(scope, payload)
            return
        self.abort()
        raise RedisTimeoutError(f"{self._address}: write timed out")

    async def receive(self, timeout: float) -> Any:
        """The next reply the server pushes, or ``NO_REPLY`` if none completed within timeout.

        Unlike ``request`` this may be cancelled without closing the link: no reply is owed
        to anyone, received bytes go straight into the parser (no checkpoint in between), and
        neither trio's SocketStream nor SSLStream loses data when a receive is cancelled.
        """
        if self._closed:
            raise RedisConnectionError(f"{self._address}: connection is closed")
        await trio.lowlevel.checkpoint_if_cancelled()
        reply = self._reader.gets()
        if reply is not _NEED_DATA:
            # Taken out of the parser already: yield, but never drop it to a cancellation.
            await trio.lowlevel.cancel_shielded_checkpoint()
            return reply
        try:
            with trio.move_on_after(timeout):
                while True:
                    data = await self._stream.receive_some(_RECEIVE_SIZE)
                    if not data:
                        raise RedisConnectionError(
                            f"{self._address}: server closed the connection")
                    self._reader.feed(cast(bytes, data))
                    reply = self._reader.gets()
                    if reply is not _NEED_DATA:
                        return reply
        except _TRANSPORT_ERRORS as exc:
            self.abort()
            raise RedisConnectionError(f"{self._address}: read failed: {exc!r}") from exc
        except RedisConnectionError:
            self.abort()
            raise
        # A cancellation here is not an interruption: nothing was owed, nothing is lost.
        return NO_REPLY

    # -- lifetime -----------------------------------------------------------------------

    def is_stale(self) -> bool:
        """True if an idle connection has something to read: EOF (server gone) or junk.

        An idle RESP2 connection is owed nothing, so either way it is unusable. Checked with a
        non-blocking poll so a pool notices a restarted server before sending a command into
        the dead socket. TLS connections are not checked: a TLS 1.3 server sends session
        tickets after the handshake, which look like data to poll().
        """
        if self._closed:
            return True
        return isinstance(self._stream, trio.SocketStream) and self._stream.socket.is_readable()

    def abort(self) -> None:
        """Close now, synchronously; safe to call more than once and while cancelled."""
        if self._closed:
            return
        self._closed = True
        _close_now(self._stream)

    async def aclose(self) -> None:
        self.abort()
        await trio.lowlevel.checkpoint()


async def open_connection(settings: RedisSettings,
                          ssl_context: ssl.SSLContext | None = None) -> Connection:
    """Connect, finish TLS, then AUTH and SELECT; all within ``settings.connect_timeout``."""
    stream: trio.abc.Stream | None = None
    try:
        with trio.move_on_after(settings.connect_timeout):
            if settings.unix_socket is not None:
                stream = await trio.open_unix_socket(settings.unix_socket)
            elif settings.tls:
                if ssl_context is None:
                    ssl_context = make_ssl_context(settings)
                tls_stream = await trio.open_ssl_over_tcp_stream(
                    settings.host, settings.port, ssl_context=ssl_context)
                stream = tls_stream
                # trio would do the handshake lazily on first use; do it under connect_timeout
                # so certificate errors surface here, as connect errors.
                await tls_stream.do_handshake()
            else:
                stream = await trio.open_tcp_stream(settings.host, settings.port)
            connection = Connection(stream, settings)
            await _handshake(connection, settings)
            return connection
    except _TRANSPORT_ERRORS as exc:
        _close_now(stream)
        raise RedisConnectionError(f"{settings.address}: connect failed: {exc!r}") from exc
    except BaseException:
        _close_now(stream)
        raise
    _close_now(stream)
    raise RedisTimeoutError(f"{settings.address}: connect timed out "
                            f"after {settings.connect_timeout}s")


async def _handshake(connection: Connection, settings: RedisSettings) -> None:
    commands: list[Command] = []
    if settings.password is not None:
        if settings.username is not None:
            commands.append(("AUTH", settings.username, settings.password))
        else:
            commands.append(("AUTH", settings.password))
    if settings.db:
        commands.append(("SELECT", settings.db))
    if not commands:
        # Always hear the server answer before calling the connection open: a server that
        # accepts and hangs up (maxclients, a dying proxy) must count as a failed connect, or
        # the client would never back off from it.
        commands.append(("PING",))
    for reply in await connection.pipeline(commands):
        if isinstance(reply, RedisReplyError):
            connection.abort()
            # A wrong password is a reason the store is unavailable, like a refused connect;
            # the reply (WRONGPASS, NOAUTH, ERR invalid DB index) stays readable as __cause__.
            raise RedisConnectionError(f"{settings.address}: login failed: {reply}") from reply


def _close_now(stream: trio.abc.Stream | None) -> None:
    # Closing the socket itself is synchronous, so it cannot be interrupted by the very
    # cancellation it is cleaning up after. No TLS close_notify: we are abandoning the link.
    if isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        stream.socket.close()
