"""A private Redis Cluster for tests: 3 primaries with a replica each, on free loopback ports.

The six ``redis-server`` processes start at once (threads: each start waits for its own
``READY=1``), ``redis-cli --cluster create`` joins them, and readiness is polled, bounded:
every node says ``cluster_state:ok``, every node reports the same slot owners, and every
primary has an online replica (so ``WAIT 1`` can succeed). Failover is made quick with a
short ``cluster-node-timeout`` and ``cluster-replica-validity-factor 0`` (a replica may
always take over, however long it was cut off).

Synchronous, like ``_redis_server``: session fixtures cannot be async under pytest-trio.
Async tests call the slow parts through ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import hiredis

from asyncendpoints_trio.redis._slots import key_slot
from tests._redis_server import PortTaken, RedisServer, free_port

NODE_TIMEOUT_MS = 1000
READY_TIMEOUT = 30.0


def command(port: int, *args: Any, timeout: float = 10.0) -> Any:
    """One command on a fresh connection to 127.0.0.1:port; an error reply comes back as a
    ``hiredis.ReplyError`` value, not raised."""
    reader = hiredis.Reader()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(hiredis.pack_command(tuple(str(a) if isinstance(a, int) else a
                                                for a in args)))
        while True:
            reply = reader.gets()
            if reply is not False:
                return reply
            data = sock.recv(65536)
            if not data:
                raise ConnectionError(f"127.0.0.1:{port} closed the connection")
            reader.feed(data)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = READY_TIMEOUT) -> None:
    """Poll ``condition`` (every 20 ms) until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except (OSError, ConnectionError):
            pass  # a node still starting or just killed: ask again
        if time.monotonic() > deadline:
            raise RuntimeError(f"Redis cluster: {what} did not happen within {timeout}s")
        time.sleep(0.02)  # polling a condition with a bound, not synchronising by sleep


