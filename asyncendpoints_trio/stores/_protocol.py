"""The store contract. ``MemoryStore`` and ``RedisStore`` implement it; one test suite checks both.

Every method is one atomic step on the store: a job is never seen half-changed. Times passed
in are *durations*; each store turns them into deadlines on its own clock (Trio's clock for
``MemoryStore``, the Redis server's ``TIME`` for ``RedisStore``), so no caller's clock ever
decides when a lease expires.

Writes that belong to a running job carry its ``Lease``; the store refuses them (returns
``False``) when the job's fencing token moved on, i.e. when the lease was lost and the job
was reclaimed by someone else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .._job import EMPTY_CONTEXT, HttpContext, Job
from ._feeds import JobWatch


@dataclass(frozen=True, slots=True)
class NewJob:
    id: str
    name: str
    payload: bytes
    max_retries: int
    context: HttpContext = EMPTY_CONTEXT
    idempotency_key: str | None = None  # already scoped by the caller (route, owner)
    # Hash of (name, payload): the same key with another fingerprint is a conflict.
    fingerprint: str = ""
    priority: int = 0  # MIN_PRIORITY..MAX_PRIORITY; higher is claimed first
    delay: float | None = None  # seconds: stored Scheduled, Queued once they have passed
    principal: str | None = None  # the app's owner claim, kept with the job
    trace: str = ""  # W3C trace context of the submit (traceparent, tracestate), or ""
    # The client chose the id: a store keeps it as it is (else it may draw another, see
    # stores/_partitions.py).
    id_chosen: bool = False


@dataclass(frozen=True, slots=True)
class Lease:
    job_id: str
    token: int
    # The instance the lease was granted to. Writes check it besides the token: after a
    # Redis rollback (AOF everysec, failover) a token may be granted twice, never to the
    # same instance id. Empty: check the token alone.
    owner: str = ""


@dataclass(frozen=True, slots=True)
class Claimed:
    job: Job
    lease: Lease


@dataclass(frozen=True, slots=True)
class IdleOffer:
    """An idle instance's offer, while it waits for work, to take up to ``free`` jobs
    leased straight to it (``lease_ttl`` seconds), so that its wait returns them ready to
    run. Stores that cannot push ignore it."""

    owner: str
    free: int
    lease_ttl: float


@dataclass(frozen=True, slots=True)
class Complete:
    lease: Lease
    result: bytes
    progress: bytes | None = None  # the handler's last report, not yet written


@dataclass(frozen=True, slots=True)
class Fail:
    """A failed attempt. With ``retry_delay`` set the job is ``Scheduled`` for another try
    (its ``retryCount`` grows); with ``None`` it is ``Failed`` for good."""

    lease: Lease
    error: Mapping[str, Any]
    retry_delay: float | None
    progress: bytes | None = None


@dataclass(frozen=True, slots=True)
class Release:
    """Hand a job back to the queue without charging an attempt (a drain, a lease in
    doubt, a claim nobody knew of). ``ran``: its handler had started, so the job's history
    shows the cut-short run."""

    lease: Lease
    ran: bool = False
    progress: bytes | None = None


@dataclass(frozen=True, slots=True)
class AckCancel:
    """The handler of a job whose cancellation was requested has stopped: ``Canceled``."""

    lease: Lease
    progress: bytes | None = None


Outcome = Complete | Fail | Release | AckCancel


@dataclass(frozen=True, slots=True)
class Submitted:
    job: Job
    created: bool  # False: an idempotency key matched an existing job


@dataclass(frozen=True, slots=True)
class HeartbeatReply:
    lost: frozenset[str] = frozenset()  # leases the store refused: stop those handlers
    cancel_requested: frozenset[str] = frozenset()  # still held, but cancellation was asked


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    reclaimed: int = 0  # expired leases put back in the queue
    expired_failed: int = 0  # expired leases whose job had no retries left
    promoted: int = 0  # Scheduled jobs whose delay ended
    purged: int = 0  # terminal jobs past their retention
    # Seconds until the earliest lease deadline or retry due time, if any: when the next
    # sweep has work. Lets recovery reclaim within a lease TTL without polling fast.
    next_in: float | None = None


@runtime_checkable
class JobStore(Protocol):
    async def submit(
        self, jobs: Sequence[NewJob], *, max_queued: int | None = None
    ) -> list[Submitted | Exception]:
        """Store new jobs as ``Queued`` (``Scheduled`` with a ``delay``) in one step, in order.

        Per job the answer is ``Submitted``, or the exception for that job alone:
        ``IdempotencyConflict`` or ``QueueFull``, or ``ReplicationTimeout`` for a job stored
        (or found) but not confirmed by the replicas a store waits for (its ``reply``: the
        ``Submitted``). Store failures raise for the whole batch.
        """
        ...

    async def get(self, job_id: str) -> Job | None: ...

    async def claim(self, owner: str, limit: int, lease_ttl: float) -> list[Claimed]:
        """Move up to ``limit`` queued jobs to ``InProgress`` under leases held by ``owner``.

        Each claim increments the job's fencing token. Released jobs first, then by priority
        as a bounded head start (see ``PRIORITY_STEP``), oldest first within a priority.
        """
        ...

    async def wait_for_work(self, timeout: float,
                            idle: IdleOffer | None = None) -> list[Claimed]:
        """Return when there may be work to claim, or after ``timeout`` seconds.

        Spurious returns are allowed; callers claim and wait again. With ``idle``, the
        store may instead lease jobs to ``idle.owner`` while it waits (at most
        ``idle.free``) and return them, already claimed: the caller holds them as if its
        claim had returned them (their leases count from the moment this call began). A
        store that does not push returns ``[]``.
        """
        ...

    async def heartbeat(
        self, owner: str, leases: Sequence[Lease], lease_ttl: float,
        progress: Mapping[str, bytes] | None = None,
    ) -> HeartbeatReply:
        """Extend every lease in one step; report the lost ones and the cancel requests.

        ``progress``: job id -> the latest progress report (JSON text) of a job among
        ``leases``, stored with its renewal, and only where the lease still holds."""
        ...

    async def leases_of(self, owner: str) -> list[Lease]:
        """Every lease the store holds for ``owner`` now.

        An instance compares them with the jobs it knows it holds, to release those that a
        claim whose reply was lost leased to it. Costs a pass over the held leases.
        """
        ...

    async def finish(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Apply outcomes in one step; ``False`` where the lease no longer held (fenced).

        A store that waits for replicas raises ``ReplicationTimeout`` when they fell short;
        the outcomes were applied all the same, and its ``reply`` is this list."""
        ...

    async def cancel(self, job_id: str) -> Job | None:
        """Cancel a job: at once if it waits, by request if it runs. ``None``: no such job."""
        ...

    async def wait_for_terminal(self, job_id: str, timeout: float) -> Job | None:
        """The job once terminal, or as it stands after ``timeout`` seconds."""
        ...

    async def watch_events(self, on_cancel: Callable[[str], None]) -> None:
        """Run until cancelled, calling ``on_cancel(job_id)`` when a running job's
        cancellation is requested anywhere in the fleet. (Stores may use the same feed to
        end long-polls early.) Heartbeat replies carry cancel requests too, so a missed
        event only delays a cancellation, it never loses one."""
        ...

    def watch(self, job_id: str) -> AbstractAsyncContextManager[JobWatch]:
        """Follow one job's changes (status, progress, a cancel request) for as long as
        the context lasts. On entry the watch holds the job as it stands (``current``;
        ``None``: no such job); ``changed(after)`` then waits for a version past
        ``after``. Changes are coalesced to the latest state, so a slow reader costs
        no memory. Needs ``watch_events`` running on this instance for prompt news
        (Redis: one subscription for all watches; without it they are polled)."""
        ...

    async def recover(self, *, limit: int) -> RecoveryReport:
        """Reclaim expired leases, promote due retries, purge expired terminal jobs.

        Bounded by ``limit`` per kind, idempotent, and safe to run on every instance at once.
        """
        ...

    async def counts(self) -> Mapping[str, int]:
        """How many jobs wait, are scheduled and run now, fleet-wide: ``{"Queued": n,
        "Scheduled": n, "InProgress": n}``. Cheap (O(1) per status)."""
        ...

    async def ping(self) -> None:
        """Return once the store answers; raise ``StoreUnavailable`` if it cannot now."""
        ...

    def describe(self) -> str:
        """Where the store is, for messages: never credentials."""
        ...

    async def aclose(self) -> None: ...

    def statistics(self) -> Mapping[str, Any]: ...
