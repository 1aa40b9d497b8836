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

SCHEMES: dict[str, Callable[..., RedisAPI]] = {
    "redis": RedisClient.from_url,
    "rediss": RedisClient.from_url,
    "unix": RedisClient.from_url,
    "redis+cluster": ClusterClient.from_url,
    "rediss+cluster": ClusterClient.from_url,
}


def open_client(url: str, **overrides: Any) -> RedisAPI:
    """A client for ``url``; ``overrides`` replace settings the URL gives (per node)."""
    scheme = urlsplit(url).scheme.lower()
    maker = SCHEMES.get(scheme)
    if maker is None:
        known = ", ".join(f"{name}://" for name in sorted(SCHEMES))
        raise ConfigurationError(f"Redis URL {url!r}: unknown scheme {scheme!r} (use {known})")
    return maker(url, **overrides)
