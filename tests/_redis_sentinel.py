"""A private Sentinel group for tests: a primary, a replica and three sentinels.

Everything listens on free loopback ports (never the shared 6379). ``start()`` returns once
the replica has synced (redis-server tells systemd-style ``READY=1`` only then) and every
sentinel knows the replica and both other sentinels, so a failover can be voted on. Waits are
bounded polls of the sentinels' own view, never sleeps. Synchronous, like ``RedisServer``:
async tests call the slow parts through ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass
from typing import Any

import hiredis

from tests._redis_server import RedisServer

SERVICE = "jobs"
QUORUM = 2
DOWN_AFTER_MS = 500
FAILOVER_TIMEOUT_MS = 2000
SETTLE_TIMEOUT = 30.0
_POLL = 0.05  # between two looks at the sentinels' state while waiting for it to change
# A primary waits 5 s (by default) for more replicas before it streams a snapshot: a test
# has only one.
_NODE_ARGS = ("--repl-diskless-sync-delay", "0")


def command(port: int, *args: Any, timeout: float = 5.0) -> Any:
    """One command to 127.0.0.1:``port`` on a fresh connection; error replies are returned."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(hiredis.pack_command(tuple(args)))
        reader = hiredis.Reader()
        while True:
            reply = reader.gets()
            if reply is not False:
                return reply
            data = sock.recv(65536)
            if not data:
                raise ConnectionError(f"127.0.0.1:{port} closed the connection")
            reader.feed(data)


def _pairs(flat: list[bytes]) -> dict[str, str]:
    return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}


class SentinelProcess(RedisServer):
    """``redis-server sentinel.conf --sentinel``: a sentinel monitoring ``service``;
    ``password``: its own ``requirepass``."""

    def __init__(self, primary_port: int, *, service: str = SERVICE,
                 password: str | None = None) -> None:
        self._primary_port = primary_port
        self.service = service
        super().__init__(password=password)

    def _command_line(self, password: str | None, users: tuple[str, ...], aof: bool,
                      extra_args: tuple[str, ...]) -> list[str]:
        config = self._dir / "sentinel.conf"  # Sentinel rewrites it: a file of its own
        service = self.service
        config.write_text(
            f"sentinel resolve-hostnames no\n"
            f"sentinel monitor {service} 127.0.0.1 {self._primary_port} {QUORUM}\n"
            f"sentinel down-after-milliseconds {service} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {service} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {service} 1\n")
        args = super()._command_line(password, users, aof, extra_args)
        return [args[0], str(config), "--sentinel", *args[1:]]


@dataclass(frozen=True)
class Failover:
    old: int  # port of the primary killed
    new: int  # port of the promoted replica
    seconds: float  # from the kill to +switch-master


