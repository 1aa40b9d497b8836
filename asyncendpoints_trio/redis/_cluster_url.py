"""Cluster URLs: seed nodes and the settings every node connection is made with::

    redis+cluster://[[user]:password@]host[:port][,host[:port]...][/0][?option=value...]
    rediss+cluster://...                                          (TLS to every node)

The query options are those of ``redis://`` URLs (``parse_url``) and apply to every node.
A cluster has database 0 only: another db is refused.
"""

from __future__ import annotations

from .._errors import ConfigurationError
from ._slots import Address
from ._url import RedisSettings, parse_url

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def _split_host(text: str) -> tuple[str, int | None]:
    if text.startswith("["):  # [IPv6]:port
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ConfigurationError(f"Redis Cluster URL: malformed seed node {text!r}")
        port_text = rest[1:]
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ConfigurationError(f"Redis Cluster URL: a seed node has no host ({text!r})")
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigurationError(f"Redis Cluster URL: bad port in seed node {text!r}")
    return host, int(port_text)


def parse_cluster_url(url: str) -> tuple[RedisSettings, list[Address]]:
    """The template settings (host and port: the first seed's) and the seed addresses."""
    scheme, sep, rest = url.partition("://")
    base = CLUSTER_SCHEMES.get(scheme.lower()) if sep else None
    if base is None:
        raise ConfigurationError(
            "a Redis Cluster URL starts with redis+cluster:// or rediss+cluster://")
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0),
              default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    userinfo, at, hosts = netloc.rpartition("@")
    if not hosts:
        raise ConfigurationError("Redis Cluster URL: name at least one seed node "
                                 "(redis+cluster://host:port,host:port/)")
    seeds: list[Address] = []
    for entry in hosts.split(","):
        host, port = _split_host(entry.strip())
        seeds.append((host, 6379 if port is None else port))
    first = hosts.split(",")[0].strip()
    settings = parse_url(f"{base}://{userinfo}{at}{first}{tail}")
    if settings.db != 0:
        raise ConfigurationError(
            f"Redis Cluster has database 0 only; the URL asks for db {settings.db}")
    return settings, seeds
