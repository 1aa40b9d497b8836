"""``AsyncClient``: the client for async code, on ``httpx.AsyncClient``, so the same code runs
under Trio and asyncio (httpx and the waits here go through anyio)."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import Any

import anyio
import httpx

from ._core import (
    JSON_ACCEPT,
    TERMINAL,
    JobEvent,
    JobJSON,
    Retry,
    asks_for_retry,
    change_of,
    idempotent_headers,
    is_event_stream,
    job_of,
    job_of_event,
    location_of,
    long_poll_timeout,
    parse_retry_after,
    reconnect_delay,
    stream_timeout,
)
from ._errors import ClientError, JobCanceled, JobFailed, WaitTimeout
from ._sse import SSEDecoder

# The errors worth another try: the network, a timeout, a connection the peer dropped.
# (Not httpx.UnsupportedProtocol or a bad URL: those fail the same way every time.)
RETRYABLE = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)

# The job as an answer (or a stream event, with its id) showed it.
Seen = tuple[JobJSON, str | None]

# How long a stream may stay open after its final event before the client hangs up.
_DRAIN = 1.0

_sleep = anyio.sleep  # the one place this module waits (tests watch it)


class AsyncClient:
    """Submit jobs to an asyncendpoints-trio service (or any API that speaks its protocol)
    and follow them.

    Pass an ``httpx.AsyncClient`` as ``http`` for its base URL, headers, auth, timeouts and
    transport (it stays yours to close), or a ``base_url`` and any other ``httpx.AsyncClient``
    options to have one made (closed with this client). ``retry`` says how connection
    errors and ``503`` answers are retried; ``poll_wait`` is the ``?wait=`` of each long-poll
    (the service caps it), ``events_poll`` the one ``events()`` uses without a stream.
    ``stream``: ``None`` asks for a server-sent event stream and falls back to long-polling
    where the service does not offer one; ``False`` never asks; ``True`` always asks.
    """

    def __init__(self, base_url: str | httpx.URL = "", *, http: httpx.AsyncClient | None = None,
                 retry: Retry | None = None, poll_wait: float = 10.0,
                 events_poll: float = 1.0, stream: bool | None = None,
                 **httpx_options: Any) -> None:
        if http is not None and (base_url or httpx_options):
            raise TypeError("give either http= or base_url and httpx options, not both")
        self.http = http if http is not None else httpx.AsyncClient(base_url=base_url,
                                                                    **httpx_options)
        self._owns_http = http is None
        self.retry = retry or Retry()
        self.poll_wait = poll_wait
        self.events_poll = events_poll
        self._stream = stream
        self._streams_offered: bool | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self.http.aclose()

    async def submit(self, path: str, *, json: Any = None, content: bytes | None = None,
                     headers: Mapping[str, str] | None = None,
                     params: Mapping[str, Any] | None = None, method: str = "POST",
                     idempotency_key: str | None = None) -> AsyncJobHandle:
        """Send a job request; return its handle once the service has stored it.

        Every submit carries an ``Idempotency-Key`` (``idempotency_key``, or a new UUID), kept
        through the retries, so a retried submit is the same job. A ``200`` answer (the
        service waited for a fast job, ``Prefer: wait``) is a handle on the finished job.
        """
        key, sent = idempotent_headers(headers, idempotency_key)
        request = self.http.build_request(method, path, json=json, content=content,
                                          params=params, headers=sent)
        response = await self.send(request)
        return AsyncJobHandle(self, job_of(response), location_of(response),
                              location_of(response, "operation-location"), key)

    async def job(self, location: str) -> AsyncJobHandle:
        """A handle on a job by its URL (``Location``), read now."""
        handle = AsyncJobHandle(self, {}, str(self.http.base_url.join(location)))
        await handle.refresh()
        return handle

    async def send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        """Send ``request`` with the client's retries: connection errors and ``503`` answers
        are tried again as ``retry`` says; the last answer (or error) is the caller's."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self.http.send(request, stream=stream)
            except RETRYABLE:
                delay = self.retry.delay(attempt, None, time.monotonic() - started)
                if delay is None:
                    raise
            else:
                if not asks_for_retry(response.status_code, response.headers):
                    return response
                delay = self.retry.delay(attempt, response.headers.get("retry-after"),
                                         time.monotonic() - started)
                if delay is None:
                    await response.aread()
                    return response
                await response.aclose()
            await _sleep(delay)

    def _asks_for_stream(self) -> bool:
        if self._stream is not None:
            return self._stream
        return self._streams_offered is not False


