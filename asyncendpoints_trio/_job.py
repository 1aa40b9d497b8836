"""The job record, its statuses and the table of allowed status changes."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._errors import InvalidTransition


class JobStatus(enum.StrEnum):
    """Status names as the .NET original spells them, so JSON clients keep working."""

    QUEUED = "Queued"
    SCHEDULED = "Scheduled"  # failed, waiting out a retry delay
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"


TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED}
)

# The single source of truth for status changes. Stores call check_transition(); the Redis
# scripts encode the same table and a test compares them.
TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.IN_PROGRESS, JobStatus.CANCELED}),
    JobStatus.SCHEDULED: frozenset({JobStatus.QUEUED, JobStatus.CANCELED}),
    JobStatus.IN_PROGRESS: frozenset(
        {
            JobStatus.COMPLETED,
            JobStatus.FAILED,
            JobStatus.SCHEDULED,  # failed, will retry after a delay
            JobStatus.QUEUED,  # released on shutdown, or reclaimed after its lease expired
            JobStatus.CANCELED,
        }
    ),
    JobStatus.COMPLETED: frozenset(),
    # An operator's retry (the admin API): back in the queue with a fresh attempt budget.
    JobStatus.FAILED: frozenset({JobStatus.QUEUED}),
    JobStatus.CANCELED: frozenset({JobStatus.QUEUED}),
}

# What an operator may put back in the queue (``retry``): the ends that were not a success.
RETRYABLE: frozenset[JobStatus] = frozenset({JobStatus.FAILED, JobStatus.CANCELED})


def check_transition(job_id: str, old: JobStatus, new: JobStatus) -> None:
    if new not in TRANSITIONS[old]:
        raise InvalidTransition(f"job {job_id}: {old} -> {new} is not allowed")


@dataclass(frozen=True, slots=True)
class HttpContext:
    """What the HTTP request carried besides its body, kept for the handler.

    Header names are lower-cased; repeated headers and query keys keep every value.
    """

    headers: tuple[tuple[str, str], ...] = ()
    route_params: Mapping[str, str] = field(default_factory=dict)
    query_params: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    client: str | None = None  # the client's address, as the server saw it

    def to_json_obj(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "headers": [list(pair) for pair in self.headers],
            "routeParams": dict(self.route_params),
            "queryParams": {k: list(v) for k, v in self.query_params.items()},
        }
        if self.client is not None:
            obj["client"] = self.client
        return obj

    @classmethod
    def from_json_obj(cls, obj: Mapping[str, Any]) -> HttpContext:
        client = obj.get("client")
        return cls(
            headers=tuple((str(k), str(v)) for k, v in obj.get("headers", ())),
            route_params={str(k): str(v) for k, v in obj.get("routeParams", {}).items()},
            query_params={
                str(k): tuple(str(x) for x in v) for k, v in obj.get("queryParams", {}).items()
            },
            client=None if client is None else str(client),
        )


EMPTY_CONTEXT = HttpContext()

# Priorities are levels MIN_PRIORITY..MAX_PRIORITY, higher first, as a bounded head start:
# a job of priority p is placed as if it had been queued p * PRIORITY_STEP jobs earlier. So
# it overtakes lower-priority jobs queued shortly before it, but a job waits behind at most
# (MAX_PRIORITY - MIN_PRIORITY) * PRIORITY_STEP later arrivals: nothing starves.
MIN_PRIORITY = 0
MAX_PRIORITY = 9
PRIORITY_STEP = 1000

# How many attempts a job's history keeps (the latest ones; the count keeps growing).
MAX_ATTEMPTS_KEPT = 10


@dataclass(frozen=True, slots=True)
class Attempt:
    """One run of a job's handler, as its history shows it."""

    number: int  # 1 for the first run
    started_at: float | None
    ended_at: float
    outcome: str  # Completed | Failed | Retrying | Canceled | Released | LeaseExpired
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """An operator's action on a job through the admin API, kept with the job."""

    action: str  # retry | cancel
    by: str | None  # who, as the app's ``actor`` hook names them; None: not said
    at: float  # Unix seconds


# How many audit entries a job keeps (the latest ones).
MAX_AUDIT_KEPT = 20


@dataclass(frozen=True, slots=True)
class Job:
    """An immutable snapshot of one job; stores hand out snapshots, never live records.

    Times are Unix seconds (wall clock) for display; lease deadlines and retry due times
    are the store's business and live in the store, on the store's clock.
    """

    id: str
    name: str
    status: JobStatus
    payload: bytes  # the validated request, as JSON
    max_retries: int
    created_at: float
    last_updated_at: float
    retry_count: int = 0
    started_at: float | None = None
    completed_at: float | None = None
    result: bytes | None = None  # the handler's result, as JSON
    error: Mapping[str, Any] | None = None
    context: HttpContext = EMPTY_CONTEXT
    token: int = 0  # fencing token: grows with every claim
    owner: str | None = None  # instance holding the lease while InProgress
    cancel_requested: bool = False
    priority: int = MIN_PRIORITY
    # When the job last became claimable, or (Scheduled) will: a delayed start, a retry's
    # due time, a release or reclaim. None: at its creation. On the store's clock.
    due_at: float | None = None
    # Who may see the job: an owner claim derived from the submitting request by the app
    # (never a raw credential); None when the app defines no owners.
    principal: str | None = None
    attempts: tuple[Attempt, ...] = ()  # the latest MAX_ATTEMPTS_KEPT runs, oldest first
    # The W3C trace context its submit ran in: each attempt's span is its child. Not user
    # data and not part of the job JSON.
    trace: str = ""
    # The latest progress report of its handler, as JSON text (a number in [0, 1] or a
    # small object); None until one is made. Kept across attempts: only a report replaces it.
    progress: bytes | None = None
    # Grows with every stored change of the job (status, progress, a cancel request): the
    # id of its events on the event stream, the same on every instance.
    version: int = 0
    # Operators' retries and cancels (admin API), the latest MAX_AUDIT_KEPT, oldest first.
    audit: tuple[AuditEntry, ...] = ()

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def attempt(self) -> int:
        """1 for the first run, 2 for the first retry, and so on."""
        return self.retry_count + 1
