"""The three telemetry settings the cost workloads (T1, T4) compare, from BENCH_TELEMETRY:

- ``off``: ``EndpointsConfig(metrics=False)`` and no OpenTelemetry SDK (the API's no-op);
- ``metrics`` (the default): the metrics recorded, still no SDK;
- ``tracing``: metrics, and an SDK TracerProvider sampling every span into a
  BatchSpanProcessor whose exporter drops them (the cost of making spans, not of shipping);
- ``sampled``: as ``tracing``, with the sampler production setups use,
  ``ParentBased(TraceIdRatioBased(0.1))``: one trace in ten is recorded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

MODE = os.environ.get("BENCH_TELEMETRY", "metrics")


def metrics_on() -> bool:
    return MODE != "off"


def install() -> None:
    if MODE not in ("tracing", "sampled"):
        return
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    sampler = ParentBased(TraceIdRatioBased(0.1)) if MODE == "sampled" else None
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    trace.set_tracer_provider(provider)