def _redis_cli(*args: str, timeout: float = 60) -> str:
    done = subprocess.run(["redis-cli", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)
    # redis-cli --cluster reports some failures with exit status 0: read what it says too.
    if done.returncode != 0 or "[ERR]" in done.stdout:
        raise RuntimeError(f"redis-cli {' '.join(args[:2])} failed:\n{done.stdout}"
                           f"{done.stderr}")
    return done.stdout


class RedisCluster:
    """Six nodes: ``start()``, then ``url``; ``cleanup()`` kills them and removes their dirs."""

    def __init__(self, *, nodes: int = 6, replicas: int = 1) -> None:
        if shutil.which("redis-cli") is None:
            raise RuntimeError("redis-cli is not installed")
        self._nodes = nodes
        self.servers = self._new_servers()
        self.replicas = replicas
        self.start_seconds = 0.0

    def _new_servers(self) -> list[RedisServer]:
        args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                "--cluster-replica-validity-factor", "0",
                "--cluster-allow-replica-migration", "no",
                "--repl-diskless-sync-delay", "0",  # replicas sync at once, not after 5 s
                "--appendonly", "no", "--save", "")
        # The bus port is chosen too: by default it is port + 10000, which a free port
        # from the top of the range would overflow (and nothing says it is free).
        return [RedisServer(extra_args=(*args, "--cluster-port", str(free_port())))
                for _ in range(self._nodes)]

    @property
    def ports(self) -> list[int]:
        return [server.port for server in self.servers]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[:3]) + "/"

    def start(self) -> None:
        started = time.monotonic()
        for attempt in range(3):
            try:
                RedisServer.start_all(self.servers)
                break
            except PortTaken:
                # free_port() only promises that a port was free a moment ago: another
                # process (an outgoing connection's ephemeral port) may take it, or a bus
                # port, first. Before the nodes are joined, all six may start again on new
                # ports.
                if attempt == 2:
                    raise
                self.cleanup()
                self.servers = self._new_servers()
        _redis_cli("--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                   "--cluster-replicas", str(self.replicas), "--cluster-yes")
        self.wait_healthy()
        self.start_seconds = time.monotonic() - started

    # -- what the nodes say -------------------------------------------------------------------

    def alive(self) -> list[RedisServer]:
        return [server for server in self.servers if server._process is not None]

    def nodes(self, port: int) -> list[dict[str, Any]]:
        """``CLUSTER NODES`` of one node, parsed: id, port, flags, primary id, slots."""
        rows = []
        for line in command(port, "CLUSTER", "NODES").decode().splitlines():
            parts = line.split()
            slots: list[int] = []
            for item in parts[8:]:
                if item.startswith("["):
                    continue  # a migration in progress
                first, _, last = item.partition("-")
                slots += range(int(first), int(last or first) + 1)
            rows.append({"id": parts[0], "port": int(parts[1].split(":")[1].split("@")[0]),
                         "flags": set(parts[2].split(",")), "primary": parts[3],
                         "slots": slots})
        return rows

    def owners(self, port: int) -> dict[int, int]:
        """Slot -> port of its primary, as node ``port`` sees it."""
        return {slot: row["port"] for row in self.nodes(port)
                if "master" in row["flags"] and "fail" not in row["flags"]
                for slot in row["slots"]}

    def node_id(self, port: int) -> str:
        return str(command(port, "CLUSTER", "MYID").decode())

    def owner_of(self, key: str | bytes) -> int:
        """The port of the primary serving ``key``'s slot."""
        return self.owners(self.alive()[0].port)[key_slot(key)]

    def primaries(self) -> list[int]:
        return sorted(set(self.owners(self.alive()[0].port).values()))

    def replica_of(self, primary_port: int) -> int:
        primary = self.node_id(primary_port)
        return next(row["port"] for row in self.nodes(primary_port)
                    if row["primary"] == primary and "fail" not in row["flags"])

    def keys_on(self, port: int, count: int = 3, prefix: str = "k") -> list[str]:
        """``count`` key names that the primary at ``port`` serves."""
        owners = self.owners(port)
        found: list[str] = []
        i = 0
        while len(found) < count:
            if i > 100_000:
                raise RuntimeError(f"no key {prefix}N is served by 127.0.0.1:{port}")
            name = f"{prefix}{i}"
            if owners.get(key_slot(name)) == port:
                found.append(name)
            i += 1
        return found

    # -- readiness ------------------------------------------------------------------------------

    def healthy(self) -> bool:
        views = []
        for server in self.alive():
            info = command(server.port, "CLUSTER", "INFO").decode()
            if "cluster_state:ok" not in info:
                return False
            views.append(self.owners(server.port))
        if len(views[0]) != 16384 or any(view != views[0] for view in views):
            return False
        for port in set(views[0].values()):
            replication = command(port, "INFO", "replication").decode()
            if "state=online" not in replication:
                return False
        return True

    def wait_healthy(self, timeout: float = READY_TIMEOUT) -> None:
        wait_for(self.healthy, "the cluster becoming healthy", timeout)

    # -- faults ---------------------------------------------------------------------------------

    def server(self, port: int) -> RedisServer:
        return next(server for server in self.servers if server.port == port)

    def kill(self, port: int) -> None:
        """SIGKILL the node."""
        self.server(port).kill()

    def wait_promoted(self, replica_port: int, timeout: float = 20.0) -> None:
        """Until the replica is a primary and every live node agrees on the slot owners
        (without the dead node's coverage the cluster state is fail, so this also waits for
        ``cluster_state:ok``)."""
        def promoted() -> bool:
            role = command(replica_port, "ROLE")
            return role[0] == b"master" and self.healthy_without_replicas()
        wait_for(promoted, f"the promotion of 127.0.0.1:{replica_port}", timeout)

    def healthy_without_replicas(self) -> bool:
        views = []
        for server in self.alive():
            if "cluster_state:ok" not in command(server.port, "CLUSTER", "INFO").decode():
                return False
            views.append(self.owners(server.port))
        return len(views[0]) == 16384 and all(view == views[0] for view in views)

    def restart(self, port: int) -> None:
        """Start a killed node again (same port, same nodes.conf): it rejoins as a replica."""
        self.server(port).start()

    # -- moving slots ---------------------------------------------------------------------------

    def begin_migration(self, slot: int, source: int, target: int) -> None:
        """``IMPORTING`` on the target, then ``MIGRATING`` on the source: from now on the
        source answers ``ASK`` for keys of the slot it does not hold."""
        self._ok(command(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(source)))
        self._ok(command(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(target)))

    def migrate_keys(self, slot: int, source: int, target: int) -> int:
        """Move every key of the slot from source to target; the number moved."""
        moved = 0
        while True:
            keys = command(source, "CLUSTER", "GETKEYSINSLOT", slot, 100)
            if not keys:
                return moved
            self._ok(command(source, "MIGRATE", "127.0.0.1", target, "", 0, 5000,
                             "KEYS", *keys))
            moved += len(keys)

    def end_migration(self, slot: int, source: int, target: int) -> None:
        """``SETSLOT NODE`` on the target, the source, then every other primary."""
        target_id = self.node_id(target)
        self._ok(command(target, "CLUSTER", "SETSLOT", slot, "NODE", target_id))
        self._ok(command(source, "CLUSTER", "SETSLOT", slot, "NODE", target_id))
        for port in self.primaries():
            if port not in (source, target):
                self._ok(command(port, "CLUSTER", "SETSLOT", slot, "NODE", target_id))
        wait_for(lambda: all(self.owners(s.port).get(slot) == target for s in self.alive()),
                 f"every node seeing slot {slot} at {target}")

    def move_slot(self, slot: int, target: int) -> None:
        source = self.owners(target)[slot]
        self.begin_migration(slot, source, target)
        self.migrate_keys(slot, source, target)
        self.end_migration(slot, source, target)

    def reshard(self, source: int, target: int, slots: int) -> None:
        """``redis-cli --cluster reshard``: move ``slots`` slots from source to target."""
        _redis_cli("--cluster", "reshard", f"127.0.0.1:{source}",
                   "--cluster-from", self.node_id(source), "--cluster-to", self.node_id(target),
                   "--cluster-slots", str(slots), "--cluster-yes", timeout=120)

    @staticmethod
    def _ok(reply: Any) -> None:
        if isinstance(reply, hiredis.ReplyError):
            raise RuntimeError(f"cluster admin command failed: {reply}")

    # -- lifetime -------------------------------------------------------------------------------

    def cleanup(self) -> None:
        for server in self.servers:
            server.cleanup()

    def logs(self) -> str:
        return "\n".join(f"--- {s.port}\n{s.log()}" for s in self.servers)


@contextmanager
def redis_cluster() -> Iterator[RedisCluster]:
    cluster = RedisCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()
