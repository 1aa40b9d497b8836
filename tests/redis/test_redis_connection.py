"""One connection, and logging in: round trips, pipelines, AUTH, SELECT, unix socket, TLS."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from asyncendpoints_trio._errors import (
    ConfigurationError,
    RedisConnectionError,
    RedisReplyError,
)
from asyncendpoints_trio.redis import RedisClient, RedisSettings, parse_url
from asyncendpoints_trio.redis._connection import open_connection
from tests._redis_server import RedisServer

SettingsFactory = Callable[..., RedisSettings]


async def test_round_trip_and_reply_types(redis_url: str, key: str) -> None:
    connection = await open_connection(parse_url(redis_url))
    try:
        with trio.fail_after(5):
            assert await connection.execute("SET", key, b"\x00\xffbinary") == b"OK"
            assert await connection.execute("GET", key) == b"\x00\xffbinary"
            assert await connection.execute("GET", key + "missing") is None
            assert await connection.execute("INCRBY", key + "n", 41) == 41
            assert await connection.execute("RPUSH", key + "l", "a", 1, 2.5) == 3
            assert await connection.execute("LRANGE", key + "l", 0, -1) == [b"a", b"1", b"2.5"]
            with pytest.raises(RedisReplyError) as info:
                await connection.execute("LPUSH", key, "x")
            assert info.value.kind == "WRONGTYPE"
            # The error reply was read in full: the connection is still good.
            assert not connection.closed
            assert await connection.execute("PING") == b"PONG"
    finally:
        await connection.aclose()
    assert connection.closed


async def test_pipeline_returns_errors_in_place(redis_url: str, key: str) -> None:
    connection = await open_connection(parse_url(redis_url))
    try:
        with trio.fail_after(5):
            replies = await connection.pipeline([
                ("SET", key, "v"), ("LPUSH", key, "x"), ("GET", key), ("NOSUCHCOMMAND",)])
    finally:
        await connection.aclose()
    assert replies[0] == b"OK"
    assert isinstance(replies[1], RedisReplyError)
    assert replies[1].kind == "WRONGTYPE"
    assert replies[2] == b"v"
    assert isinstance(replies[3], RedisReplyError)
    assert replies[3].kind == "ERR"


async def test_large_values_and_long_pipelines(client: RedisClient, key: str) -> None:
    value = bytes(range(256)) * 8192  # 2 MiB, every byte value
    with trio.fail_after(10):
        await client.execute("SET", key, value)
        assert await client.execute("GET", key) == value
        replies = await client.pipeline([("INCR", key + "n") for _ in range(10_000)])
    assert replies[-1] == 10_000


async def test_auth_with_password(auth_server: RedisServer, key: str) -> None:
    async with RedisClient.from_url(auth_server.url) as redis:
        with trio.fail_after(5):
            assert await redis.execute("SET", key, "1") == b"OK"
            assert await redis.execute("ACL", "WHOAMI") == b"default"


async def test_auth_with_username_and_password(auth_server: RedisServer, key: str) -> None:
    url = f"redis://alice:wonderland@127.0.0.1:{auth_server.port}"
    async with RedisClient.from_url(url) as redis:
        with trio.fail_after(5):
            assert await redis.execute("ACL", "WHOAMI") == b"alice"
    # bob may only touch bob:* keys: proof the login really is bob's, not the default user's.
    bob = f"redis://bob:builder@127.0.0.1:{auth_server.port}"
    async with RedisClient.from_url(bob) as redis:
        with trio.fail_after(5):
            assert await redis.execute("SET", "bob:" + key, "1") == b"OK"
            with pytest.raises(RedisReplyError) as info:
                await redis.execute("SET", key, "1")
    assert info.value.kind == "NOPERM"


async def test_wrong_password_is_a_connection_error(auth_server: RedisServer) -> None:
    url = f"redis://alice:wrong@127.0.0.1:{auth_server.port}"
    async with RedisClient.from_url(url) as redis:
        with trio.fail_after(5), pytest.raises(RedisConnectionError) as info:
            await redis.execute("PING")
    assert isinstance(info.value.__cause__, RedisReplyError)
    assert info.value.__cause__.kind == "WRONGPASS"
    assert "wrong" not in str(info.value)  # the message names the failure, not the password


async def test_missing_password_is_a_connection_error(auth_server: RedisServer) -> None:
    # The connect handshake PINGs even without AUTH or SELECT, so NOAUTH is a login failure.
    async with RedisClient.from_url(auth_server.plain_url.replace(":s3cret@", "")) as redis:
        with trio.fail_after(5), pytest.raises(RedisConnectionError) as info:
            await redis.execute("GET", "x")
    assert isinstance(info.value.__cause__, RedisReplyError)
    assert info.value.__cause__.kind == "NOAUTH"


async def test_select_db(redis_url: str, key: str) -> None:
    db5 = dataclasses.replace(parse_url(redis_url), db=5)
    db0 = dataclasses.replace(parse_url(redis_url), db=0)
    async with RedisClient(db5) as five, RedisClient(db0) as zero:
        with trio.fail_after(5):
            await five.execute("SET", key, "in five")
            assert await five.execute("GET", key) == b"in five"
            assert await zero.execute("GET", key) is None
            info = await five.execute("CLIENT", "INFO")
            await five.execute("DEL", key)  # the key fixture only cleans db 0
    assert b" db=5 " in info


async def test_select_bad_db_is_a_connection_error(redis_url: str) -> None:
    settings = dataclasses.replace(parse_url(redis_url), db=99999)
    async with RedisClient(settings) as redis:
        with trio.fail_after(5), pytest.raises(RedisConnectionError) as info:
            await redis.execute("PING")
    assert isinstance(info.value.__cause__, RedisReplyError)


async def test_unix_socket(shared_server: RedisServer, key: str,
                           settings: SettingsFactory) -> None:
    async with RedisClient(settings(shared_server.unix_url + "?db=2")) as redis:
        with trio.fail_after(5):
            await redis.execute("SET", key, "over unix")
            assert await redis.execute("GET", key) == b"over unix"
            info = await redis.execute("CLIENT", "INFO")
    assert b" db=2 " in info
    assert b"laddr=/" in info or b"addr=/" in info  # a unix socket address, not ip:port


async def test_tls(tls_server: RedisServer, key: str) -> None:
    assert tls_server.tls_files is not None
    url = f"{tls_server.url}?ssl_ca_certs={tls_server.tls_files.ca}"
    async with RedisClient.from_url(url) as redis:
        with trio.fail_after(5):
            await redis.execute("SET", key, "over tls")
            assert await redis.execute("GET", key) == b"over tls"
            replies = await redis.pipeline([("GET", key)] * 100)
    assert replies == [b"over tls"] * 100


async def test_tls_with_an_untrusted_certificate_fails_to_connect(
        tls_server: RedisServer) -> None:
    # The system trust store does not know our throwaway CA.
    async with RedisClient.from_url(tls_server.url) as redis:
        with trio.fail_after(5), pytest.raises(RedisConnectionError) as info:
            await redis.execute("PING")
    assert isinstance(info.value.__cause__, ssl.SSLError | trio.BrokenResourceError)


def test_missing_ca_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="CA file"):
        RedisClient.from_url(f"rediss://127.0.0.1:1?ssl_ca_certs={tmp_path / 'missing.pem'}")
