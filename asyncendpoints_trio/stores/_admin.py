"""What the admin API asks of a store, beside ``JobStore``: listing jobs, an operator's
retry and audited cancel, queue statistics, and the presence of the fleet's instances.

Both stores implement ``AdminStore``. Listing is by position, not by offset: a page ends at
a ``PagePosition`` (a job's creation time and id, which never change), and the next page
holds the jobs strictly older than it. So a job that changes status while an operator pages
is shown at most once, and exactly once if it matches the filter all along.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .._errors import ConfigurationError
from .._job import AuditEntry, Job, JobStatus

MAX_PAGE = 200
RATE_BUCKET_SECONDS = 60
RATE_BUCKETS = 15  # the buckets stats() reports: the last quarter of an hour


@dataclass(frozen=True, slots=True, order=True)
class PagePosition:
    """Where a page ended: the last job's creation time (microseconds) and id."""

    created_us: int
    job_id: str

    @classmethod
    def of(cls, job: Job) -> PagePosition:
        return cls(round(job.created_at * 1_000_000), job.id)


@dataclass(frozen=True, slots=True)
class JobQuery:
    """Newest first; ``statuses`` empty: any; ``after``: continue past that position."""

    statuses: frozenset[JobStatus] = frozenset()
    name: str | None = None
    limit: int = 50
    after: PagePosition | None = None

    def wanted(self) -> tuple[JobStatus, ...]:
        """The statuses to read, in a fixed order (every one when none is asked for)."""
        return tuple(s for s in JobStatus if not self.statuses or s in self.statuses)


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: Sequence[Job]
    next: PagePosition | None  # None: this was the last page


@dataclass(frozen=True, slots=True)
class Inspected:
    """A job as an operator sees it: with its lease deadline while it runs."""

    job: Job
    lease_expires_at: float | None  # Unix seconds; None unless InProgress


@dataclass(frozen=True, slots=True)
class Retried:
    """A retry's answer: the job as it stands (None: no such job), and whether it was put
    back in the queue (False: it was not Failed or Canceled)."""

    job: Job | None
    applied: bool


@dataclass(frozen=True, slots=True)
class RateBucket:
    at: float  # the bucket's start, Unix seconds
    submitted: int = 0
    completed: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class QueueStats:
    by_status: Mapping[str, int]  # every status; terminal ones count the jobs still retained
    by_name: Mapping[str, Mapping[str, int]]  # job name -> the same, for that name
    buckets: Sequence[RateBucket]  # oldest first, the last RATE_BUCKETS
    bucket_seconds: int = RATE_BUCKET_SECONDS


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """What an instance says of itself when it renews its presence."""

    id: str
    host: str
    pid: int
    started_at: float  # Unix seconds
    concurrency: int
    jobs_held: int = 0


@dataclass(frozen=True, slots=True)
class Instance:
    info: InstanceInfo
    last_heartbeat: float  # Unix seconds, the store's clock
    expires_at: float  # when it counts as gone unless renewed


@runtime_checkable
class AdminStore(Protocol):
    async def list_jobs(self, query: JobQuery) -> JobPage:
        """A page of jobs, newest first (by creation time, then id, both descending)."""
        ...

    async def inspect(self, job_id: str) -> Inspected | None: ...

    async def retry(self, job_id: str, *, by: str | None = None) -> Retried:
        """Put a ``Failed`` or ``Canceled`` job back in the queue with a fresh attempt
        budget (``retryCount`` 0), its error and result cleared, its retention ended, and
        an audit entry appended; its attempt history stays."""
        ...

    async def cancel_audited(self, job_id: str, *, by: str | None = None) -> Job | None:
        """``JobStore.cancel``, plus an audit entry when it changed the job."""
        ...

    async def stats(self) -> QueueStats: ...

    async def announce(self, info: InstanceInfo, ttl: float) -> None:
        """Renew ``info.id``'s presence for ``ttl`` seconds (it disappears after that)."""
        ...

    async def instances(self) -> list[Instance]:
        """The instances whose presence has not expired, by id."""
        ...


def audit_appended(audit: tuple[AuditEntry, ...], entry: AuditEntry,
                   keep: int) -> tuple[AuditEntry, ...]:
    return (*audit, entry)[-keep:]


def admin_of(store: object) -> AdminStore:
    """``store`` as an ``AdminStore``; ``ConfigurationError`` if it has no admin API."""
    if not isinstance(store, AdminStore):
        describe = getattr(store, "describe", None)
        name = describe() if callable(describe) else type(store).__name__
        raise ConfigurationError(f"{name} has no admin API (list_jobs, retry, stats, ...)")
    return store
