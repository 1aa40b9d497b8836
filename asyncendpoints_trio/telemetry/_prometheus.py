"""The Prometheus page: built at scrape time from the numbers the runtime keeps anyway.

Nothing is counted twice: the job counters and histograms are the ``JobRecorder``'s, the
lease, fencing and reclaim counters the actors' statistics, the restarts the supervisors',
the store's the ``InstrumentedStore``'s. The fleet-wide queue gauges are the one thing read
from the store for the page: at most once a second however often it is scraped, and never
longer than ``COUNTS_TIMEOUT`` (a down Redis gives a page without them, not a hung scrape).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..stores._protocol import JobStore
from ._histogram import HistogramSnapshot
from ._instrumented import InstrumentedStore
from ._recorder import JobMetrics

PREFIX = "asyncendpoints_"
COUNTS_EVERY = 1.0  # seconds between two reads of the store-wide gauges
COUNTS_TIMEOUT = 0.25  # seconds a scrape may wait for them


def _buckets(snapshot: HistogramSnapshot) -> list[tuple[str, float]]:
    pairs = [(repr(bound), float(count))
             for bound, count in zip(snapshot.buckets, snapshot.counts, strict=False)]
    pairs.append(("+Inf", float(snapshot.count)))
    return pairs


class _Collector(Collector):
    def __init__(self, page: MetricsPage) -> None:
        self.page = page

    def collect(self) -> Iterator[Metric]:
        yield from self.page.families()


class MetricsPage:
    """One app's metrics. ``runtime`` is read afresh at every scrape: the runtime exists
    only while the app serves, and its numbers are the ones that count."""

    def __init__(self, runtime: Callable[[], Any], store: Callable[[], JobStore]) -> None:
        self._runtime = runtime
        self._store = store
        self._counts: Mapping[str, int] | None = None
        self._counts_at = -float("inf")
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    async def render(self) -> bytes:
        await self._refresh_counts()
        return generate_latest(self.registry)

    async def _refresh_counts(self) -> None:
        now = trio.current_time()
        if now - self._counts_at < COUNTS_EVERY:
            await trio.lowlevel.checkpoint()
            return
        self._counts_at = now
        self._counts = None
        store = self._store()
        with trio.move_on_after(COUNTS_TIMEOUT) as waited:
            try:
                self._counts = await store.counts()
            except Exception:
                self._counts = None  # the store's errors are counted by its wrapper
        if waited.cancelled_caught and isinstance(store, InstrumentedStore):
            # The wrapper sees a cancellation, which is no error of the store's; a store
            # that does not answer is one, and the error counter is where an alert looks.
            store.count_error("counts")

    def families(self) -> Iterator[Metric]:
        runtime = self._runtime()
        if runtime is not None:
            yield from self._job_families(runtime.recorder.snapshot())
            yield from self._actor_families(runtime)
        if self._counts is not None:
            queue = GaugeMetricFamily(PREFIX + "queue_jobs", "Jobs in the store by status, "
                                      "fleet-wide", labels=["status"])
            for status, count in sorted(self._counts.items()):
                queue.add_metric([status], count)
            yield queue
        store = self._store()
        if isinstance(store, InstrumentedStore):
            yield from self._store_families(store)

    def _job_families(self, jobs: JobMetrics) -> Iterator[Metric]:
        submitted = CounterMetricFamily(PREFIX + "jobs_submitted", "Jobs stored by submits "
                                        "on this instance", labels=["job_name"])
        for name, count in sorted(jobs.submitted.items()):
            submitted.add_metric([name], count)
        yield submitted
        finished = CounterMetricFamily(PREFIX + "jobs_finished", "Jobs this instance ended",
                                       labels=["job_name", "status"])
        for (name, status), count in sorted(jobs.finished.items()):
            finished.add_metric([name, status], count)
        yield finished
        retries = CounterMetricFamily(PREFIX + "job_retries", "Failed attempts scheduled "
                                      "for a retry", labels=["job_name"])
        for name, count in sorted(jobs.retries.items()):
            retries.add_metric([name], count)
        yield retries
        running = GaugeMetricFamily(PREFIX + "jobs_running", "Handlers running on this "
                                    "instance", labels=["job_name"])
        for name, count in sorted(jobs.running.items()):
            running.add_metric([name], count)
        yield running
        wait = HistogramMetricFamily(PREFIX + "job_queue_wait_seconds", "From submit (or a "
                                     "retry's due time) to the start of the attempt",
                                     labels=["job_name"])
        for name, snapshot in sorted(jobs.queue_wait.items()):
            wait.add_metric([name], _buckets(snapshot), snapshot.total)
        yield wait
        run = HistogramMetricFamily(PREFIX + "job_run_seconds", "How long attempts ran, by "
                                    "how they ended", labels=["job_name", "outcome"])
        for (name, outcome), snapshot in sorted(jobs.run.items()):
            run.add_metric([name, outcome], _buckets(snapshot), snapshot.total)
        yield run

    def _actor_families(self, runtime: Any) -> Iterator[Metric]:
        stats = runtime.statistics()
        counters = (
            ("leases_lost", "Handlers stopped because their lease was lost or in doubt",
             stats.lease_keeper.lost if stats.lease_keeper else 0),
            ("outcomes_fenced", "Outcomes the store refused: the lease had moved on",
             stats.outcomes.fenced if stats.outcomes else 0),
            ("jobs_reclaimed", "Jobs whose expired lease this instance's sweeps reclaimed",
             stats.recovery.reclaimed + stats.recovery.expired_failed),
        )
        for name, doc, value in counters:
            yield CounterMetricFamily(PREFIX + name, doc, value=value)
        restarts = CounterMetricFamily(PREFIX + "actor_restarts", "Actor restarts after a "
                                       "crash", labels=["actor"])
        for actor, health in sorted(runtime.health()["actors"].items()):
            restarts.add_metric([actor], health["restarts"])
        yield restarts

    def _store_families(self, store: InstrumentedStore) -> Iterator[Metric]:
        metrics = store.metrics()
        errors = CounterMetricFamily(PREFIX + "store_errors", "Store calls that failed",
                                     labels=["operation"])
        for operation in sorted(metrics.calls):
            errors.add_metric([operation], metrics.errors.get(operation, 0))
        yield errors
        seconds = HistogramMetricFamily(PREFIX + "store_operation_seconds", "How long store "
                                        "calls took", labels=["operation"])
        for operation, snapshot in sorted(metrics.seconds.items()):
            seconds.add_metric([operation], _buckets(snapshot), snapshot.total)
        yield seconds
