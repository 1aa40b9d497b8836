"""An app for the observability tests: jobs that complete, fail, retry and run long; the
metrics page and the health probes; and, when TRACE_FILE is set, an OpenTelemetry SDK that
writes every span as a JSON line there (each process its own file), with the ASGI
middleware around the app, as an instrumented app would have it."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from typing import Any

import trio
from quart_trio import QuartTrio

from asyncendpoints_trio import (
    AsyncContext,
    AsyncEndpoints,
    EndpointsConfig,
    NonRetryableError,
    RetryPolicy,
)

from .fleet_app import announce

app = QuartTrio(__name__)
endpoints = AsyncEndpoints(app, config=EndpointsConfig(
    shutdown_grace=1, default_retry=RetryPolicy(max_retries=2, base_delay=0.2, jitter=0)))


@endpoints.handler("Ok")
async def ok(ctx: AsyncContext[Any]) -> str:
    return "ok"


@endpoints.handler("Flaky")
async def flaky(ctx: AsyncContext[Any]) -> int:
    if ctx.attempt == 1:
        raise ValueError("the first attempt always fails")
    return ctx.attempt


@endpoints.handler("Doomed")
async def doomed(ctx: AsyncContext[Any]) -> None:
    raise NonRetryableError("never")


@endpoints.handler("Long")
async def long(ctx: AsyncContext[float]) -> str:
    await announce("started", ctx.job_id)
    await trio.sleep(ctx.request)
    return "long"


for name in ("Ok", "Flaky", "Doomed", "Long"):
    endpoints.map_async_post(name, f"/{name.lower()}")
endpoints.map_job_details("/jobs/<uuid:job_id>")
endpoints.map_metrics("/metrics")
endpoints.map_health("/healthz")


def _spans_to(path: str) -> None:
    from opentelemetry import trace
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    lock = threading.Lock()

    class JsonLines(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            with lock, open(path, "a", encoding="utf-8") as out:
                for span in spans:
                    context = span.get_span_context()
                    out.write(json.dumps({
                        "name": span.name, "kind": span.kind.name,
                        "trace_id": f"{context.trace_id:032x}",
                        "span_id": f"{context.span_id:016x}",
                        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
                        "attributes": dict(span.attributes or {}),
                        "status": span.status.status_code.name,
                        "events": [event.name for event in span.events],
                    }) + "\n")
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLines()))
    trace.set_tracer_provider(provider)
    app.asgi_app = OpenTelemetryMiddleware(app.asgi_app)  # type: ignore[method-assign]


if os.environ.get("TRACE_FILE"):
    _spans_to(os.environ["TRACE_FILE"])
