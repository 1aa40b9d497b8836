"""``RedisClient``: a bounded connection pool, Lua scripts, blocking calls and pub/sub.

Cancellation: a call that is cancelled or cut off always gives its pool slot back (the release is
synchronous, in a ``finally``), and the connection it was using is closed, never reused (see
``_connection``). For blocking commands this is the whole point: closing the socket is what
removes the waiting ``BLPOP`` from the server, so no abandoned pop can take a later push.

Reconnecting: a connection that fails mid-command is dropped, and so are all idle connections
(they most likely point at the same dead or restarted server); connections busy at that moment
are dropped when they come back. An idle connection the server hung up on is noticed before use
and replaced. The next call connects at once. If *that* connect fails, the client backs off:
for a pause of ``backoff_initial`` doubling per failed connect up to ``backoff_max`` (times a
random 0.5-1.0, so a fleet does not reconnect in lockstep), every call that needs a new
connection fails fast with ``RedisConnectionError`` instead of waiting on another connect
timeout. We chose failing fast over queueing callers because the callers are HTTP routes and
supervised workers: a route should answer 503 with Retry-After at once, and a supervisor
already retries with its own backoff. Commands are never retried by the client: it cannot know
whether they ran.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NoReturn

import trio

from .._backoff import backoff_delay
from .._errors import (
    PoolTimeout,
    RedisConnectionError,
    RedisReplyError,
    RedisTimeoutError,
    ReplicationTimeout,
)
from ._api import ReplicaWait
from ._connection import NO_REPLY, Arg, Command, Connection, make_ssl_context, open_connection
from ._slots import key_slot
from ._url import RedisSettings

log = logging.getLogger("asyncendpoints_trio.redis")


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script, known to Redis by the SHA1 of its source (computed here, not asked for)."""

    source: str
    sha1: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()
        object.__setattr__(self, "sha1", digest)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Script:
        with open(path, encoding="utf-8") as file:
            return cls(file.read())

    def command(self, keys: Sequence[Arg] = (), args: Sequence[Arg] = ()) -> Command:
        """The ``EVALSHA`` command that runs this script."""
        return ("EVALSHA", self.sha1, len(keys), *keys, *args)


ScriptCall = tuple[Script, Sequence[Arg], Sequence[Arg]]  # (script, keys, args)


def _wait_commands(wait: ReplicaWait | None) -> list[Command]:
    if wait is None or wait.replicas <= 0:
        return []
    return [("WAIT", wait.replicas, max(1, round(wait.timeout * 1000)))]


def check_replicas(wait: ReplicaWait | None, acks: Sequence[Any], reply: Any) -> None:
    """Raise ``ReplicationTimeout`` unless every ``WAIT`` reply in ``acks`` reached
    ``wait.replicas``; ``reply`` is what the writes answered."""
    if wait is None or wait.replicas <= 0:
        return
    for ack in acks:
        if isinstance(ack, RedisReplyError):
            raise ReplicationTimeout(f"WAIT failed: {ack}", acknowledged=0, reply=reply)
        if int(ack) < wait.replicas:
            raise ReplicationTimeout(
                f"{int(ack)} of {wait.replicas} replicas acknowledged the write within "
                f"{wait.timeout}s", acknowledged=int(ack), reply=reply)


@dataclass(frozen=True, slots=True)
class RedisStatistics:
    """A snapshot of a client's pool and counters."""

    max_connections: int
    connections_open: int  # pooled connections, idle + in use (pub/sub not included)
    connections_idle: int
    connections_in_use: int
    slots_available: int  # max_connections minus calls holding or connecting a connection
    tasks_waiting: int  # calls waiting for a free slot
    subscriptions: int  # open pub/sub connections
    commands_sent: int
    connects: int  # connections opened, pooled or pub/sub
    reconnects: int  # connections opened after a connection failure: recoveries
    connection_errors: int  # failed connects and failed calls, timeouts included
    timeouts: int
    reply_errors: int
    consecutive_connect_failures: int
    next_connect_at: float | None  # trio clock; before it, calls needing a connect fail fast


