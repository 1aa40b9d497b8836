"""The metrics as OpenTelemetry instruments, from the same numbers as the Prometheus page.

    from opentelemetry import metrics
    from asyncendpoints_trio import otel_instruments

    otel_instruments(endpoints, metrics.get_meter("myapp"))

Observable instruments: the SDK calls back at each collection, and the callbacks read the
runtime's recorder and statistics, so nothing is counted twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

if TYPE_CHECKING:
    from ..http._endpoints import AsyncEndpoints


def otel_instruments(endpoints: AsyncEndpoints, meter: Meter) -> None:
    """Register observable counters and gauges named like the Prometheus metrics (without
    the ``_total`` suffix, which OpenTelemetry exporters add themselves)."""

    def jobs() -> Any:
        runtime = endpoints.runtime
        return None if runtime is None else runtime.recorder.snapshot()

    def per(pick: Callable[[Any], dict[Any, int]], labels: tuple[str, ...]) -> Any:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            snapshot = jobs()
            if snapshot is None:
                return []
            return [Observation(value, dict(zip(labels, key if isinstance(key, tuple)
                                                else (key,), strict=True)))
                    for key, value in pick(snapshot).items()]

        return callback

    def stat(pick: Callable[[Any], int]) -> Any:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            runtime = endpoints.runtime
            if runtime is None:
                return []
            return [Observation(pick(runtime.statistics()))]

        return callback

    prefix = "asyncendpoints."
    meter.create_observable_counter(prefix + "jobs.submitted",
                                    [per(lambda s: s.submitted, ("job_name",))])
    meter.create_observable_counter(prefix + "jobs.finished",
                                    [per(lambda s: s.finished, ("job_name", "status"))])
    meter.create_observable_counter(prefix + "job.retries",
                                    [per(lambda s: s.retries, ("job_name",))])
    meter.create_observable_up_down_counter(prefix + "jobs.running",
                                            [per(lambda s: s.running, ("job_name",))])
    meter.create_observable_counter(prefix + "leases.lost", [stat(
        lambda s: s.lease_keeper.lost if s.lease_keeper else 0)])
    meter.create_observable_counter(prefix + "outcomes.fenced", [stat(
        lambda s: s.outcomes.fenced if s.outcomes else 0)])
    meter.create_observable_counter(prefix + "jobs.reclaimed", [stat(
        lambda s: s.recovery.reclaimed + s.recovery.expired_failed)])
