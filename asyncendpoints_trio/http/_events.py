"""The job's event stream: ``GET /jobs/<id>`` with ``Accept: text/event-stream``.

Server-Sent Events, one per change of the job: the job as it stands at once, then one per
status change and per progress report, then the terminal one, and the stream closes.
Each event's ``id`` is the job's version, which the store grows with every change, so it
means the same on every instance: a client that reconnects with ``Last-Event-ID`` (a
browser's ``EventSource`` does it by itself) gets the current state only if the job moved
on since, and a finished job always gets its terminal event. Comments every
``sse_keepalive`` seconds keep proxies from closing a quiet stream.

The stream follows the job through ``JobStore.watch``: one slot per stream holding the
latest state, fed by one fan-out per instance (see stores/_feeds.py), so thousands of
streams cost one Redis subscription and a stream that cannot keep up skips to the latest
state instead of buffering.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import orjson
import trio
from quart import Response, request

from .._errors import StoreError
from .._job import Job
from .._job_json import job_to_obj
from ..stores._feeds import JobWatch, WatchEnded
from ._problems import Problem

if TYPE_CHECKING:
    from ._endpoints import AsyncEndpoints

log = logging.getLogger("asyncendpoints_trio.events")

EVENT_STREAM = "text/event-stream"
KEEP_ALIVE = b": keep-alive\n\n"


class EventStreams:
    """The event streams an app serves now, so that a shutdown can end them: Hypercorn
    closes the app's lifespan only after its connections, and an open stream would hold
    the drain for the whole graceful timeout."""

    def __init__(self) -> None:
        self._watches: set[JobWatch] = set()
        self.ending = False

    def add(self, watch: JobWatch) -> None:
        if self.ending:
            watch.end()  # one event, then the stream closes
        self._watches.add(watch)

    def discard(self, watch: JobWatch) -> None:
        self._watches.discard(watch)

    def end_all(self) -> None:
        self.ending = True
        for watch in self._watches:
            watch.end()

    def __len__(self) -> int:
        return len(self._watches)


def wants_event_stream() -> bool:
    """The request prefers an event stream to JSON (as ``EventSource`` asks)."""
    accept = request.accept_mimetypes
    return accept.best_match(["application/json", EVENT_STREAM]) == EVENT_STREAM and \
        accept[EVENT_STREAM] > 0


def _last_event_id() -> int | None:
    raw = request.headers.get("Last-Event-ID")
    if raw is None or raw.strip() == "":
        return None
    try:
        seen = int(raw.strip())
    except ValueError:
        seen = -1
    if seen < 0:
        raise Problem(400, detail=f"Last-Event-ID must be an event id of this stream (a "
                      f"non-negative integer), got {raw[:32]!r}", code="BadLastEventId")
    return seen


def event_kind(previous: Job | None, job: Job) -> str:
    """``terminal`` for the last event; ``progress`` when only the progress changed;
    ``status`` otherwise (the first event, a status change, a cancel request)."""
    if job.is_terminal:
        return "terminal"
    if previous is not None and previous.status is job.status and \
            previous.cancel_requested == job.cancel_requested and \
            previous.progress != job.progress:
        return "progress"
    return "status"


def encode_event(job: Job, kind: str, *, stack_traces: bool, retry_ms: int | None = None) -> bytes:
    data = orjson.dumps(job_to_obj(job, stack_traces=stack_traces))  # one line: no newlines
    head = b"" if retry_ms is None else b"retry: %d\n" % retry_ms
    return head + b"id: %d\nevent: %s\ndata: %s\n\n" % (job.version, kind.encode(), data)


def event_stream(endpoints: AsyncEndpoints, job: Job) -> Response:
    """The streaming answer for ``job``, which the caller read and may show. Raises
    ``Problem`` (400) for a malformed ``Last-Event-ID``."""
    seen = _last_event_id()
    response = Response(_events(endpoints, job, seen), status=200, headers={
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",  # nginx: pass each event on at once
    }, content_type=EVENT_STREAM)
    response.timeout = None  # Quart's RESPONSE_TIMEOUT would cut a long stream
    return response


async def _events(endpoints: AsyncEndpoints, first: Job, seen: int | None
                  ) -> AsyncIterator[bytes]:
    # Quart closes this generator (aclose) when the response ends or the client leaves,
    # and a client that leaves cancels the request: the wait below ends at once, and the
    # watch is closed on the way out.
    config = endpoints.config
    traces = config.expose_stack_traces
    streams = endpoints.event_streams
    try:
        async with endpoints.store.watch(first.id) as watch:
            streams.add(watch)
            try:
                job = watch.current if watch.current is not None else first
                if seen is None or job.version > seen or job.is_terminal:
                    yield encode_event(job, event_kind(None, job), stack_traces=traces,
                                       retry_ms=config.retry_after * 1000)
                # Either way the client holds this state now: later kinds compare with it.
                previous = job
                while not job.is_terminal:
                    changed: Job | None = None
                    with trio.move_on_after(config.sse_keepalive):
                        changed = await watch.changed(job.version)
                    if changed is None:
                        yield KEEP_ALIVE
                        continue
                    job = changed
                    yield encode_event(job, event_kind(previous, job), stack_traces=traces)
                    previous = job
            finally:
                streams.discard(watch)
    except WatchEnded:
        # The server is shutting down: the client reconnects, to another instance if
        # there is one, with its Last-Event-ID, and loses nothing.
        return
    except StoreError as exc:
        # The answer has begun: all we can do is end it. The client reconnects (after
        # ``retry``) with its Last-Event-ID and loses nothing.
        log.warning("job %s: its event stream ends early, the store failed: %s", first.id,
                    exc, extra={"job_id": first.id})
