"""What the async and the sync client share, without I/O: retry decisions, reading answers,
telling job changes apart."""

from __future__ import annotations

import email.utils
import math
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import orjson

from ._errors import ClientError, UnexpectedResponse, problem_error
from ._sse import ServerSentEvent

TERMINAL = frozenset({"Completed", "Failed", "Canceled"})
EVENT_STREAM = "text/event-stream"
JSON_ACCEPT = {"Accept": "application/json"}
# A 503 is the service saying "not now" (store down, queue full, not started): the same
# request, with the same idempotency key, may be sent again. So is a 409 that asks for a
# retry: the draft's "a request with this key is still being processed" (our own earlier
# try, when its answer was lost but the service is still at it).
RETRY_STATUSES = frozenset({503})
# delay-seconds is 1*DIGIT, ASCII (RFC 9110): ``str.isdigit`` also takes "²", which
# ``float`` refuses.
_DELAY_SECONDS = re.compile(r"[0-9]+")


def asks_for_retry(status: int, headers: Any) -> bool:
    return status in RETRY_STATUSES or (status == 409 and "retry-after" in headers)

JobJSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Retry:
    """How the client retries a request that met a connection error, a ``503``, or a
    ``409`` with ``Retry-After`` (a submit with this key still being processed).

    A submit carries its idempotency key through every try, so a retry never makes a second
    job. The delay before a retry is the answer's ``Retry-After`` when it has one (never
    sooner than the service asked), else ``backoff`` doubled per retry, capped at
    ``max_delay``. It gives up after ``attempts`` tries in all, when a ``Retry-After`` asks
    for more than ``max_delay``, or once the next delay would take it past ``total`` seconds
    since the first try: then the ``503``'s problem, or httpx's transport error, is raised.
    """

    attempts: int = 5
    total: float = 30.0
    max_delay: float = 10.0
    backoff: float = 0.25

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        for name in ("total", "max_delay", "backoff"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")

    def delay(self, attempt: int, retry_after: str | None, elapsed: float) -> float | None:
        """Seconds to wait before try ``attempt + 1``, or ``None`` to give up."""
        if attempt >= self.attempts:
            return None
        asked = parse_retry_after(retry_after)
        if asked is None:
            delay = min(self.backoff * 2.0 ** (attempt - 1), self.max_delay)
        elif asked > self.max_delay:
            return None  # longer than this client waits; sooner would be against the ask
        else:
            delay = asked
        if elapsed + delay > self.total:
            return None
        return delay


NO_RETRY = Retry(attempts=1)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After``: delay-seconds or an HTTP-date (RFC 9110); ``None`` when absent or
    unreadable."""
    if value is None:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def new_idempotency_key() -> str:
    # A bare UUID: the same key whether the service reads the header as sent or as a
    # structured-field string (which also takes it unquoted).
    return str(uuid.uuid4())


def idempotent_headers(headers: Mapping[str, str] | None, key: str | None
                       ) -> tuple[str, dict[str, str]]:
    """The submit's key (``key``, else an ``Idempotency-Key`` among ``headers``, else a new
    one) and the headers to send, with that key in them once."""
    given = dict(headers or {})
    for name in [name for name in given if name.lower() == "idempotency-key"]:
        value = given.pop(name)
        key = value if key is None else key
    key = key if key is not None else new_idempotency_key()
    return key, {**given, "Idempotency-Key": key}


def is_problem(response: httpx.Response) -> bool:
    mime = str(response.headers.get("content-type", "")).split(";", 1)[0].strip().lower()
    return mime == "application/problem+json"


def is_event_stream(response: httpx.Response) -> bool:
    mime = str(response.headers.get("content-type", "")).split(";", 1)[0].strip().lower()
    return mime == EVENT_STREAM


def error_of(response: httpx.Response) -> ClientError:
    """The exception for an answer that is not the one asked for (its body is read)."""
    if is_problem(response):
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        if isinstance(body, dict):
            return problem_error(response, body)
    text = response.text[:200] if response.content else "no body"
    return UnexpectedResponse(response, text)


def job_of(response: httpx.Response) -> JobJSON:
    """The job JSON of a 2xx answer; anything else raises."""
    if not response.is_success:
        raise error_of(response)
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise UnexpectedResponse(response, "the body is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("id"), str) or \
            not isinstance(body.get("status"), str):
        raise UnexpectedResponse(response, "the body is not a job")
    return body


def job_of_event(event: ServerSentEvent, current: Mapping[str, Any]) -> JobJSON | None:
    """A stream event's job: its data is the job JSON (or a part of it, merged in)."""
    try:
        data = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    return {**current, **data}


def location_of(response: httpx.Response, header: str = "location") -> str | None:
    """A header's URL, made absolute against the URL the answer came from."""
    value = response.headers.get(header)
    return None if value is None else str(response.url.join(value))


def long_poll_timeout(timeout: httpx.Timeout, wait: float) -> httpx.Timeout:
    """The client's timeouts, with the read timeout lengthened by the time the service is
    asked to hold the answer: a long-poll is silent that long on purpose."""
    read = None if timeout.read is None else timeout.read + wait
    return httpx.Timeout(connect=timeout.connect, read=read, write=timeout.write,
                         pool=timeout.pool)


# A stream silent this long is taken for a dead connection (a peer gone without a FIN, a
# proxy that dropped it) and opened again with Last-Event-ID: four keep-alive intervals at
# the service's default (15 s). Without any bound such a stream would hang a wait forever.
STREAM_IDLE_TIMEOUT = 60.0


def stream_timeout(timeout: httpx.Timeout, read: float | None = None) -> httpx.Timeout:
    """The client's timeouts for an event stream, but its read timeout:
    ``STREAM_IDLE_TIMEOUT`` (or ``read``, what a blocking wait has left, if sooner). A
    stream is silent between events for as long as the service's keep-alive interval
    (15 s by default), which the client cannot know, and the client's own read timeout
    (httpx's default is 5 s) would cut every quiet stream."""
    idle = STREAM_IDLE_TIMEOUT if read is None else min(read, STREAM_IDLE_TIMEOUT)
    return httpx.Timeout(connect=timeout.connect, read=idle, write=timeout.write,
                         pool=timeout.pool)


def reconnect_delay(retry: Retry, asked_ms: int | None, failures: int) -> float:
    """Seconds to wait before opening a stream again: the reconnection time the stream
    asked for (its ``retry`` field, in milliseconds), else ``retry.backoff``; doubled for
    each stream in a row that ended without a byte (``failures``), up to ``retry.max_delay``
    (never below what the stream asked)."""
    base = retry.backoff if asked_ms is None else asked_ms / 1000
    if failures == 0:
        return base
    return max(base, min(base * 2.0 ** failures, retry.max_delay))


@dataclass(frozen=True, slots=True)
class JobEvent:
    """A change seen in a job: ``kind`` is ``"status"`` (a new status, and the first state
    seen) or ``"progress"`` (a new ``progress``, the status unchanged); ``job`` is the job
    JSON as of the change."""

    kind: Literal["status", "progress"]
    job: JobJSON
    event_id: str | None = None  # the stream's event id, when it came from a stream

    @property
    def status(self) -> str:
        return str(self.job["status"])

    @property
    def progress(self) -> Any:
        return self.job.get("progress")

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL


def change_of(before: Mapping[str, Any] | None, after: JobJSON,
              event_id: str | None = None) -> JobEvent | None:
    if before is None or before.get("status") != after.get("status"):
        return JobEvent("status", after, event_id)
    if before.get("progress") != after.get("progress"):
        return JobEvent("progress", after, event_id)
    return None
