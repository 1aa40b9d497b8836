"""A cumulative histogram: what Prometheus' histograms count, kept by us so that the page is
built from the one source of truth at scrape time."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

# Seconds, for job waits and runs: from a no-op job to an hour.
JOB_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                                  2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
# Seconds, for store round trips: from a loopback Redis to a struggling one.
STORE_BUCKETS: tuple[float, ...] = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    buckets: tuple[float, ...]  # upper bounds, +Inf not included
    counts: tuple[int, ...]  # cumulative: observations <= each bound, then all of them
    total: float  # sum of the observations

    @property
    def count(self) -> int:
        return self.counts[-1]


class Histogram:
    __slots__ = ("_bounds", "_counts", "_sum")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self._bounds = buckets
        self._counts = [0] * (len(buckets) + 1)  # per bucket, the last one for +Inf
        self._sum = 0.0

    def observe(self, value: float) -> None:
        if math.isnan(value):
            return
        self._counts[bisect.bisect_left(self._bounds, value)] += 1
        self._sum += value

    def snapshot(self) -> HistogramSnapshot:
        cumulative = []
        running = 0
        for count in self._counts:
            running += count
            cumulative.append(running)
        return HistogramSnapshot(self._bounds, tuple(cumulative), self._sum)
