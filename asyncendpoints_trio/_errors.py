"""Every exception type the library raises, in one place.

    Exception
    ├── NonRetryableError ........ raised by handlers: fail the job now, no retries
    └── AsyncEndpointsError
        ├── ConfigurationError ... misuse found at setup time (unknown handler, bad option)
        ├── JobTimeout ........... an attempt ran over its handler's timeout (the job's error)
        ├── InvalidTransition .... a job status change the transition table forbids
        ├── NotAccepting ......... the runtime is not started, or is shutting down (HTTP 503)
        ├── QueueFull ............ the store holds ``max_queued`` waiting jobs (HTTP 503)
        ├── IdempotencyConflict .. a key reused with another payload (HTTP 422)
        └── StoreError ........... anything the backing store reports
            ├── StoreUnavailable . the store cannot be reached now; retry later (HTTP 503)
            │   ├── RedisConnectionError  connect/read/write failed or the link was cut
            │   │   └── RedisTimeoutError  a connect, read or write timed out
            │   └── PoolTimeout .. no pooled connection became free in time
            └── RedisReplyError .. the server answered with an error reply (``-ERR ...``)

Backend errors (``OSError``, ``hiredis.ProtocolError``, ``trio.TooSlowError`` ...) are
translated into these at the store boundary, so callers only ever catch our types.
"""

from __future__ import annotations

from typing import Any


class NonRetryableError(Exception):
    """Raise this (or a subclass) from a handler to fail the job at once, without retries."""


class AsyncEndpointsError(Exception):
    """Base of every error the library itself raises."""


class ConfigurationError(AsyncEndpointsError):
    """The library was set up wrongly; raised at setup time, never while serving."""


class JobTimeout(AsyncEndpointsError):
    """An attempt ran longer than its handler's timeout; recorded as the job's error."""


class InvalidTransition(AsyncEndpointsError):
    """A job status change that the transition table does not allow."""


class NotAccepting(AsyncEndpointsError):
    """The runtime takes no submissions now: it has not started, or it is shutting down."""


class QueueFull(AsyncEndpointsError):
    """The store already holds the configured maximum of waiting jobs."""


class IdempotencyConflict(AsyncEndpointsError):
    """An idempotency key was reused with a different request."""

    def __init__(self, key: str, job_id: str) -> None:
        if key == job_id:  # a chosen job id (X-Async-Request-Id) that another job has
            message = f"job id {job_id} belongs to a different request"
        else:
            message = (f"idempotency key {key!r} was already used for job {job_id} "
                       "with a different request")
        super().__init__(message)
        self.key = key
        self.job_id = job_id


class StoreError(AsyncEndpointsError):
    """The backing store failed."""


class StoreUnavailable(StoreError):
    """The store cannot be reached right now; the operation may be retried."""


class RedisConnectionError(StoreUnavailable):
    """A Redis connection could not be made, or failed or was cut mid-command.

    ``sent`` is False when no connection could be made for the command (refused, timed
    out, the client backing off or closed): then the command certainly did not run, and
    a routing client may send it elsewhere. True: it may have run.
    """

    sent: bool = True


class RedisTimeoutError(RedisConnectionError):
    """A Redis connect, read or write did not finish within its timeout."""


class PoolTimeout(StoreUnavailable):
    """No pooled connection became free within the acquire timeout."""


class RedisReplyError(StoreError):
    """Redis answered a command with an error reply.

    ``kind`` is the reply's first word (``ERR``, ``NOSCRIPT``, ``WRONGTYPE`` ...).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.kind = message.split(" ", 1)[0] if message else "ERR"


class ReplicationTimeout(StoreUnavailable):
    """A write was applied on the primary, but ``WAIT`` saw fewer replicas acknowledge it
    than asked for within its timeout: it may not survive a failover.

    ``reply`` holds the write's own reply (for a batch, every reply in call order), so the
    caller can tell what was written. ``unconfirmed``: for a batch over several nodes (a
    cluster), the positions of the calls on the nodes that fell short; ``None``: all of
    them (one node).
    """

    def __init__(self, message: str, *, acknowledged: int, reply: Any = None,
                 unconfirmed: frozenset[int] | None = None) -> None:
        super().__init__(message)
        self.acknowledged = acknowledged
        self.reply = reply
        self.unconfirmed = unconfirmed
