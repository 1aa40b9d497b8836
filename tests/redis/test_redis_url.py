from __future__ import annotations

import pytest

from asyncendpoints_trio._errors import ConfigurationError
from asyncendpoints_trio.redis import RedisSettings, parse_url


def test_defaults() -> None:
    settings = parse_url("redis://")
    assert (settings.host, settings.port, settings.db) == ("localhost", 6379, 0)
    assert not settings.tls
    assert settings.username is None
    assert settings.password is None


def test_host_port_db() -> None:
    settings = parse_url("redis://cache.internal:6380/3")
    assert (settings.host, settings.port, settings.db) == ("cache.internal", 6380, 3)
    assert settings.address == "redis://cache.internal:6380/3"


def test_ipv6_host() -> None:
    settings = parse_url("redis://[::1]:7000")
    assert (settings.host, settings.port) == ("::1", 7000)
    assert settings.address == "redis://[::1]:7000/0"


def test_password_only() -> None:
    settings = parse_url("redis://:p%40ss%2Fword@host")
    assert settings.username is None
    assert settings.password == "p@ss/word"


def test_username_and_password() -> None:
    settings = parse_url("redis://alice:wonder%20land@host:1/2")
    assert (settings.username, settings.password, settings.db) == ("alice", "wonder land", 2)


def test_password_never_in_repr_or_address() -> None:
    settings = parse_url("redis://alice:topsecret@host")
    assert "topsecret" not in repr(settings)
    assert "topsecret" not in settings.address


def test_rediss_with_ca_file() -> None:
    settings = parse_url("rediss://host?ssl_ca_certs=/etc/ca.pem")
    assert settings.tls
    assert settings.tls_ca_file == "/etc/ca.pem"
    assert settings.address.startswith("rediss://")


def test_unix_socket_with_query_options() -> None:
    settings = parse_url("unix:///run/redis/redis.sock?db=4&password=pw&username=bob")
    assert settings.unix_socket == "/run/redis/redis.sock"
    assert (settings.db, settings.username, settings.password) == (4, "bob", "pw")
    assert settings.address == "unix:/run/redis/redis.sock"


def test_unix_socket_with_userinfo() -> None:
    settings = parse_url("unix://:pw@/tmp/r.sock")
    assert (settings.unix_socket, settings.password) == ("/tmp/r.sock", "pw")


def test_numeric_query_options() -> None:
    settings = parse_url("redis://h?read_timeout=0.5&max_connections=4&acquire_timeout=inf")
    assert settings.read_timeout == 0.5
    assert settings.max_connections == 4
    assert settings.acquire_timeout == float("inf")


def test_from_url_overrides() -> None:
    settings = RedisSettings.from_url("redis://h/1", max_connections=3)
    assert (settings.db, settings.max_connections) == (1, 3)
    with pytest.raises(ConfigurationError):
        RedisSettings.from_url("redis://h", no_such_field=1)


@pytest.mark.parametrize(
    "url",
    [
        "http://host",  # wrong scheme
        "host:6379",  # no scheme
        "redis://host:notaport",
        "redis://host:70000",
        "redis://host:0",
        "redis://host/notadb",
        "redis://host/-1",
        "redis://host/1?db=2",  # db twice
        "redis://alice@host",  # user without password
        "redis://host?timeout=1",  # unknown option
        "redis://host?read_timeout=soon",
        "redis://host?read_timeout=0",
        "redis://host?read_timeout=nan",
        "redis://host?max_connections=0",
        "redis://host?db=1&db=1",  # option twice
        "redis://:pw@host?password=pw",  # password twice
        "redis://host?ssl_ca_certs=/ca.pem",  # TLS option without TLS
        "redis://host?novalue",
        "redis://host#frag",
        "unix://",  # no path
        "unix://host/path.sock",  # a host where none belongs
        "unix:///tmp/r.sock?db=x",
    ],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_url(url)


def test_bad_url_message_hides_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_url("redis://:hunter2@host:port")
    assert "hunter2" not in str(info.value)

