"""Per-instance fan-out of job changes to the event streams that follow them.

Each stream holds a ``JobWatch``: one slot with the latest state of its job, not a queue,
so a stream that cannot keep up skips to the newest state and its memory stays one job
snapshot (shared by every watch of that job). The stores feed it: ``MemoryStore`` on every
change it makes, ``RedisStore`` from its one pub/sub subscription per instance.
"""

from __future__ import annotations

from collections.abc import Iterator

import trio

from .._job import Job


class WatchEnded(Exception):
    """The watch was ended from outside: the server is shutting down, or the job is gone."""


class JobWatch:
    __slots__ = ("_ended", "_event", "_latest", "current", "job_id")

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.current: Job | None = None  # the job as it stood when the watch began
        self._latest: Job | None = None
        self._event = trio.Event()
        self._ended = False

    @property
    def latest(self) -> Job | None:
        return self._latest

    def offer(self, job: Job) -> None:
        if self._latest is None or job.version > self._latest.version:
            self._latest = job
            self._event.set()

    def end(self) -> None:
        """Wake the reader with ``WatchEnded``, now and at every later wait."""
        self._ended = True
        self._event.set()

    async def changed(self, after: int) -> Job:
        """The latest state once its version is past ``after``; ``WatchEnded`` once
        ``end()`` was called."""
        while self._latest is None or self._latest.version <= after:
            if self._ended:
                raise WatchEnded
            # A fresh event after the check, with no checkpoint between: no offer is missed.
            self._event = trio.Event()
            await self._event.wait()
        return self._latest


class JobFeeds:
    def __init__(self) -> None:
        self._watches: dict[str, set[JobWatch]] = {}
        self._count = 0
        self._counted = trio.Event()

    def open(self, job_id: str) -> JobWatch:
        watch = JobWatch(job_id)
        self._watches.setdefault(job_id, set()).add(watch)
        self._recount(+1)
        return watch

    def close(self, watch: JobWatch) -> None:
        watches = self._watches.get(watch.job_id)
        if watches is not None and watch in watches:
            watches.discard(watch)
            if not watches:
                del self._watches[watch.job_id]
            self._recount(-1)

    def _recount(self, by: int) -> None:
        self._count += by
        self._counted.set()
        self._counted = trio.Event()

    async def wait_for_count(self, at_most: int) -> None:
        """Until at most ``at_most`` watches are open (tests, drains)."""
        while self._count > at_most:
            await self._counted.wait()

    def publish(self, job: Job) -> None:
        for watch in self._watches.get(job.id, ()):
            watch.offer(job)

    def known_version(self, job_id: str) -> int:
        """The version every watch of the job has seen at least (-1: none, or unwatched)."""
        seen = [(w.latest or w.current) for w in self._watches.get(job_id, ())]
        return min((job.version if job is not None else -1) for job in seen) if seen else -1

    def end_job(self, job_id: str) -> None:
        """End the watches of a job that is gone: their streams close, and a reconnect
        hears 404."""
        for watch in self._watches.get(job_id, ()):
            watch.end()

    def watched(self, job_id: str) -> bool:
        return job_id in self._watches

    def job_ids(self) -> Iterator[str]:
        return iter(list(self._watches))

    def __len__(self) -> int:
        return self._count
