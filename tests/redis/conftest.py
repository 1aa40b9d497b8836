"""Fixtures for the Redis client tests: private redis-servers and clusters, clients, a fault
proxy.

``REDIS_URL``, when set, is used by tests that only need "a Redis" (they use unique keys and
never flush); ``REDIS_CLUSTER_URL`` likewise by tests that only need "a Redis Cluster". Tests
that kill, pause, restart, flush scripts, move slots or log in always get private servers.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import pytest
import trio

from asyncendpoints_trio.redis import RedisClient, RedisSettings
from tests._redis_cluster import RedisCluster, redis_cluster
from tests._redis_sentinel import SentinelGroupServers
from tests._redis_server import RedisServer, redis_server_binary
from tests.faultproxy import FaultProxy

if redis_server_binary() is None:
    if os.environ.get("CI"):
        # CI installs redis-server (.ci/run); a skip there would hide a broken install.
        raise RuntimeError("redis-server is not on PATH")
    pytest.skip("redis-server is not installed", allow_module_level=True)


@pytest.fixture(scope="session")
def shared_server() -> Iterator[RedisServer]:
    """One private server for the whole session, with a unix socket too."""
    with RedisServer(unix_socket=True) as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    server: RedisServer = request.getfixturevalue("shared_server")
    return server.url


@pytest.fixture
def private_server() -> Iterator[RedisServer]:
    """A server of this test's own, to kill, pause or restart."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def auth_server() -> Iterator[RedisServer]:
    users = ("alice on >wonderland ~* &* +@all", "bob on >builder ~bob:* +get +set")
    with RedisServer(password="s3cret", users=users) as server:
        yield server


@pytest.fixture(scope="session")
def tls_server() -> Iterator[RedisServer]:
    server = RedisServer(tls=True)
    try:
        server.start()
    except RuntimeError as exc:
        server.cleanup()
        pytest.skip(f"this redis-server cannot serve TLS: {exc}")
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
async def key() -> AsyncIterator[str]:
    """A key prefix of this test's own, so tests may share a server; cleaned up on REDIS_URL."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    url = os.environ.get("REDIS_URL")
    if url:
        async with RedisClient.from_url(url) as redis:
            with trio.fail_after(5):
                cursor = b"0"
                while True:
                    cursor, keys = await redis.execute("SCAN", cursor, "MATCH", prefix + "*")
                    if keys:
                        await redis.execute("UNLINK", *keys)
                    if cursor == b"0":
                        break


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[RedisClient]:
    async with RedisClient(fast_settings(redis_url)) as redis:
        yield redis


@pytest.fixture
async def proxy(nursery: trio.Nursery, shared_server: RedisServer) -> FaultProxy:
    proxy = FaultProxy(("127.0.0.1", shared_server.port))
    await nursery.start(proxy.run)
    return proxy


class SettingsFactory(Protocol):
    def __call__(self, url: str, **overrides: Any) -> RedisSettings: ...


def fast_settings(url: str, **overrides: Any) -> RedisSettings:
    """Short timeouts and backoff, so fault tests finish in well under a second each."""
    defaults: dict[str, Any] = {
        "connect_timeout": 2.0, "read_timeout": 2.0, "write_timeout": 2.0,
        "acquire_timeout": 2.0, "backoff_initial": 0.02, "backoff_max": 0.1,
        "max_connections": 8,
    }
    return RedisSettings.from_url(url, **{**defaults, **overrides})


@pytest.fixture
def settings() -> SettingsFactory:
    """``settings(url, **overrides)``: RedisSettings with short timeouts for tests."""
    return fast_settings


@pytest.fixture(scope="session")
def sentinels() -> Iterator[SentinelGroupServers]:
    """A primary, a replica and three sentinels, for tests that leave them as they found
    them (no kills): its start-up takes seconds, so the session shares it."""
    with SentinelGroupServers() as group:
        yield group


@pytest.fixture
def doomed_sentinels() -> Iterator[SentinelGroupServers]:
    """A Sentinel group of this test's own, to kill its primary."""
    with SentinelGroupServers() as group:
        yield group
def _need_redis_cli() -> None:
    if shutil.which("redis-cli") is None:
        if os.environ.get("CI"):
            raise RuntimeError("redis-cli is not on PATH")
        pytest.skip("redis-cli is not installed (the Cluster tests create clusters with it)")


@pytest.fixture(scope="session")
def shared_cluster() -> Iterator[RedisCluster]:
    """One private Redis Cluster (3 primaries, a replica each) for the whole session."""
    _need_redis_cli()
    with redis_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def cluster_url(request: pytest.FixtureRequest) -> str:
    """A healthy cluster: ``REDIS_CLUSTER_URL`` if set, else the session's private one."""
    url = os.environ.get("REDIS_CLUSTER_URL")
    if url:
        return url
    cluster: RedisCluster = request.getfixturevalue("shared_cluster")
    return cluster.url


@pytest.fixture
def private_cluster() -> Iterator[RedisCluster]:
    """A cluster of this test's own, to kill nodes of and reshard."""
    _need_redis_cli()
    with redis_cluster() as cluster:
        yield cluster


@asynccontextmanager
async def queue_stores(redis_url: str, prefix: str,
                       **options: Any) -> AsyncIterator[Callable[[], Any]]:
    """A maker of ``RedisStore``s, each on a queue of its own (tests share one server without
    meeting); their keys are deleted and the stores closed on exit."""
    from asyncendpoints_trio.stores._redis import RedisStore

    made: list[RedisStore] = []

    def make() -> RedisStore:
        made.append(RedisStore(RedisClient(fast_settings(redis_url)),
                               queue=f"{prefix}-{uuid.uuid4().hex[:10]}", owns_client=True,
                               **options))
        return made[-1]

    try:
        yield make
    finally:
        for store in made:
            # Every partition's keys: ae:{queue}:... and ae:{queue|k}:...
            keys = await store.client.execute("KEYS", f"ae:{{{store.queue}[}}|]*")
            if keys:
                await store.client.execute("DEL", *keys)
            await store.aclose()