class RedisClient:
    """A pool of up to ``settings.max_connections`` connections; connects lazily.

    Usable as ``async with RedisClient(settings) as redis:``, or call ``aclose()``.
    """

    def __init__(self, settings: RedisSettings | None = None) -> None:
        self._settings = settings if settings is not None else RedisSettings()
        self._ssl_context = make_ssl_context(self._settings)
        self._slots = trio.Semaphore(self._settings.max_connections)
        self._idle: list[Connection] = []  # a stack: the warmest connection is reused first
        self._generation = 0
        self._closed = False
        self._open = 0
        self._in_use = 0
        self._subscriptions = 0
        self._commands_sent = 0
        self._connects = 0
        self._reconnects = 0
        self._connection_errors = 0
        self._timeouts = 0
        self._reply_errors = 0
        self._link_lost = False
        self._failures = 0
        self._retry_at = -math.inf
        self._last_error = ""
        self._outage_since = 0.0

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> RedisClient:
        return cls(RedisSettings.from_url(url, **overrides))

    @property
    def settings(self) -> RedisSettings:
        return self._settings

    @property
    def clustered(self) -> bool:
        """One server holds every slot: plain ``PUBLISH`` reaches every subscriber."""
        return False

    def sibling(self, *, max_connections: int) -> RedisClient:
        return RedisClient(dataclasses.replace(self._settings, max_connections=max_connections))

    # -- commands ------------------------------------------------------------------------

    async def execute(self, *args: Arg) -> Any:
        """Run one command; an error reply raises ``RedisReplyError``."""
        (reply,) = await self._run((args,), self._settings.read_timeout)
        return self._raise_if_error(reply)

    async def pipeline(self, commands: Sequence[Command]) -> list[Any]:
        """Run commands in one round trip; error replies come back in place, as exceptions.

        A connection failure raises: then it is unknown which of the commands ran.
        """
        if not commands:
            await trio.lowlevel.checkpoint()
            return []
        replies = await self._run(commands, self._settings.read_timeout)
        self._reply_errors += sum(isinstance(reply, RedisReplyError) for reply in replies)
        return replies

    async def blocking(self, *args: Arg, timeout: float) -> Any:
        """Run a blocking command whose last argument is its timeout: BLPOP, BRPOP, BLMOVE,
        BRPOPLPUSH, BZPOPMIN, BZPOPMAX. ``timeout`` (seconds; 0: forever) is appended.

        The reply is awaited for ``timeout + read_timeout``. It holds a pool slot meanwhile.
        Cancelling closes the connection, which unblocks the command on the server. An item
        the server had already popped and sent when the cancellation struck is lost with the
        reply, as with any client; BLMOVE into a processing list avoids that.
        """
        if not 0 <= timeout < math.inf:
            raise ValueError(f"timeout must be a finite number >= 0, not {timeout}")
        read_timeout = None if timeout == 0 else timeout + self._settings.read_timeout
        # Redis takes fractional seconds ("0.25") since 6.0; avoid "1e-05" and trailing zeros.
        server_timeout = f"{timeout:.6f}".rstrip("0").rstrip(".")
        (reply,) = await self._run(((*args, server_timeout),), read_timeout)
        return self._raise_if_error(reply)

    async def blocking_after(self, prelude: Sequence[Command], *args: Arg,
                             timeout: float) -> list[Any]:
        """``prelude`` then a blocking command, written at once on one connection (one
        round trip): e.g. a registration the blocking pop must not race. Replies in order,
        errors of ``prelude`` in place; the blocking command's own error raises. Timeout and
        cancellation as in ``blocking``."""
        if not 0 <= timeout < math.inf:
            raise ValueError(f"timeout must be a finite number >= 0, not {timeout}")
        read_timeout = None if timeout == 0 else timeout + self._settings.read_timeout
        server_timeout = f"{timeout:.6f}".rstrip("0").rstrip(".")
        replies = await self._run((*prelude, (*args, server_timeout)), read_timeout)
        for reply in replies[:-1]:
            if isinstance(reply, RedisReplyError):
                self._reply_errors += 1
        replies[-1] = self._raise_if_error(replies[-1])
        return replies

    async def evalsha(self, script: Script, keys: Sequence[Arg] = (),
                      args: Sequence[Arg] = (), *, wait: ReplicaWait | None = None) -> Any:
        """Run ``script`` by its SHA1; on NOSCRIPT load it and run it again. With ``wait``,
        a ``WAIT`` follows on the same connection in the same round trip."""
        command = script.command(keys, args)
        tail = _wait_commands(wait)
        reply, *acks = await self._run((command, *tail), self._wait_timeout(wait))
        if isinstance(reply, RedisReplyError) and reply.kind == "NOSCRIPT":
            # Load and replay in one round trip on one connection: the load comes first.
            loaded, reply, *acks = await self._run(
                (("SCRIPT", "LOAD", script.source), command, *tail), self._wait_timeout(wait))
            self._raise_if_error(loaded)
        reply = self._raise_if_error(reply)
        check_replicas(wait, acks, reply)
        return reply

    async def evalsha_many(self, calls: Sequence[ScriptCall], *,
                           wait: ReplicaWait | None = None) -> list[Any]:
        """Run many scripts in one pipeline; replies (errors in place) in call order.

        Calls refused with NOSCRIPT are replayed, in their order, after loading their scripts
        (a second round trip). So a replayed call runs after the calls that did not need it;
        make calls in one batch independent of each other's order, or use one script.
        With ``wait``, one ``WAIT`` ends each round trip.
        """
        commands = [script.command(keys, args) for script, keys, args in calls]
        tail = _wait_commands(wait)
        if tail:
            *replies, ack = await self._run((*commands, *tail), self._wait_timeout(wait))
            self._reply_errors += sum(isinstance(reply, RedisReplyError) for reply in replies)
            replies = await self._replay_missing(calls, commands, replies, wait)
            check_replicas(wait, [ack], replies)
            return replies
        replies = await self.pipeline(commands)
        return await self._replay_missing(calls, commands, replies, None)

    def _wait_timeout(self, wait: ReplicaWait | None) -> float:
        return self._settings.read_timeout + (0.0 if wait is None else wait.timeout)

    async def _replay_missing(self, calls: Sequence[ScriptCall], commands: list[Command],
                              replies: list[Any], wait: ReplicaWait | None) -> list[Any]:
        missing = [index for index, reply in enumerate(replies)
                   if isinstance(reply, RedisReplyError) and reply.kind == "NOSCRIPT"]
        if not missing:
            return replies
        self._reply_errors -= len(missing)  # they are retried, not reported
        scripts = list(dict.fromkeys(calls[index][0] for index in missing))
        retry: list[Command] = [("SCRIPT", "LOAD", script.source) for script in scripts]
        retry += [commands[index] for index in missing]
        retry += _wait_commands(wait)
        again = await self.pipeline(retry)
        acks = again[len(retry) - len(_wait_commands(wait)):]
        again = again[:len(again) - len(acks)]
        for loaded in again[:len(scripts)]:
            self._raise_if_error(loaded)
        for index, reply in zip(missing, again[len(scripts):], strict=True):
            replies[index] = reply
        check_replicas(wait, acks, replies)
        return replies

    def _raise_if_error(self, reply: Any) -> Any:
        if isinstance(reply, RedisReplyError):
            self._reply_errors += 1
            raise reply
        return reply

    # -- pool ------------------------------------------------------------------------------

    async def _run(self, commands: Sequence[Command], read_timeout: float | None) -> list[Any]:
        connection = await self._acquire()
        try:
            self._commands_sent += len(commands)
            return await connection.request(commands, read_timeout=read_timeout)
        except RedisConnectionError as exc:
            self._link_failed(exc)
            raise
        finally:
            self._release(connection)

    async def _acquire(self) -> Connection:
        if self._closed:
            closed = RedisConnectionError("the Redis client is closed")
            closed.sent = False
            raise closed
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            try:
                with trio.fail_after(self._settings.acquire_timeout):
                    await self._slots.acquire()
            except trio.TooSlowError:
                raise PoolTimeout(
                    f"no Redis connection became free within {self._settings.acquire_timeout}s "
                    f"(max_connections={self._settings.max_connections})") from None
        # The slot is ours now: every way out below either hands over a connection or gives
        # the slot back. Nothing here can leave it taken.
        try:
            if self._closed:
                raise RedisConnectionError("the Redis client is closed")
            connection = self._take_idle()
            if connection is None:
                connection = await self._connect()
                self._open += 1
        except RedisConnectionError as exc:
            exc.sent = False  # nothing was written: a routing client may go elsewhere
            self._slots.release()
            raise
        except BaseException:
            self._slots.release()
            raise
        self._in_use += 1
        return connection

    def _take_idle(self) -> Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.is_stale():
                return connection
            self._link_lost = True  # the server hung up on an idle connection
            connection.abort()
            self._open -= 1
        return None

    def _release(self, connection: Connection) -> None:
        # Synchronous on purpose: a cancellation cannot interrupt it halfway.
        self._in_use -= 1
        if connection.closed or self._closed or connection.generation != self._generation:
            connection.abort()
            self._open -= 1
        else:
            self._idle.append(connection)
        self._slots.release()

    async def _connect(self) -> Connection:
        delay = self._retry_at - trio.current_time()
        if delay > 0:
            await trio.lowlevel.checkpoint()
            raise RedisConnectionError(
                f"{self._settings.address}: unreachable, next connect in {delay:.2f}s "
                f"(last error: {self._last_error})")
        try:
            connection = await open_connection(self._settings, self._ssl_context)
        except RedisConnectionError as exc:
            self._connection_errors += 1
            self._timeouts += isinstance(exc, RedisTimeoutError)
            if not self._failures:
                # One line per outage, and one when it ends: not one per retry. Before the
                # first connect it is no outage yet: whoever started us reports that.
                self._outage_since = trio.current_time()
                log.log(logging.WARNING if self._connects else logging.DEBUG,
                        "Redis at %s is unreachable (%s); calls fail fast, and connects "
                            "are retried with backoff (at most %.1fs apart)",
                            self._settings.address, exc, self._settings.backoff_max)
            self._failures += 1
            backoff = backoff_delay(self._failures, self._settings.backoff_max,
                                    base=self._settings.backoff_initial)
            self._retry_at = trio.current_time() + backoff
            self._last_error = str(exc)
            raise
        self._connects += 1
        if self._failures:
            log.log(logging.WARNING if self._connects else logging.INFO,
                    "Redis at %s is reachable again, after %.1fs", self._settings.address,
                    trio.current_time() - self._outage_since)
        if self._link_lost or self._failures:
            self._reconnects += 1
        self._link_lost = False
        self._failures = 0
        self._retry_at = -math.inf
        connection.generation = self._generation
        return connection

    def _link_failed(self, exc: RedisConnectionError) -> None:
        self._connection_errors += 1
        self._timeouts += isinstance(exc, RedisTimeoutError)
        self._link_lost = True
        # Connections from before the failure likely share its fate (a restarted or stalled
        # server): drop the idle ones now, and the busy ones when they come back, rather than
        # let each of them fail a caller.
        self._generation += 1
        while self._idle:
            self._idle.pop().abort()
            self._open -= 1

    # -- pub/sub ---------------------------------------------------------------------------

    @asynccontextmanager
    async def subscribe(self, *channels: str | bytes,
                        sharded: bool = False) -> AsyncIterator[Subscription]:
        """Subscribe on a dedicated connection (outside the pool); iterate for messages.

        When the context is entered the subscription is active on the server. A cut or silent
        link raises ``RedisConnectionError`` from the iteration: subscribe again.
        ``sharded``: ``SSUBSCRIBE`` (Redis 7.0+), for channels that ``SPUBLISH`` reaches.
        """
        if not channels:
            raise ValueError("subscribe needs at least one channel")
        if self._closed:
            raise RedisConnectionError("the Redis client is closed")
        connection = await self._connect()
        self._subscriptions += 1
        try:
            subscription = Subscription(connection, channels, self._settings, self._link_failed,
                                        sharded=sharded)
            await subscription._start()
            yield subscription
        finally:
            self._subscriptions -= 1
            connection.abort()

    # -- lifetime --------------------------------------------------------------------------

    def statistics(self) -> RedisStatistics:
        return RedisStatistics(
            max_connections=self._settings.max_connections,
            connections_open=self._open,
            connections_idle=len(self._idle),
            connections_in_use=self._in_use,
            slots_available=self._slots.value,
            tasks_waiting=self._slots.statistics().tasks_waiting,
            subscriptions=self._subscriptions,
            commands_sent=self._commands_sent,
            connects=self._connects,
            reconnects=self._reconnects,
            connection_errors=self._connection_errors,
            timeouts=self._timeouts,
            reply_errors=self._reply_errors,
            consecutive_connect_failures=self._failures,
            next_connect_at=self._retry_at if self._retry_at > trio.current_time() else None,
        )

    async def aclose(self) -> None:
        """Close idle connections now; calls still running close theirs when they finish."""
        self._closed = True
        while self._idle:
            self._idle.pop().abort()
            self._open -= 1
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> RedisClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()


