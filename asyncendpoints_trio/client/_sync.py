"""``Client``: the same client for plain synchronous code, on ``httpx.Client``. It mirrors
``AsyncClient`` method for method; only the waiting differs (see ``JobHandle.wait``)."""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping
from contextlib import closing
from typing import Any

import httpx

from ._async import RETRYABLE
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

_sleep = time.sleep  # the one place this module waits (tests watch it)


class Client:
    """``AsyncClient`` for synchronous code: the same options, on an ``httpx.Client``."""

    def __init__(self, base_url: str | httpx.URL = "", *, http: httpx.Client | None = None,
                 retry: Retry | None = None, poll_wait: float = 10.0,
                 events_poll: float = 1.0, stream: bool | None = None,
                 **httpx_options: Any) -> None:
        if http is not None and (base_url or httpx_options):
            raise TypeError("give either http= or base_url and httpx options, not both")
        self.http = http if http is not None else httpx.Client(base_url=base_url,
                                                               **httpx_options)
        self._owns_http = http is None
        self.retry = retry or Retry()
        self.poll_wait = poll_wait
        self.events_poll = events_poll
        self._stream = stream
        self._streams_offered: bool | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def submit(self, path: str, *, json: Any = None, content: bytes | None = None,
               headers: Mapping[str, str] | None = None,
               params: Mapping[str, Any] | None = None, method: str = "POST",
               idempotency_key: str | None = None) -> JobHandle:
        """See ``AsyncClient.submit``."""
        key, sent = idempotent_headers(headers, idempotency_key)
        request = self.http.build_request(method, path, json=json, content=content,
                                          params=params, headers=sent)
        response = self.send(request)
        return JobHandle(self, job_of(response), location_of(response),
                         location_of(response, "operation-location"), key)

    def job(self, location: str) -> JobHandle:
        handle = JobHandle(self, {}, str(self.http.base_url.join(location)))
        handle.refresh()
        return handle

    def send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        """See ``AsyncClient.send``."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self.http.send(request, stream=stream)
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
                    response.read()
                    return response
                response.close()
            _sleep(delay)

    def _asks_for_stream(self) -> bool:
        if self._stream is not None:
            return self._stream
        return self._streams_offered is not False


class JobHandle:
    """``AsyncJobHandle`` for synchronous code."""

    def __init__(self, client: Client, job: JobJSON, location: str | None,
                 operation_location: str | None = None,
                 idempotency_key: str | None = None) -> None:
        self.client = client
        self.job = job
        self.location = location
        self.operation_location = operation_location
        self.idempotency_key = idempotency_key

    def __repr__(self) -> str:
        return f"<JobHandle {self.id} {self.status}>"

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

    def refresh(self) -> JobJSON:
        request = self.client.http.build_request("GET", self._location(), headers=JSON_ACCEPT)
        return self._seen(job_of(self.client.send(request)))

    def wait(self, timeout: float | None = None) -> JobJSON:
        """See ``AsyncJobHandle.wait``. Without a way to interrupt a blocking read, each
        long-poll asks for no more than the time left, and a stream is read with a read
        timeout no longer than the time left."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with closing(self._snapshots(self.client.poll_wait, deadline)) as snapshots:
            for job, _ in snapshots:
                if job["status"] in TERMINAL:
                    return job
        raise WaitTimeout(self.job, float("inf") if timeout is None else timeout)

    def result(self, timeout: float | None = None) -> Any:
        job = self.wait(timeout)
        if job["status"] == "Failed":
            raise JobFailed(job)
        if job["status"] == "Canceled":
            raise JobCanceled(job)
        return job.get("result")

    def cancel(self) -> JobJSON:
        request = self.client.http.build_request("DELETE", self._location())
        return self._seen(job_of(self.client.send(request)))

    def events(self) -> Generator[JobEvent, None, None]:
        """See ``AsyncJobHandle.events``."""
        previous: JobJSON | None = None
        with closing(self._snapshots(self.client.events_poll, None)) as snapshots:
            for job, event_id in snapshots:
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

    def _snapshots(self, poll_wait: float, deadline: float | None
                   ) -> Generator[tuple[JobJSON, str | None], None, None]:
        """The job as each answer shows it, until it is final or the deadline passes."""
        location = self._location()
        if self.done:
            yield self.job, None
            return
        if self.client._asks_for_stream():
            with closing(self._streamed(location, deadline)) as streamed:
                yield from streamed
            if self.done:
                return
        while True:
            left = poll_wait if deadline is None else min(poll_wait, deadline - time.monotonic())
            if left <= 0:
                return
            yield self._long_poll(location, left), None
            if self.done:
                return

    def _long_poll(self, location: str, wait: float) -> JobJSON:
        http = self.client.http
        request = http.build_request("GET", location, headers=JSON_ACCEPT,
                                     params={"wait": f"{wait:g}"},
                                     timeout=long_poll_timeout(http.timeout, wait))
        started = time.monotonic()
        response = self.client.send(request)
        job = self._seen(job_of(response))
        if job["status"] not in TERMINAL and time.monotonic() - started < wait / 2:
            _sleep(min(wait, parse_retry_after(response.headers.get("retry-after")) or 1.0))
        return job

    def _streamed(self, location: str, deadline: float | None
                  ) -> Generator[tuple[JobJSON, str | None], None, None]:
        """See ``AsyncJobHandle._streamed``; a blocking read cannot be cancelled, so with
        a deadline the read timeout is the time left, and so is the wait to reconnect."""
        last_id: str | None = None
        asked_ms: int | None = None
        failures = 0
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                return
            headers = {"Accept": "text/event-stream"}
            if last_id is not None:
                headers["Last-Event-ID"] = last_id
            left = None if deadline is None else max(0.001, deadline - time.monotonic())
            http = self.client.http
            request = http.build_request("GET", location, headers=headers,
                                         timeout=stream_timeout(http.timeout, left))
            response = self.client.send(request, stream=True)
            live = False
            try:
                if not is_event_stream(response):
                    response.read()
                    self.client._streams_offered = False
                    yield self._seen(job_of(response)), None
                    return
                self.client._streams_offered = True
                decoder = SSEDecoder()
                try:
                    for line in response.iter_lines():
                        live = True
                        event = decoder.feed(line)
                        job = None if event is None else job_of_event(event, self.job)
                        if job is not None and event is not None:
                            yield self._seen(job), event.id
                            if self.done:
                                return
                        if deadline is not None and time.monotonic() >= deadline:
                            return
                except RETRYABLE:
                    if deadline is not None and time.monotonic() >= deadline:
                        return
                last_id = decoder.last_event_id or last_id
                if decoder.reconnection_time is not None:
                    asked_ms = decoder.reconnection_time
            finally:
                response.close()
            # See AsyncJobHandle._streamed: only streams that end without a byte count.
            failures = 0 if live else failures + 1
            if failures >= self.client.retry.attempts:
                return
            delay = reconnect_delay(self.client.retry, asked_ms, failures)
            if deadline is not None:
                delay = min(delay, max(0.0, deadline - time.monotonic()))
            _sleep(delay)