class SentinelGroupServers:
    def __init__(self) -> None:
        self.primary = RedisServer(extra_args=_NODE_ARGS)
        self.nodes: list[RedisServer] = [self.primary]
        self.sentinels: list[SentinelProcess] = []
        self.setup_seconds = 0.0
        self._dead: set[int] = set()

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def node(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    def start(self) -> float:
        """Start everything; return the seconds it took until the group was ready."""
        began = time.monotonic()
        self.primary.start()
        replica = RedisServer(
            extra_args=(*_NODE_ARGS, "--replicaof", "127.0.0.1", str(self.primary.port)))
        self.nodes.append(replica)
        replica.start()  # READY=1 comes after the first sync with the primary
        for _ in range(3):
            sentinel = SentinelProcess(self.primary.port)
            self.sentinels.append(sentinel)
            sentinel.start()
        self._wait(self._known_to_all, "the sentinels to know the replica and each other")
        self.setup_seconds = time.monotonic() - began
        return self.setup_seconds

    def _known_to_all(self) -> bool:
        for sentinel in self.sentinels:
            replicas = [_pairs(r) for r in command(sentinel.port, "SENTINEL", "replicas",
                                                    SERVICE)]
            peers = command(sentinel.port, "SENTINEL", "sentinels", SERVICE)
            if len(peers) != len(self.sentinels) - 1:
                return False
            if not any(r["flags"] == "slave" and r["master-link-status"] == "ok"
                       for r in replicas):
                return False
        return True

    def kill_sentinel(self, port: int) -> None:
        """kill -9 one sentinel (it stays in ``url``: clients must pass over it)."""
        next(s for s in self.sentinels if s.port == port).kill()
        self._dead.add(port)

    def _live_sentinel(self) -> int:
        return next(s.port for s in self.sentinels if s.port not in self._dead)

    def primary_port(self) -> int:
        _, port = command(self._live_sentinel(), "SENTINEL", "get-master-addr-by-name",
                          SERVICE)
        return int(port)

    def kill_primary(self, timeout: float = SETTLE_TIMEOUT) -> Failover:
        """kill -9 the primary; return once a sentinel announced the promotion and the
        promoted node says it is a primary."""
        return self._fail_over(lambda node: node.kill(), timeout)

    def pause_primary(self, timeout: float = SETTLE_TIMEOUT) -> Failover:
        """SIGSTOP the primary (its port still accepts, nothing answers: a partition, as
        its clients see it); return as ``kill_primary`` does. ``cleanup`` kills it."""
        return self._fail_over(lambda node: node.pause(), timeout)

    def _fail_over(self, stop: Any, timeout: float) -> Failover:
        old = self.primary_port()
        with socket.create_connection(("127.0.0.1", self._live_sentinel())) as sock:
            sock.sendall(hiredis.pack_command(("SUBSCRIBE", "+switch-master")))
            reader = hiredis.Reader()
            self._read(sock, reader, time.monotonic() + 5)  # the confirmation
            stop(self.node(old))
            killed = time.monotonic()
            deadline = killed + timeout
            while True:
                kind, _, data = self._read(sock, reader, deadline)
                if kind == b"message" and data.split()[0].decode() == SERVICE:
                    new = int(data.split()[4])
                    break
        seconds = time.monotonic() - killed
        self._wait(lambda: command(new, "ROLE")[0] == b"master", "the promoted node")
        return Failover(old=old, new=new, seconds=seconds)

    def wait_until_agreed(self, port: int, timeout: float = SETTLE_TIMEOUT) -> None:
        """Until every live sentinel names ``port`` as the primary (the others learn of a
        failover from the leader's hello messages, within a couple of seconds)."""
        def agreed() -> bool:
            for sentinel in self.sentinels:
                if sentinel.port in self._dead:
                    continue
                state = _pairs(command(sentinel.port, "SENTINEL", "master", SERVICE))
                if int(state["port"]) != port or state["flags"] != "master":
                    return False
            return True
        self._wait(agreed, f"every sentinel to name {port}, its link up, no failover",
                   timeout)

    @staticmethod
    def _read(sock: socket.socket, reader: Any, deadline: float) -> Any:
        while True:
            reply = reader.gets()
            if reply is not False:
                return reply
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([sock], [], [], remaining)[0]:
                raise TimeoutError("no +switch-master in time")
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the sentinel closed the connection")
            reader.feed(data)

    def restart(self, port: int) -> None:
        """Start a killed node again, on its port; the sentinels make it a replica (see
        ``wait_until_replica``). Only once they all agree on the new primary: a node that
        comes back as a primary while some sentinel still takes it for the primary sets
        off another failover, and they can ping-pong."""
        self.wait_until_agreed(self.primary_port())
        self.node(port).start()

    def wait_until_replica(self, port: int, timeout: float = SETTLE_TIMEOUT) -> None:
        self._wait(lambda: command(port, "ROLE")[0] == b"slave", f"{port} to be a replica",
                   timeout)

    @staticmethod
    def _wait(ready: Any, what: str, timeout: float = SETTLE_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout}s for {what}")
            time.sleep(_POLL)  # a polling interval: the condition is what we wait for

    def logs(self) -> str:
        return "\n".join(f"--- {type(p).__name__} {p.port}\n{p.log()}"
                         for p in [*self.nodes, *self.sentinels])

    def cleanup(self) -> None:
        for process in [*self.sentinels, *self.nodes]:
            process.cleanup()

    def __enter__(self) -> SentinelGroupServers:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()

