"""Spans, through the OpenTelemetry API only: with no SDK configured no span is made and no
trace context is stored.

A submit runs in a PRODUCER span ``send <job name>``, a child of whatever span is current
in the request (an app instrumented with OpenTelemetry's ASGI middleware gets it under its
HTTP server span). That span's W3C context is stored with the job; every attempt runs its
handler in a CONSUMER span ``process <job name>`` whose parent it is, on whichever instance
runs it. One trace thus runs from the client's request through every attempt, and spans a
handler opens nest under its attempt's.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from .._error_info import safe_str, type_name

_tracer = trace.get_tracer("asyncendpoints_trio")

SYSTEM = "asyncendpoints"

_NO_SDK = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)


def tracing_on() -> bool:
    """Whether an SDK is installed. The API's no-op spans still cost a context manager, a
    context copy and an injection per submit, a sixth of the submit path in a profile; with
    no SDK there is nothing to record, so that work is skipped. Asked each time, as an app
    may install its provider after import; once installed, a provider stays."""
    global _on
    if not _on:
        _on = not isinstance(trace.get_tracer_provider(), _NO_SDK)
    return _on


_on = False


def _attributes(operation: str, job_name: str, queue: str) -> dict[str, Any]:
    return {"messaging.system": SYSTEM, "messaging.operation.type": operation,
            "messaging.destination.name": queue, "asyncendpoints.job.name": job_name}


@contextmanager
def send_span(job_name: str, queue: str) -> Iterator[Span]:
    if not tracing_on():
        yield trace.INVALID_SPAN
        return
    # By hand rather than start_as_current_span, as process_span does: a tenth of the
    # span's cost on bench/span_cost.py.
    span = _tracer.start_span(f"send {job_name}", kind=SpanKind.PRODUCER,
                              attributes=_attributes("send", job_name, queue),
                              record_exception=False, set_status_on_exception=False)
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield span
    finally:
        otel_context.detach(token)
        span.end()


def current_context() -> str:
    """The current span's W3C context (traceparent, tracestate, baggage) as stored with a
    job; ``""`` when there is none, as without an SDK."""
    if not tracing_on():
        return ""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return orjson.dumps(carrier).decode() if carrier else ""


@contextmanager
def process_span(job_name: str, job_id: str, attempt: int, queue: str,
                 stored: str) -> Iterator[Span]:
    if not tracing_on():
        yield trace.INVALID_SPAN
        return
    parent = None
    if stored:
        try:
            parent = propagate.extract(orjson.loads(stored))
        except (ValueError, TypeError):
            parent = None  # an unreadable context starts a trace of its own
    attributes = dict(_fixed(job_name, queue))
    attributes["messaging.message.id"] = job_id
    attributes["asyncendpoints.job.attempt"] = attempt
    # start_span and attach by hand rather than start_as_current_span: two context
    # managers fewer per attempt, which the profile of a no-op job showed.
    span = _tracer.start_span(f"process {job_name}", context=parent, kind=SpanKind.CONSUMER,
                              attributes=attributes, record_exception=False,
                              set_status_on_exception=False)
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield span
    finally:
        otel_context.detach(token)
        span.end()


@functools.lru_cache(maxsize=256)
def _fixed(job_name: str, queue: str) -> tuple[tuple[str, Any], ...]:
    return tuple(_attributes("process", job_name, queue).items())


def end_attempt(span: Span, outcome: str, error: BaseException | None) -> None:
    """Say how the attempt ended: its outcome, and for a failure the exception and ERROR."""
    if not span.is_recording():
        return
    span.set_attribute("asyncendpoints.job.outcome", outcome)
    if error is not None and outcome in ("failed", "retry", "timeout"):
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type_name(type(error))}: "
                               f"{safe_str(error)}"[:200]))
