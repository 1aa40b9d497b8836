"""``EndpointsConfig``: every option of the runtime and the HTTP layer, validated once."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field

from ._errors import ConfigurationError
from ._retry import RetryPolicy

# Headers that carry credentials. They are never stored with a job unless the application
# names them in ``persist_sensitive_headers``: a job store is not a secrets store.
SENSITIVE_HEADERS: frozenset[str] = frozenset(
    {"authorization", "cookie", "proxy-authorization", "x-api-key", "set-cookie"}
)


def _default_instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class EndpointsConfig:
    """Options, with their defaults. See docs/configuration.md for the long form."""

    # -- workers ------------------------------------------------------------------------
    concurrency: int = 16  # handlers running at once in this process
    prefetch: int = 4  # jobs claimed beyond free worker slots, to hide claim latency
    run_workers: bool = True  # False: an API-only instance that runs no handlers
    default_retry: RetryPolicy = field(default_factory=RetryPolicy)
    default_timeout: float | None = None  # seconds per attempt; None: no limit
    # -- store --------------------------------------------------------------------------
    redis_url: str | None = None  # None: the in-memory store (one process only)
    queue: str = "default"  # Redis key space; instances sharing work share a queue name
    # -- leases -------------------------------------------------------------------------
    lease_ttl: float = 30.0
    heartbeat_interval: float = 10.0
    recovery_interval: float = 5.0  # how often expired leases and due retries are swept
    recovery_batch: int = 100
    instance_id: str = field(default_factory=_default_instance_id)
    # -- lifecycle ------------------------------------------------------------------------
    shutdown_grace: float = 10.0  # running handlers get this long to finish on shutdown
    # Cap for restarting a crashed actor. A store outage crashes actors too, so this is
    # also how long work may wait to resume after the store is back.
    restart_backoff_max: float = 5.0
    retention: float = 3600.0  # seconds a finished job stays readable (default MemoryStore)
    # -- queue and HTTP -----------------------------------------------------------------
    max_queued: int | None = 100_000  # submits beyond this answer 503
    submit_batch: int = 256  # most submits stored in one group commit
    max_body_size: int = 1024 * 1024  # bytes; larger bodies answer 413
    max_wait: float = 30.0  # cap for ?wait= long-polls, seconds
    retry_after: int = 1  # seconds, sent in Retry-After with 202 and 503 answers
    sensitive_headers: frozenset[str] = SENSITIVE_HEADERS  # never stored with a job
    persist_sensitive_headers: frozenset[str] = frozenset()  # names to keep all the same

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigurationError("concurrency must be >= 1")
        if self.prefetch < 0:
            raise ConfigurationError("prefetch must be >= 0")
        if self.lease_ttl <= 0 or self.heartbeat_interval <= 0:
            raise ConfigurationError("lease_ttl and heartbeat_interval must be > 0")
        if self.heartbeat_interval * 2 > self.lease_ttl:
            # One missed heartbeat must not lose a lease that is being renewed.
            raise ConfigurationError(
                f"heartbeat_interval ({self.heartbeat_interval}) must be at most half "
                f"of lease_ttl ({self.lease_ttl})"
            )
        if self.recovery_interval <= 0 or self.recovery_batch < 1:
            raise ConfigurationError("recovery_interval must be > 0 and recovery_batch >= 1")
        if self.retention <= 0:
            raise ConfigurationError("retention must be > 0")
        if self.shutdown_grace < 0:
            raise ConfigurationError("shutdown_grace must be >= 0")
        if self.max_queued is not None and self.max_queued < 1:
            raise ConfigurationError("max_queued must be >= 1 or None")
        if self.submit_batch < 1 or self.max_body_size < 1 or self.max_wait < 0:
            raise ConfigurationError("submit_batch, max_body_size must be >= 1; max_wait >= 0")
        if self.default_timeout is not None and self.default_timeout <= 0:
            raise ConfigurationError("default_timeout must be > 0 or None")
        if not self.queue or any(c in self.queue for c in "{}| "):
            raise ConfigurationError(f"queue {self.queue!r}: use a non-empty name without "
                                     "braces, spaces or '|'")
        if "|" in self.instance_id or not self.instance_id:
            raise ConfigurationError("instance_id must be non-empty and without '|'")
        for name in ("sensitive_headers", "persist_sensitive_headers"):
            lowered = frozenset(h.lower() for h in getattr(self, name))
            object.__setattr__(self, name, lowered)
