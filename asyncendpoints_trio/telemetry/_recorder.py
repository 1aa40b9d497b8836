"""What jobs do on this instance, per job name: the numbers behind the job metrics."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ._histogram import JOB_BUCKETS, Histogram, HistogramSnapshot

# How an attempt ended, as the run-time histogram's `outcome` label says it.
OUTCOMES = ("completed", "failed", "retry", "canceled", "timeout", "lease_lost", "released")


@dataclass(frozen=True, slots=True)
class JobMetrics:
    """A snapshot of ``JobRecorder``: counters keyed by job name (and status or outcome)."""

    submitted: dict[str, int] = field(default_factory=dict)
    finished: dict[tuple[str, str], int] = field(default_factory=dict)  # (name, status)
    retries: dict[str, int] = field(default_factory=dict)
    running: dict[str, int] = field(default_factory=dict)
    queue_wait: dict[str, HistogramSnapshot] = field(default_factory=dict)
    run: dict[tuple[str, str], HistogramSnapshot] = field(default_factory=dict)


class JobRecorder:
    """Updated by the actors as jobs move; read at scrape time. Plain dicts: one thread."""

    def __init__(self) -> None:
        self._submitted: Counter[str] = Counter()
        self._finished: Counter[tuple[str, str]] = Counter()
        self._retries: Counter[str] = Counter()
        self._running: Counter[str] = Counter()
        self._queue_wait: dict[str, Histogram] = {}
        self._run: dict[tuple[str, str], Histogram] = {}

    def submitted(self, name: str) -> None:
        self._submitted[name] += 1

    def started(self, name: str, waited: float | None) -> None:
        self._running[name] += 1
        if waited is not None:
            histogram = self._queue_wait.get(name)
            if histogram is None:
                histogram = self._queue_wait[name] = Histogram(JOB_BUCKETS)
            histogram.observe(max(0.0, waited))

    def ended(self, name: str, outcome: str, seconds: float) -> None:
        self._running[name] -= 1
        key = (name, outcome)
        histogram = self._run.get(key)
        if histogram is None:
            histogram = self._run[key] = Histogram(JOB_BUCKETS)
        histogram.observe(seconds)

    def finished(self, name: str, status: str) -> None:
        self._finished[(name, status)] += 1

    def retried(self, name: str) -> None:
        self._retries[name] += 1

    def snapshot(self) -> JobMetrics:
        return JobMetrics(
            submitted=dict(self._submitted), finished=dict(self._finished),
            retries=dict(self._retries), running=dict(self._running),
            queue_wait={k: h.snapshot() for k, h in self._queue_wait.items()},
            run={k: h.snapshot() for k, h in self._run.items()})


class NullRecorder(JobRecorder):
    """``metrics=False``: records nothing."""

    def submitted(self, name: str) -> None:
        pass

    def started(self, name: str, waited: float | None) -> None:
        pass

    def ended(self, name: str, outcome: str, seconds: float) -> None:
        pass

    def finished(self, name: str, status: str) -> None:
        pass

    def retried(self, name: str) -> None:
        pass
