"""``open_client(url)``: the client a URL names: one server, a Cluster or a Sentinel group.

Each scheme's client registers its maker in ``SCHEMES``; ``redis://``, ``rediss://`` and
``unix://`` are one server (``RedisClient``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .._errors import ConfigurationError
from ._api import RedisAPI
from ._client import RedisClient
from ._cluster import ClusterClient
from ._cluster_url import parse_cluster_url
from ._sentinel import SentinelClient
from ._sentinel_url import parse_sentinel_url
from ._url import parse_url

SCHEMES: dict[str, Callable[..., RedisAPI]] = {
    "redis": RedisClient.from_url,
    "rediss": RedisClient.from_url,
    "unix": RedisClient.from_url,
    "redis+sentinel": SentinelClient.from_url,
    "redis+cluster": ClusterClient.from_url,
    "rediss+cluster": ClusterClient.from_url,
}

# How each scheme's URL is checked without connecting (a CLI refuses a bad one at start).
PARSERS: dict[str, Callable[[str], object]] = {
    "redis": parse_url,
    "rediss": parse_url,
    "unix": parse_url,
    "redis+cluster": parse_cluster_url,
    "rediss+cluster": parse_cluster_url,
    "redis+sentinel": parse_sentinel_url,
}


def check_url(url: str) -> None:
    """Raise ``ConfigurationError`` if ``url`` is no Redis URL ``open_client`` takes."""
    parser = PARSERS.get(urlsplit(url).scheme.lower())
    if parser is None:
        open_client(url)  # raises, naming the schemes known
    else:
        parser(url)


def open_client(url: str, **overrides: Any) -> RedisAPI:
    """A client for ``url``; ``overrides`` replace settings the URL gives (per node)."""
    scheme = urlsplit(url).scheme.lower()
    maker = SCHEMES.get(scheme)
    if maker is None:
        known = ", ".join(f"{name}://" for name in sorted(SCHEMES))
        raise ConfigurationError(f"Redis URL {url!r}: unknown scheme {scheme!r} (use {known})")
    return maker(url, **overrides)
