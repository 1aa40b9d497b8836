"""A fault-injecting TCP proxy for tests, on loopback only.

    proxy = FaultProxy(("127.0.0.1", redis_port))
    await nursery.start(proxy.run)        # listens on 127.0.0.1:<proxy.port>
    proxy.stall()                         # stop forwarding; sockets stay open
    proxy.cut_all()                       # close every live connection
    proxy.cut_reply_after(10)             # forward 10 more server bytes, then cut that link
    proxy.drop_new = True                 # accept new connections and close them at once

Bounded: at most ``max_connections`` live links; more are refused by closing them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import trio

_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class ProxyStatistics:
    accepted: int  # connections accepted and forwarded
    dropped: int  # connections closed at once (drop_new or over the bound)
    live: int
    cut: int  # connections cut by cut_all / cut_reply_after
    server_bytes: int  # bytes forwarded server -> client


class _Link:
    """One proxied connection; cancelling its scope closes both of its sockets."""

    def __init__(self, cancel_scope: trio.CancelScope) -> None:
        self.cancel_scope = cancel_scope


class FaultProxy:
    def __init__(self, target: tuple[str, int], *, max_connections: int = 64) -> None:
        if not ipaddress.ip_address(target[0]).is_loopback:
            raise ValueError("FaultProxy only forwards to loopback addresses")
        self._target = target
        self._max_connections = max_connections
        self.port = 0
        self.drop_new = False
        self._flowing = trio.Event()
        self._flowing.set()
        self._links: set[_Link] = set()
        self._cut_after: int | None = None
        self._accepted = 0
        self._dropped = 0
        self._cut = 0
        self._server_bytes = 0
        self._changed = trio.Event()

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    # -- faults ------------------------------------------------------------------------------

    def stall(self) -> None:
        """Stop forwarding in both directions; connections stay open, data waits."""
        if self._flowing.is_set():
            self._flowing = trio.Event()

    def resume(self) -> None:
        self._flowing.set()

    def cut_all(self) -> None:
        """Close every live connection, both sides."""
        for link in list(self._links):
            self._cut += 1
            self._cut_link(link)

    def cut_reply_after(self, nbytes: int) -> None:
        """Forward ``nbytes`` more bytes from the server, then cut the link carrying them."""
        self._cut_after = nbytes

    def statistics(self) -> ProxyStatistics:
        return ProxyStatistics(accepted=self._accepted, dropped=self._dropped,
                               live=len(self._links), cut=self._cut,
                               server_bytes=self._server_bytes)

    async def wait_live(self, count: int) -> None:
        """Wait until exactly ``count`` connections are live (bound it with fail_after)."""
        while len(self._links) != count:
            await self._changed.wait()

    # -- running -----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        async with trio.open_nursery() as nursery:
            try:
                self.port = listeners[0].socket.getsockname()[1]
                task_status.started(self.port)
                await trio.serve_listeners(self._serve, listeners, handler_nursery=nursery)
            finally:
                for listener in listeners:
                    listener.socket.close()  # synchronous: we are most likely being cancelled

    async def _serve(self, client: trio.SocketStream) -> None:
        if self.drop_new or len(self._links) >= self._max_connections:
            self._dropped += 1
            await trio.aclose_forcefully(client)
            return
        with trio.CancelScope() as scope:
            link = _Link(scope)
            self._links.add(link)
            self._notify()
            server: trio.SocketStream | None = None
            try:
                server = await trio.open_tcp_stream(*self._target)
                self._accepted += 1
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, client, server, link, False)
                    nursery.start_soon(self._pump, server, client, link, True)
            except OSError:
                pass  # the target is down: the client sees its connection closed
            finally:
                # Synchronous closes: an await here would be interrupted by the cut itself.
                # Both sockets are closed before anyone hears that the link is gone.
                client.socket.close()
                if server is not None:
                    server.socket.close()
                self._links.discard(link)
                self._notify()

    async def _pump(self, source: trio.SocketStream, sink: trio.SocketStream, link: _Link,
                    from_server: bool) -> None:
        try:
            while True:
                await self._flowing.wait()
                data = await source.receive_some(_CHUNK)
                if not data:
                    # Pass the EOF on, so a server closing its side is seen by the client.
                    self._cut_link(link)
                    return
                # A chunk read just before stall() waits here: stalled means nothing moves.
                await self._flowing.wait()
                if from_server and self._cut_after is not None:
                    if len(data) < self._cut_after:
                        self._cut_after -= len(data)
                    else:
                        allowed, self._cut_after = self._cut_after, None
                        if allowed:
                            await sink.send_all(data[:allowed])
                            self._server_bytes += allowed
                        self._cut += 1
                        self._cut_link(link)
                        return
                await sink.send_all(data)
                if from_server:
                    self._server_bytes += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._cut_link(link)

    def _cut_link(self, link: _Link) -> None:
        # Cancelling the link's scope closes both of its sockets (see _serve).
        link.cancel_scope.cancel()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
