"""``EndpointsConfig``: every option of the runtime and the HTTP layer, validated once."""

from __future__ import annotations

import math
import os
import socket
import uuid
from dataclasses import dataclass, field

from ._errors import ConfigurationError
from ._retry import RetryPolicy
from .stores._partitions import MAX_PARTITIONS

# Headers that carry credentials. They are never stored with a job unless the application
# names them in ``persist_sensitive_headers``: a job store is not a secrets store.
SENSITIVE_HEADERS: frozenset[str] = frozenset(
    {"authorization", "cookie", "proxy-authorization", "x-api-key", "set-cookie"}
)
# Header names that look like credentials are not stored either (fnmatch patterns, matched
# against lower-cased names): ``X-Auth-Token`` was kept in plain text before these.
SENSITIVE_HEADER_PATTERNS: tuple[str, ...] = (
    "*token*", "*secret*", "*auth*", "*key*", "*session*", "*password*", "*cookie*",
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
    # Hash tags (Cluster slots) a Redis queue is spread over; a fleet agrees on one count.
    partitions: int = 1
    # Replicas that must confirm a submit (before its 202) and an outcome (Redis WAIT);
    # 0: none, replication stays asynchronous. Redis store only (docs: production).
    replicas_ack: int = 0
    replicas_timeout: float = 1.0  # seconds WAIT may take; a shortfall answers 503
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
    max_result_bytes: int = 8 * 1024 * 1024  # a larger result fails its job: ResultTooLarge
    # Most bytes of payloads (submits) or results (outcomes) sent to the store in one call.
    batch_bytes: int = 4 * 1024 * 1024
    # The in-memory store's bound on payloads, results and errors it retains; over it,
    # submits answer 503 QueueFull until retention frees room. Unused with Redis.
    memory_budget: int = 256 * 1024 * 1024
    max_wait: float = 30.0  # cap for ?wait= long-polls, seconds
    retry_after: int = 1  # seconds, sent in Retry-After with 202 and 503 answers
    # Most bytes of one progress report as JSON (ctx.report_progress); larger ones raise.
    max_progress_bytes: int = 4096
    # Seconds between keep-alive comments on an idle event stream (GET /jobs/<id> with
    # Accept: text/event-stream), so that proxies do not close it.
    sse_keepalive: float = 15.0
    sensitive_headers: frozenset[str] = SENSITIVE_HEADERS  # never stored with a job
    sensitive_header_patterns: tuple[str, ...] = SENSITIVE_HEADER_PATTERNS  # nor these
    persist_sensitive_headers: frozenset[str] = frozenset()  # names to keep all the same
    # An allow-list instead: store only these headers (None: every header but the above).
    captured_headers: frozenset[str] | None = None
    # Job JSON over HTTP shows exceptions' type and message; stack traces (server paths,
    # code) only with this on. The store and the logs keep them either way.
    expose_stack_traces: bool = False
    strict_validation: bool = False  # pydantic strict mode for request bodies ("5" is no int)
    # Count what jobs and the store do, for the metrics page. Off, the page has only the
    # actors' own statistics; it is cheap enough to leave on (docs: observability).
    metrics: bool = True

    def __post_init__(self) -> None:
        for name, low, low_ok, optional in _NUMBERS:
            _check_number(name, getattr(self, name), low, low_ok, optional)
        if self.partitions > MAX_PARTITIONS:
            raise ConfigurationError(f"partitions ({self.partitions}) must be at most "
                                     f"{MAX_PARTITIONS}")
        if self.heartbeat_interval * 2 > self.lease_ttl:
            # One missed heartbeat must not lose a lease that is being renewed.
            raise ConfigurationError(
                f"heartbeat_interval ({self.heartbeat_interval}) must be at most half "
                f"of lease_ttl ({self.lease_ttl})"
            )
        if not isinstance(self.queue, str) or not self.queue or \
                any(c in self.queue for c in "{}| "):
            raise ConfigurationError(f"queue {self.queue!r}: use a non-empty name without "
                                     "braces, spaces or '|'")
        if not isinstance(self.instance_id, str) or "|" in self.instance_id or \
                not self.instance_id:
            raise ConfigurationError("instance_id must be non-empty and without '|'")
        if not isinstance(self.default_retry, RetryPolicy):
            raise ConfigurationError("default_retry must be a RetryPolicy")
        for name in ("sensitive_headers", "persist_sensitive_headers", "captured_headers"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, str):
                raise ConfigurationError(f"{name} must be a set of header names, not a str")
            object.__setattr__(self, name, frozenset(h.lower() for h in value))
        patterns = self.sensitive_header_patterns
        if isinstance(patterns, str) or not all(isinstance(p, str) for p in patterns):
            raise ConfigurationError("sensitive_header_patterns must be a tuple of patterns")
        object.__setattr__(self, "sensitive_header_patterns",
                           tuple(p.lower() for p in patterns))


# (option, lowest value, lowest allowed itself, None allowed). Integers are the options
# whose default is an int; every number must be finite.
_NUMBERS: tuple[tuple[str, float, bool, bool], ...] = (
    ("concurrency", 1, True, False),
    ("partitions", 1, True, False),
    ("prefetch", 0, True, False),
    ("default_timeout", 0, False, True),
    ("lease_ttl", 0, False, False),
    ("heartbeat_interval", 0, False, False),
    ("recovery_interval", 0, False, False),
    ("recovery_batch", 1, True, False),
    ("shutdown_grace", 0, True, False),
    ("restart_backoff_max", 0, False, False),
    ("retention", 0, False, False),
    ("max_queued", 1, True, True),
    ("submit_batch", 1, True, False),
    ("max_body_size", 1, True, False),
    ("max_result_bytes", 1, True, False),
    ("batch_bytes", 1, True, False),
    ("memory_budget", 1, True, False),
    ("max_wait", 0, True, False),
    ("retry_after", 0, True, False),
    ("max_progress_bytes", 1, True, False),
    ("sse_keepalive", 0, False, False),
    ("replicas_ack", 0, True, False),
    ("replicas_timeout", 0, False, False),
)
_INTEGERS = frozenset({"concurrency", "partitions", "prefetch",
                       "recovery_batch", "max_queued",
                       "submit_batch", "max_body_size", "max_result_bytes", "batch_bytes",
                       "memory_budget", "retry_after", "max_progress_bytes",
                       "replicas_ack"})


def _check_number(name: str, value: object, low: float, low_ok: bool, optional: bool) -> None:
    if value is None and optional:
        return
    integer = name in _INTEGERS
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        kind = "an integer" if integer else "a number of seconds"
        raise ConfigurationError(f"{name} must be {kind}, not {value!r}")
    if not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number, not {value}")
    if value < low or (value == low and not low_ok):
        raise ConfigurationError(f"{name} must be {'>=' if low_ok else '>'} {low:g}, "
                                 f"not {value}")
