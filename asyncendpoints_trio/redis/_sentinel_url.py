"""``SentinelConfig``: which sentinels to ask, for which service, and how to reach its nodes.

``parse_sentinel_url`` reads::

    redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db][?option=value...]

The hosts are the sentinels (a port left out is Sentinel's 26379). The user and password,
the db and every option ``parse_url`` knows (timeouts, pool size, ...) are for the data nodes,
the primary Sentinel names. Two options are for the sentinels themselves:
``sentinel_password`` and ``sentinel_username`` (Sentinel's own ``requirepass``/ACL user).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from .._errors import ConfigurationError
from ._url import RedisSettings

SCHEME = "redis+sentinel"
FORM = "redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db]"
DEFAULT_SENTINEL_PORT = 26379
_SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class SentinelConfig:
    """``node``: the settings every data-node connection is made with (its host and port
    are replaced by the primary's); sentinels are asked with the same timeouts, db 0 and
    the sentinel credentials."""

    sentinels: tuple[Address, ...]
    service: str
    node: RedisSettings = field(default_factory=RedisSettings)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.sentinels:
            raise ConfigurationError(f"Sentinel needs at least one sentinel address ({FORM})")
        if not self.service:
            raise ConfigurationError(f"Sentinel needs a service name ({FORM})")
        if self.sentinel_username is not None and self.sentinel_password is None:
            raise ConfigurationError("sentinel_username needs sentinel_password")

    def node_settings(self, address: Address) -> RedisSettings:
        return dataclasses.replace(self.node, host=address[0], port=address[1])

    def sentinel_settings(self, address: Address) -> RedisSettings:
        return dataclasses.replace(
            self.node, host=address[0], port=address[1], db=0, max_connections=1,
            username=self.sentinel_username, password=self.sentinel_password)


def parse_sentinel_url(url: str, **overrides: Any) -> SentinelConfig:
    """Parse a ``redis+sentinel://`` URL; ``overrides`` replace data-node settings."""
    # The URL may carry passwords: no message below quotes it.
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise ConfigurationError(f"malformed Redis Sentinel URL: {exc} ({FORM})") from None
    if parts.scheme.lower() != SCHEME:
        raise ConfigurationError(f"a Sentinel URL starts with {SCHEME}://, not "
                                 f"{parts.scheme!r}")
    if parts.fragment:
        raise ConfigurationError("a Redis Sentinel URL has no #fragment")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    sentinels = tuple(_address(text) for text in hosts.split(","))

    segments = parts.path[1:].split("/") if parts.path else []
    if segments and segments[-1] == "":
        segments.pop()  # a trailing slash
    if not segments or not segments[0]:
        raise ConfigurationError(f"a Redis Sentinel URL needs the service name as its path: "
                                 f"{FORM}")
    if len(segments) > 2:
        raise ConfigurationError(f"a Redis Sentinel URL's path is /service_name[/db]: {FORM}")
    service = unquote(segments[0])

    sentinel_options: dict[str, str] = {}
    node_query: list[tuple[str, str]] = []
    for name, value in query:
        if name in _SENTINEL_OPTIONS:
            if name in sentinel_options:
                raise ConfigurationError(f"Redis URL option {name!r} is given twice")
            sentinel_options[name] = value
        else:
            node_query.append((name, value))
    # The data nodes' part is an ordinary redis:// URL: one parser, one set of rules.
    node_url = (f"redis://{userinfo + '@' if userinfo else ''}localhost"
                f"/{segments[1] if len(segments) == 2 else ''}")
    if node_query:
        node_url += "?" + urlencode(node_query)
    node = RedisSettings.from_url(node_url, **overrides)
    return SentinelConfig(sentinels=sentinels, service=service, node=node,
                          sentinel_username=sentinel_options.get("sentinel_username"),
                          sentinel_password=sentinel_options.get("sentinel_password"))


def _address(text: str) -> Address:
    if not text:
        raise ConfigurationError(f"a Redis Sentinel URL lists sentinels as host:port,"
                                 f"host:port (one is empty): {FORM}")
    if text.startswith("["):  # [IPv6]:port
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ConfigurationError(f"malformed sentinel address {text!r}")
        port_text = rest[1:]
    else:
        host, _, port_text = text.partition(":")
        if ":" in port_text:
            raise ConfigurationError(f"malformed sentinel address {text!r} (an IPv6 address "
                                     "goes in brackets: [::1]:26379)")
    if not host:
        raise ConfigurationError(f"sentinel address {text!r} has no host")
    if not port_text:
        return unquote(host), DEFAULT_SENTINEL_PORT
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigurationError(f"sentinel address {text!r}: the port must be a number") from None
    if not 0 < port < 65536:
        raise ConfigurationError(f"sentinel address {text!r}: the port must be in 1..65535")
    return unquote(host), port
