"""``RedisSettings``: where Redis is, how to log in, and how long to wait for it.

``parse_url`` reads the usual URL forms::

    redis://[[user]:password@]host[:port][/db][?option=value...]
    rediss://...                                  (TLS)
    unix://[[user]:password@]/path/to.sock[?db=N&option=value...]

Query options: ``db``, ``username``, ``password`` (handy for unix sockets, or for a password
full of ``@`` and ``/``), every number field of ``RedisSettings`` by its name, and
``ssl_ca_certs`` (rediss only). Userinfo is percent-decoded. Unknown options are refused rather
than ignored: a typo must not silently change nothing.
"""

from __future__ import annotations

import dataclasses
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .._errors import ConfigurationError

_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """Connection and pool settings, with their defaults. All durations are in seconds."""

    # -- where ---------------------------------------------------------------------------
    host: str = "localhost"
    port: int = 6379
    unix_socket: str | None = None  # a path: connect over a unix socket instead of TCP
    tls: bool = False
    tls_ca_file: str | None = None  # CA bundle for rediss; None: the system's trust store
    # Used as-is for rediss when given (client certificates, pinning, relaxed checks).
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)
    # -- who -----------------------------------------------------------------------------
    db: int = 0
    username: str | None = None  # Redis 6 ACL user; None: the default user
    password: str | None = field(default=None, repr=False)
    # -- how long ------------------------------------------------------------------------
    connect_timeout: float = 5.0  # TCP connect + TLS handshake + AUTH/SELECT
    read_timeout: float = 5.0  # longest silence while a reply is due (blocking calls add theirs)
    write_timeout: float = 5.0
    # -- pool ----------------------------------------------------------------------------
    max_connections: int = 32
    acquire_timeout: float = 5.0  # waiting for a free pooled connection (inf: no limit)
    backoff_initial: float = 0.05  # first pause after a failed connect, doubled per failure...
    backoff_max: float = 2.0  # ...up to this
    health_check_interval: float = 30.0  # pub/sub: PING after this long without a message

    def __post_init__(self) -> None:
        if self.unix_socket is None and not 0 < self.port < 65536:
            raise ConfigurationError(f"Redis port must be in 1..65535, not {self.port}")
        if self.unix_socket is not None and self.tls:
            raise ConfigurationError("TLS over a unix socket is not supported")
        if self.db < 0:
            raise ConfigurationError(f"Redis db must be >= 0, not {self.db}")
        if self.username is not None and self.password is None:
            raise ConfigurationError("a Redis username needs a password (AUTH user password)")
        for name in ("connect_timeout", "read_timeout", "write_timeout", "acquire_timeout",
                     "backoff_initial", "health_check_interval"):
            if not getattr(self, name) > 0:
                raise ConfigurationError(f"{name} must be > 0")
        if self.backoff_max < self.backoff_initial:
            raise ConfigurationError("backoff_max must be >= backoff_initial")
        if self.max_connections < 1:
            raise ConfigurationError("max_connections must be >= 1")

    @property
    def address(self) -> str:
        """Where we connect, for messages and logs (never carries credentials)."""
        if self.unix_socket is not None:
            return f"unix:{self.unix_socket}"
        scheme = "rediss" if self.tls else "redis"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/{self.db}"

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> RedisSettings:
        """``parse_url(url)``, then ``overrides`` replace fields (e.g. ``max_connections=64``)."""
        settings = parse_url(url)
        try:
            return dataclasses.replace(settings, **overrides)
        except TypeError as exc:  # an unknown keyword
            raise ConfigurationError(str(exc)) from None


_FLOAT_OPTIONS = frozenset({"connect_timeout", "read_timeout", "write_timeout",
                            "acquire_timeout", "backoff_initial", "backoff_max",
                            "health_check_interval"})
_INT_OPTIONS = frozenset({"db", "max_connections"})


def parse_url(url: str) -> RedisSettings:
    """Parse a ``redis://``, ``rediss://`` or ``unix://`` URL; raise ``ConfigurationError``."""
    # The URL may carry a password: no message below quotes it.
    try:
        parts = urlsplit(url)
        port = parts.port
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise ConfigurationError(f"malformed Redis URL: {exc}") from None
    if parts.scheme not in _SCHEMES:
        raise ConfigurationError(
            f"Redis URL scheme must be one of {', '.join(_SCHEMES)}, not {parts.scheme!r}")
    if parts.fragment:
        raise ConfigurationError("a Redis URL has no #fragment")

    fields: dict[str, Any] = {}
    if parts.username:
        fields["username"] = unquote(parts.username)
    if parts.password is not None:
        fields["password"] = unquote(parts.password)
    if "username" in fields and "password" not in fields:
        raise ConfigurationError("Redis URL has a user but no password (write user:password@)")

    if parts.scheme == "unix":
        if parts.hostname or port is not None:
            raise ConfigurationError("a unix:// URL takes no host or port: unix:///path/to.sock")
        if not parts.path or parts.path == "/":
            raise ConfigurationError("a unix:// URL needs a socket path: unix:///path/to.sock")
        fields["unix_socket"] = unquote(parts.path)
    else:
        fields["tls"] = parts.scheme == "rediss"
        if parts.hostname:
            fields["host"] = unquote(parts.hostname)
        if port is not None:
            fields["port"] = port
        db_path = parts.path.lstrip("/")
        if db_path:
            fields["db"] = _number(int, "db", db_path)

    seen: set[str] = set()
    for name, value in query:
        if name in seen:
            raise ConfigurationError(f"Redis URL option {name!r} is given twice")
        seen.add(name)
        if name in ("username", "password"):
            if name in fields:
                raise ConfigurationError(f"Redis URL gives the {name} twice")
            fields[name] = value
        elif name == "db":
            if "db" in fields:
                raise ConfigurationError("Redis URL gives the db both in its path and as ?db=")
            fields["db"] = _number(int, name, value)
        elif name in _INT_OPTIONS:
            fields[name] = _number(int, name, value)
        elif name in _FLOAT_OPTIONS:
            fields[name] = _number(float, name, value)
        elif name == "ssl_ca_certs" and parts.scheme == "rediss":
            fields["tls_ca_file"] = value
        else:
            raise ConfigurationError(f"unknown Redis URL option {name!r}")
    return RedisSettings(**fields)


def _number(kind: type[int] | type[float], name: str, text: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise ConfigurationError(f"Redis URL option {name} must be a number, "
                                 f"not {text!r}") from None