class Subscription:
    """Messages of a subscription: ``async for channel, data in subscription``.

    Silence is checked: after ``health_check_interval`` without traffic a PING is sent, and
    no answer within ``read_timeout`` raises ``RedisTimeoutError``.
    """

    def __init__(self, connection: Connection, channels: Sequence[str | bytes],
                 settings: RedisSettings,
                 on_failure: Callable[[RedisConnectionError], None], *,
                 sharded: bool = False) -> None:
        self._connection = connection
        self._sharded = sharded
        self._channels = tuple(channels)
        self._idle_timeout = settings.health_check_interval
        self._ping_timeout = settings.read_timeout
        self._on_failure = on_failure
        self._pending: deque[tuple[bytes, bytes]] = deque()
        self._ping_sent = False

    @property
    def channels(self) -> tuple[str | bytes, ...]:
        return self._channels

    async def _start(self) -> None:
        if self._sharded:
            # One SSUBSCRIBE per hash slot: a cluster node refuses one naming channels of
            # several slots (CROSSSLOT), even when it serves all of them.
            by_slot: dict[int, list[str | bytes]] = {}
            for channel in self._channels:
                by_slot.setdefault(key_slot(channel), []).append(channel)
            await self._send(*(("SSUBSCRIBE", *group) for group in by_slot.values()))
        else:
            await self._send(("SUBSCRIBE", *self._channels))
        confirmed = 0
        while confirmed < len(self._channels):
            reply = await self._receive(self._ping_timeout)
            if reply is NO_REPLY:
                self._fail(RedisTimeoutError("no answer to SUBSCRIBE"))
            if isinstance(reply, RedisReplyError):
                raise reply  # e.g. NOPERM; the context manager closes the connection
            if reply[0] in (b"subscribe", b"ssubscribe"):
                confirmed += 1
            elif reply[0] in (b"message", b"smessage"):
                # A message on a channel confirmed earlier in this same SUBSCRIBE.
                self._pending.append((reply[1], reply[2]))

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> tuple[bytes, bytes]:
        if self._pending:
            await trio.lowlevel.checkpoint()
            return self._pending.popleft()
        while True:
            wait = self._ping_timeout if self._ping_sent else self._idle_timeout
            reply = await self._receive(wait)
            if reply is NO_REPLY:
                if self._ping_sent:
                    self._fail(RedisTimeoutError(
                        f"no answer to PING within {self._ping_timeout}s"))
                await self._send(("PING",))
                self._ping_sent = True
                continue
            self._ping_sent = False  # any traffic proves the link is alive
            if isinstance(reply, RedisReplyError):
                raise reply
            if reply[0] in (b"message", b"smessage"):
                return reply[1], reply[2]
            if reply[0] == b"sunsubscribe":
                # The server dropped a sharded subscription: its slot moved (resharding or
                # failover). Subscribing again finds the slot's new home.
                self._fail(RedisConnectionError(
                    f"the server ended the subscription to {reply[1]!r} (slot moved)"))
            # Otherwise a subscribe confirmation or a "pong": nothing for the caller.

    async def _send(self, *commands: Command) -> None:
        try:
            await self._connection.send(commands)
        except RedisConnectionError as exc:
            self._on_failure(exc)
            raise

    async def _receive(self, timeout: float) -> Any:
        try:
            return await self._connection.receive(timeout)
        except RedisConnectionError as exc:
            self._on_failure(exc)
            raise

    def _fail(self, exc: RedisConnectionError) -> NoReturn:
        self._connection.abort()
        self._on_failure(exc)
        raise exc
