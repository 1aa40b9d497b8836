"""What tracing adds per job, and how much of it is the OpenTelemetry SDK's own.

Times, in one process, the spans one job makes on our path (``send`` with its context
stored, ``process`` under the stored context) against the floor: the SDK making two bare
spans. Run under the setups of bench/_telemetry.py::

    BENCH_TELEMETRY=tracing python bench/span_cost.py
    BENCH_TELEMETRY=sampled python bench/span_cost.py
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _telemetry
from opentelemetry import trace

from asyncendpoints_trio.telemetry._tracing import (
    current_context,
    end_attempt,
    process_span,
    send_span,
)

N = 20_000


def ours() -> None:
    with send_span("Echo", "default") as span:
        if span.is_recording():
            span.set_attribute("messaging.message.id", "7d3c0f5e")
        stored = current_context()
    with process_span("Echo", "7d3c0f5e", 1, "default", stored) as span:
        end_attempt(span, "completed", None)


_tracer = trace.get_tracer("bench")


def floor() -> None:
    _tracer.start_span("send Echo").end()
    _tracer.start_span("process Echo").end()


def per_call_us(fn: Callable[[], None]) -> float:
    for _ in range(2_000):
        fn()
    start = time.perf_counter()
    for _ in range(N):
        fn()
    return (time.perf_counter() - start) / N * 1e6


def main() -> None:
    _telemetry.install()
    print(f"BENCH_TELEMETRY={_telemetry.MODE}: per job, our spans "
          f"{per_call_us(ours):.1f} us; the SDK's two bare spans {per_call_us(floor):.1f} us")


if __name__ == "__main__":
    main()
