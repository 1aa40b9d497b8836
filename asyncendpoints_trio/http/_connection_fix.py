"""Keep Quart-Trio's per-request cancellation out of Hypercorn's connection handling.

Hypercorn's trio worker does its connection bookkeeping inside the app's final ``send()``,
in the app's own task: closing the socket for ``Connection: close`` and HTTP/1.0, or
starting the keep-alive idle timer. During that same call it delivers ``http.disconnect``
to the app, and Quart-Trio answers that by cancelling its per-request nursery. The
cancellation lands at the next checkpoint of Hypercorn's bookkeeping (``send_eof`` in
``TCPServer._close``, the lock in ``TrioSingleTask.restart``), so neither the close nor the
idle timer happens: every answered connection stayed open until its client left (3,000
answered connections were 3,000 open descriptors 20 s later; at ``ulimit -n 256`` fresh
clients got no answer). A body that arrives after the answer wedged the connection too.

So every HTTP ``send`` the app makes reaches the server under a shielded cancel scope: no
cancellation from the app side can interrupt the server halfway through a state change.
The app's own work (a view, a long-poll, a stream between chunks) stays cancellable as
before; only the hand-over to the server is atomic. Hypercorn already shields the socket
write itself, so this adds no new way for a send to block.

Reported upstream to Hypercorn (the trio worker breaks under any ASGI app that cancels
itself on ``http.disconnect``, the usual pattern); remove once a release fixes it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

import trio

Send = Callable[[Any], Awaitable[None]]
AsgiApp = Callable[[Any, Any, Any], Awaitable[None]]

_MARK = "_asyncendpoints_shielded_send"


def _shielded(send: Send) -> Send:
    async def shielded_send(message: Any) -> None:
        with trio.CancelScope(shield=True):
            await send(message)

    return shielded_send


def shield_server_send(asgi_app: AsgiApp) -> AsgiApp:
    """ASGI middleware: shield the server's ``send`` for HTTP scopes. (Hypercorn closes
    websockets from its own tasks, never inside an app's ``send``.)"""
    if getattr(asgi_app, _MARK, False):
        return asgi_app

    @wraps(asgi_app)
    async def app(scope: Any, receive: Any, send: Send) -> None:
        if scope["type"] == "http":
            send = _shielded(send)
        await asgi_app(scope, receive, send)

    setattr(app, _MARK, True)
    return app


def install_connection_fix(app: Any) -> None:
    """Wrap one app instance's ``asgi_app`` (Quart's middleware point), which every way of
    serving it calls: ``hypercorn.trio.serve(app)``, ``hypercorn -k trio``, our CLI."""
    app.asgi_app = shield_server_send(app.asgi_app)