class AsyncJobHandle:
    """One job: ``id``, ``status``, ``location``, and ``job``, its JSON as last seen."""

    def __init__(self, client: AsyncClient, job: JobJSON, location: str | None,
                 operation_location: str | None = None,
                 idempotency_key: str | None = None) -> None:
        self.client = client
        self.job = job
        self.location = location
        self.operation_location = operation_location
        self.idempotency_key = idempotency_key

    def __repr__(self) -> str:
        return f"<AsyncJobHandle {self.id} {self.status}>"

    @property
    def id(self) -> str:
        return str(self.job.get("id"))

    @property
    def status(self) -> str:
        return str(self.job.get("status"))

    @property
    def progress(self) -> Any:
        return self.job.get("progress")

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    async def refresh(self) -> JobJSON:
        """Read the job now."""
        request = self.client.http.build_request("GET", self._location(), headers=JSON_ACCEPT)
        return self._seen(job_of(await self.client.send(request)))

    async def wait(self, timeout: float | None = None) -> JobJSON:
        """The job once it is final (``Completed``, ``Failed`` or ``Canceled``); raises
        ``WaitTimeout`` if it is not within ``timeout`` seconds."""
        with anyio.move_on_after(float("inf") if timeout is None else timeout):
            async with aclosing(self._snapshots(self.client.poll_wait)) as snapshots:
                async for job, _ in snapshots:
                    if job["status"] in TERMINAL:
                        return job
        raise WaitTimeout(self.job, float("inf") if timeout is None else timeout)

    async def result(self, timeout: float | None = None) -> Any:
        """The job's result, once ``Completed``; ``JobFailed`` (with the job's ``error``) or
        ``JobCanceled`` if it ended otherwise."""
        job = await self.wait(timeout)
        if job["status"] == "Failed":
            raise JobFailed(job)
        if job["status"] == "Canceled":
            raise JobCanceled(job)
        return job.get("result")

    async def cancel(self) -> JobJSON:
        """Ask the service to cancel the job: queued jobs are ``Canceled`` at once, running
        ones shortly (``cancelRequested``). A final job raises ``ClientProblemError``
        (``409 JobFinished``)."""
        request = self.client.http.build_request("DELETE", self._location())
        return self._seen(job_of(await self.client.send(request)))

    async def events(self) -> AsyncGenerator[JobEvent, None]:
        """Each change of the job until it is final: the current state first, then each new
        status and each new progress. From the service's event stream when it offers one;
        else from long-polls of ``events_poll`` seconds (changes between two of them are
        seen together). Leaving early: ``async with contextlib.aclosing(job.events())``."""
        previous: JobJSON | None = None
        async with aclosing(self._snapshots(self.client.events_poll)) as snapshots:
            async for job, event_id in snapshots:
                change = change_of(previous, job, event_id)
                previous = job
                if change is not None:
                    yield change

    # -- following the job ------------------------------------------------------------------

    def _location(self) -> str:
        if self.location is None:
            raise ClientError(f"job {self.id}: the service gave no Location to follow")
        return self.location

    def _seen(self, job: JobJSON) -> JobJSON:
        self.job = job
        return job

    async def _snapshots(self, poll_wait: float) -> AsyncGenerator[Seen, None]:
        """The job as each answer (or stream event) shows it, until it is final."""
        location = self._location()
        if self.done:
            yield self.job, None
            return
        if self.client._asks_for_stream():
            async with aclosing(self._streamed(location)) as streamed:
                async for seen in streamed:
                    yield seen
            if self.done:
                return
        while True:
            yield await self._long_poll(location, poll_wait), None
            if self.done:
                return

    async def _long_poll(self, location: str, wait: float) -> JobJSON:
        http = self.client.http
        request = http.build_request("GET", location, headers=JSON_ACCEPT,
                                     params={"wait": f"{wait:g}"},
                                     timeout=long_poll_timeout(http.timeout, wait))
        started = time.monotonic()
        response = await self.client.send(request)
        job = self._seen(job_of(response))
        if job["status"] not in TERMINAL and time.monotonic() - started < wait / 2:
            # Answered well before the wait ran out: the service caps long-polls (or has
            # them off), so pause as it asks rather than ask again at once.
            await _sleep(parse_retry_after(response.headers.get("retry-after")) or 1.0)
        return job

    async def _streamed(self, location: str) -> AsyncGenerator[Seen, None]:
        """The job from the service's event stream, reconnecting (``Last-Event-ID``, after
        the stream's ``retry``) when a stream ends early; returns at the final job, or to
        let long-polls go on where the service offers no stream or its streams keep ending
        without a byte."""
        last_id: str | None = None
        asked_ms: int | None = None  # the reconnection time the last stream asked for
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_id is not None:
                headers["Last-Event-ID"] = last_id
            http = self.client.http
            request = http.build_request("GET", location, headers=headers,
                                         timeout=stream_timeout(http.timeout))
            response = await self.client.send(request, stream=True)
            live = False
            try:
                if not is_event_stream(response):
                    await response.aread()
                    self.client._streams_offered = False
                    yield self._seen(job_of(response)), None
                    return
                self.client._streams_offered = True
                decoder = SSEDecoder()
                final: Seen | None = None
                lines = response.aiter_lines()
                try:
                    async for line in lines:
                        live = True
                        event = decoder.feed(line)
                        job = None if event is None else job_of_event(event, self.job)
                        if event is None or job is None:
                            continue
                        if job["status"] in TERMINAL:
                            final = self._seen(job), event.id
                            break
                        yield self._seen(job), event.id
                    if final is not None:
                        # The stream closes after its final event: read it to the end
                        # before handing the job over, since a stream left half-read
                        # leaves httpx's async generators to the garbage collector (a
                        # ResourceWarning under Trio). (No cancel scope around a yield.)
                        with anyio.move_on_after(_DRAIN):
                            async for _ in lines:
                                pass
                except RETRYABLE:
                    pass
                if final is not None:
                    yield final
                    return
                last_id = decoder.last_event_id or last_id
                if decoder.reconnection_time is not None:  # "retry: 0" is an ask too
                    asked_ms = decoder.reconnection_time
            finally:
                await response.aclose()
            # A stream that sent anything (an event, a keep-alive) worked, however long it
            # ran before it ended or broke: that is a reconnect, not a failure. Only streams
            # that end without a byte, again and again, send the client to long-polls.
            failures = 0 if live else failures + 1
            if failures >= self.client.retry.attempts:
                return
            # wait()'s timeout cancels this wait as it does the requests.
            await _sleep(reconnect_delay(self.client.retry, asked_ms, failures))
