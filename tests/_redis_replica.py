"""A private primary and one replica of it (``--replicaof``), on free loopback ports.

``start()`` returns once the replica acknowledges writes: neither ``READY=1`` (sent before
the first sync) nor the primary's ``state=online`` mean that yet, so the wait is a bounded
poll of a write's ``WAIT``. Synchronous, like ``RedisServer``.
"""

from __future__ import annotations

import socket
from typing import Any

import hiredis

from tests._redis_sentinel import SentinelGroupServers
from tests._redis_server import RedisServer


class PrimaryWithReplica:
    def __init__(self) -> None:
        self.primary = RedisServer()
        # A primary waits 5 s (by default) for more replicas before it streams a snapshot.
        self.replica = RedisServer(extra_args=(
            "--replicaof", "127.0.0.1", str(self.primary.port),
            "--repl-diskless-sync-delay", "0"))

    def start(self) -> None:
        self.primary.start()
        self.replica.start()
        SentinelGroupServers._wait(self._acknowledges, "the replica to acknowledge writes")

    def _acknowledges(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.primary.port), timeout=5) as sock:
            sock.sendall(hiredis.pack_command(("INCR", "replica-pair:sync")) +
                         hiredis.pack_command(("WAIT", 1, 100)))
            reader, replies = hiredis.Reader(), list[Any]()
            while len(replies) < 2:
                data = sock.recv(4096)
                if not data:
                    raise ConnectionError("the primary closed the connection")
                reader.feed(data)
                while (reply := reader.gets()) is not False:
                    replies.append(reply)
        return bool(replies[1] == 1)

    def cleanup(self) -> None:
        self.replica.cleanup()
        self.primary.cleanup()

    def __enter__(self) -> PrimaryWithReplica:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()
