"""The memory store's admin bookkeeping: jobs in creation order, counts per name and status,
per-minute rates, and the instances' presence.

Creation order is one sorted list of ``(created_us, id)``: inserting and purging cost a
memmove (fast up to millions of entries), and a page walks back from its position, skipping
jobs that do not match the filter. That is the embedded store's trade: no index per filter.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterator

from .._job import Job, JobStatus
from ._admin import (
    RATE_BUCKET_SECONDS,
    RATE_BUCKETS,
    Instance,
    InstanceInfo,
    JobPage,
    JobQuery,
    PagePosition,
    RateBucket,
)


class JobIndex:
    def __init__(self) -> None:
        self._order: list[tuple[int, str]] = []
        self.by_name: Counter[tuple[str, JobStatus]] = Counter()

    @staticmethod
    def _key(job: Job) -> tuple[int, str]:
        position = PagePosition.of(job)
        return position.created_us, position.job_id

    def add(self, job: Job) -> None:
        bisect.insort(self._order, self._key(job))
        self.by_name[job.name, job.status] += 1

    def moved(self, old: Job, new: Job) -> None:
        if old.status is not new.status:
            self.by_name[old.name, old.status] -= 1
            self.by_name[new.name, new.status] += 1

    def remove(self, job: Job) -> None:
        key = self._key(job)
        at = bisect.bisect_left(self._order, key)
        if at < len(self._order) and self._order[at] == key:
            del self._order[at]
        self.by_name[job.name, job.status] -= 1

    def newest_first(self, after: PagePosition | None) -> Iterator[str]:
        end = len(self._order) if after is None else \
            bisect.bisect_left(self._order, (after.created_us, after.job_id))
        for at in range(end - 1, -1, -1):
            yield self._order[at][1]

    def page(self, query: JobQuery, job_of: Callable[[str], Job]) -> JobPage:
        jobs: list[Job] = []
        for job_id in self.newest_first(query.after):
            job = job_of(job_id)
            if (query.statuses and job.status not in query.statuses) or \
                    (query.name is not None and job.name != query.name):
                continue
            if len(jobs) == query.limit:
                return JobPage(jobs, PagePosition.of(jobs[-1]))
            jobs.append(job)
        return JobPage(jobs, None)


class Rates:
    """Per-minute counts of submitted, completed and failed jobs (wall-clock minutes)."""

    def __init__(self) -> None:
        self._buckets: dict[int, Counter[str]] = {}

    def add(self, wall: float, kind: str, n: int = 1) -> None:
        minute = int(wall // RATE_BUCKET_SECONDS)
        bucket = self._buckets.get(minute)
        if bucket is None:
            bucket = self._buckets[minute] = Counter()
            for old in [m for m in self._buckets if m <= minute - RATE_BUCKETS]:
                del self._buckets[old]
        bucket[kind] += n

    def last(self, wall: float) -> list[RateBucket]:
        now = int(wall // RATE_BUCKET_SECONDS)
        out = []
        for minute in range(now - RATE_BUCKETS + 1, now + 1):
            counts = self._buckets.get(minute, Counter())
            out.append(RateBucket(minute * RATE_BUCKET_SECONDS, counts["submitted"],
                                  counts["completed"], counts["failed"]))
        return out


class Presence:
    """Live instances; liveness on the store's (Trio) clock, times shown on the wall's."""

    def __init__(self) -> None:
        self._live: dict[str, tuple[Instance, float]] = {}

    def announce(self, info: InstanceInfo, ttl: float, now: float, wall: float) -> None:
        self._live[info.id] = (Instance(info, wall, wall + ttl), now + ttl)

    def live(self, now: float) -> list[Instance]:
        for gone in [i for i, (_, until) in self._live.items() if until <= now]:
            del self._live[gone]
        return [self._live[i][0] for i in sorted(self._live)]
