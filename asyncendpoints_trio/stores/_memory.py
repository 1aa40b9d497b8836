"""``MemoryStore``: the embedded default, for development, tests and single-process services.

It keeps the same promises as the Redis store (leases, fencing tokens, expiry, retention,
idempotency, priorities, delayed starts) so that code tested here behaves the same in
production. Deadlines run on Trio's clock, so tests drive lease expiry, retry delays and
retention with ``MockClock``.

Every public method finishes its change without awaiting in between, which is what makes
each one atomic under Trio's cooperative scheduling.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import orjson
import trio

from .._error_info import error_from_message
from .._errors import IdempotencyConflict, QueueFull
from .._job import (
    MAX_AUDIT_KEPT,
    RETRYABLE,
    TERMINAL,
    Attempt,
    AuditEntry,
    Job,
    JobStatus,
    check_transition,
)
from ._admin import (
    Inspected,
    Instance,
    InstanceInfo,
    JobPage,
    JobQuery,
    QueueStats,
    Retried,
    audit_appended,
)
from ._feeds import JobFeeds, JobWatch
from ._history import appended, error_summary, outcome_label
from ._memory_index import JobIndex, Presence, Rates
from ._protocol import (
    AckCancel,
    Claimed,
    Complete,
    Fail,
    HeartbeatReply,
    IdleOffer,
    Lease,
    NewJob,
    Outcome,
    RecoveryReport,
    Submitted,
)
from ._ready_queue import ReadyQueue

_S = JobStatus
_OVERHEAD = 300  # bytes a job's bookkeeping takes beside what it carries, roughly


def _size(job: Job) -> int:
    size = _OVERHEAD + len(job.payload) + len(job.result or b"") + 80 * len(job.attempts) \
        + len(job.progress or b"")
    if job.error is not None:
        try:
            size += len(orjson.dumps(job.error))
        except TypeError:
            size += 1024
    for name, value in job.context.headers:
        size += len(name) + len(value)
    return size


class MemoryStore:
    def __init__(
        self,
        *,
        retention: float = 3600.0,
        clock: Callable[[], float] = trio.current_time,
        wall_clock: Callable[[], float] = time.time,
        max_bytes: int | None = 256 * 1024 * 1024,
    ) -> None:
        """``retention``: seconds a terminal job (and its idempotency key) is kept.

        ``max_bytes`` bounds what the jobs it holds take (payloads, results, errors, HTTP
        context, about 300 bytes of bookkeeping each); submits over it answer ``QueueFull``
        until retention frees room. ``None``: no bound (then only ``max_queued`` limits it).
        """
        self.retention = retention
        self.max_bytes = max_bytes
        self._bytes = 0
        self._size_of: dict[str, int] = {}
        self._now = clock
        self._wall = wall_clock
        self._jobs: dict[str, Job] = {}
        # Lazy-deletion queues: an entry is skipped when the job moved on since it was pushed.
        self._ready = ReadyQueue()
        self._scheduled: list[tuple[float, int, str, int]] = []  # (due, seq, id, retry_count)
        self._leases: list[tuple[float, int, str, int]] = []  # (deadline, seq, id, token)
        self._deadline: dict[str, float] = {}  # current lease deadline of each held job
        self._retention: list[tuple[float, str]] = []
        self._expires: dict[str, float] = {}  # the current purge time of each terminal job
        self._idempotency: dict[str, tuple[str, str]] = {}  # key -> (job id, fingerprint)
        self._key_of: dict[str, str] = {}  # job id -> its idempotency key
        self._terminal_events: dict[str, trio.Event] = {}
        self._work = trio.Event()
        self._seq = 0
        self._counts: Counter[JobStatus] = Counter()
        self._fenced = 0
        self._cancel_listeners: list[Callable[[str], None]] = []
        self.feeds = JobFeeds()
        self._index = JobIndex()
        self._rates = Rates()
        self._presence = Presence()

    # ---- internal bookkeeping ------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _put(self, old: Job | None, new: Job) -> Job:
        """Store ``new`` in place of ``old`` (a status change); returns it as stored."""
        if old is not None:
            check_transition(new.id, old.status, new.status)
            self._counts[old.status] -= 1
        new = replace(new, version=(0 if old is None else old.version) + 1)
        if old is None or old.result is not new.result or old.error is not new.error or \
                old.attempts is not new.attempts or old.progress is not new.progress:
            size = _size(new)
            self._bytes += size - self._size_of.get(new.id, 0)
            self._size_of[new.id] = size
        self._counts[new.status] += 1
        self._jobs[new.id] = new
        if old is None:
            self._index.add(new)
        else:
            self._index.moved(old, new)
        if new.status in TERMINAL:
            self._deadline.pop(new.id, None)
            purge_at = self._now() + self.retention
            self._expires[new.id] = purge_at
            heapq.heappush(self._retention, (purge_at, new.id))
            event = self._terminal_events.pop(new.id, None)
            if event is not None:
                event.set()
        else:
            self._expires.pop(new.id, None)  # a retried job: kept again
        self.feeds.publish(new)
        return new

    def _change(self, job: Job, **changes: Any) -> Job:
        """A change that keeps the status (a cancel request, a progress report)."""
        new = replace(job, version=job.version + 1, **changes)
        if new.progress is not job.progress:
            size = _size(new)
            self._bytes += size - self._size_of.get(new.id, 0)
            self._size_of[new.id] = size
        self._jobs[new.id] = new
        self.feeds.publish(new)
        return new

    def _wake_workers(self) -> None:
        self._work.set()
        self._work = trio.Event()

    def _schedule(self, job: Job, delay: float) -> None:
        heapq.heappush(self._scheduled,
                       (self._now() + delay, self._next_seq(), job.id, job.retry_count))
        self._wake_workers()  # an idle dispatcher shortens its wait to the new due time

    def _holds(self, lease: Lease) -> Job | None:
        job = self._jobs.get(lease.job_id)
        if (job is None or job.status is not _S.IN_PROGRESS or job.token != lease.token
                or (lease.owner and job.owner != lease.owner)):
            self._fenced += 1
            return None
        return job

    def _promote_due(self, now: float, limit: int) -> int:
        promoted = 0
        while self._scheduled and self._scheduled[0][0] <= now and promoted < limit:
            _, _, job_id, retry_count = heapq.heappop(self._scheduled)
            job = self._jobs.get(job_id)
            if job is None or job.status is not _S.SCHEDULED or job.retry_count != retry_count:
                continue
            self._put(job, replace(job, status=_S.QUEUED, last_updated_at=self._wall()))
            self._ready.push_back(job_id, job.priority)
            promoted += 1
        if promoted:
            self._wake_workers()
        return promoted

    def _purge(self, now: float, limit: int) -> int:
        purged = 0
        while self._retention and self._retention[0][0] <= now and purged < limit:
            purge_at, job_id = heapq.heappop(self._retention)
            if self._expires.get(job_id) != purge_at:
                continue  # retried since, or gone already
            del self._expires[job_id]
            job = self._jobs.pop(job_id)
            self._index.remove(job)
            self.feeds.end_job(job_id)
            self._counts[job.status] -= 1
            self._bytes -= self._size_of.pop(job_id, 0)
            key = self._key_of.pop(job_id, None)
            if key is not None:
                self._idempotency.pop(key, None)
            purged += 1
        return purged

    def _history(self, job: Job, label: str | None, error: Mapping[str, Any] | None,
                 wall: float) -> tuple[Attempt, ...]:
        if label is None:
            return job.attempts
        code, message = error_summary(error)
        return appended(job.attempts, Attempt(job.attempt, job.started_at, wall, label,
                                              code, message))

    # ---- the store contract --------------------------------------------------------------

    async def submit(
        self, jobs: Sequence[NewJob], *, max_queued: int | None = None
    ) -> list[Submitted | Exception]:
        await trio.lowlevel.checkpoint()
        self._purge(self._now(), limit=len(jobs) * 2 + 16)
        answers = [self._submit_one(new, max_queued) for new in jobs]
        if any(isinstance(a, Submitted) and a.created for a in answers):
            self._wake_workers()
        return answers

    def _submit_one(self, new: NewJob, max_queued: int | None) -> Submitted | Exception:
        if new.idempotency_key is not None:
            seen = self._idempotency.get(new.idempotency_key)
            if seen is not None:
                job_id, fingerprint = seen
                if fingerprint != new.fingerprint:
                    return IdempotencyConflict(new.idempotency_key, job_id)
                return Submitted(self._jobs[job_id], created=False)
        if new.id in self._jobs:
            old = self._jobs[new.id]
            if new.idempotency_key is None and (old.name, old.payload, old.context) == (
                    new.name, new.payload, new.context):
                # The same id again without a key: our own resend after a lost reply.
                return Submitted(old, created=False)
            return IdempotencyConflict(new.idempotency_key or new.id, new.id)
        if max_queued is not None and self._counts[_S.QUEUED] >= max_queued:
            return QueueFull(f"the queue holds {max_queued} jobs")
        if self.max_bytes is not None and \
                self._bytes + len(new.payload) + _OVERHEAD > self.max_bytes:
            return QueueFull(f"the in-memory store holds {self._bytes} bytes of jobs; its "
                             f"budget (memory_budget) is {self.max_bytes}")
        wall = self._wall()
        delayed = new.delay is not None and new.delay > 0
        job = Job(
            id=new.id,
            name=new.name,
            status=_S.SCHEDULED if delayed else _S.QUEUED,
            payload=new.payload,
            max_retries=new.max_retries,
            created_at=wall,
            last_updated_at=wall,
            context=new.context,
            priority=new.priority,
            due_at=wall + new.delay if delayed and new.delay is not None else None,
            principal=new.principal,
            trace=new.trace,
        )
        job = self._put(None, job)
        self._rates.add(wall, "submitted")
        if new.idempotency_key is not None:
            self._idempotency[new.idempotency_key] = (job.id, new.fingerprint)
            self._key_of[job.id] = new.idempotency_key
        if delayed and new.delay is not None:
            self._schedule(job, new.delay)
        else:
            self._ready.push_back(job.id, job.priority)
        return Submitted(job, created=True)

    async def get(self, job_id: str) -> Job | None:
        await trio.lowlevel.checkpoint()
        return self._jobs.get(job_id)

    async def claim(self, owner: str, limit: int, lease_ttl: float) -> list[Claimed]:
        await trio.lowlevel.checkpoint()
        now = self._now()
        self._promote_due(now, limit=max(limit, 64))
        wall = self._wall()
        claimed: list[Claimed] = []
        while len(claimed) < limit:
            job_id = self._ready.pop()
            if job_id is None:
                break
            job = self._jobs.get(job_id)
            if job is None or job.status is not _S.QUEUED:
                continue
            new = self._put(job, replace(job, status=_S.IN_PROGRESS, token=job.token + 1,
                                         owner=owner, started_at=wall, last_updated_at=wall))
            deadline = now + lease_ttl
            self._deadline[job_id] = deadline
            heapq.heappush(self._leases, (deadline, self._next_seq(), job_id, new.token))
            claimed.append(Claimed(new, Lease(job_id, new.token, owner)))
        return claimed

    async def wait_for_work(self, timeout: float,
                            idle: IdleOffer | None = None) -> list[Claimed]:
        # No push dispatch here: a claim in the same process costs no round trip.
        if len(self._ready) > 0 or (self._scheduled and self._scheduled[0][0] <= self._now()):
            await trio.lowlevel.checkpoint()
            return []
        deadline = self._now() + timeout
        if self._scheduled:
            deadline = min(deadline, self._scheduled[0][0])
        with trio.move_on_at(deadline):
            await self._work.wait()
        return []

    async def heartbeat(
        self, owner: str, leases: Sequence[Lease], lease_ttl: float,
        progress: Mapping[str, bytes] | None = None,
    ) -> HeartbeatReply:
        await trio.lowlevel.checkpoint()
        deadline = self._now() + lease_ttl
        lost: set[str] = set()
        cancel: set[str] = set()
        for lease in leases:
            job = self._holds(lease)
            if job is None or job.owner != owner:
                lost.add(lease.job_id)
                continue
            self._deadline[lease.job_id] = deadline
            heapq.heappush(self._leases, (deadline, self._next_seq(), lease.job_id, lease.token))
            report = progress.get(lease.job_id) if progress else None
            if report is not None:
                job = self._change(job, progress=report)
            if job.cancel_requested:
                cancel.add(lease.job_id)
        return HeartbeatReply(lost=frozenset(lost), cancel_requested=frozenset(cancel))

    async def leases_of(self, owner: str) -> list[Lease]:
        await trio.lowlevel.checkpoint()
        found = []
        for job_id in self._deadline:
            job = self._jobs[job_id]
            if job.owner == owner:
                found.append(Lease(job_id, job.token, owner))
        return found

    async def finish(self, outcomes: Sequence[Outcome]) -> list[bool]:
        await trio.lowlevel.checkpoint()
        wall = self._wall()
        applied: list[bool] = []
        for outcome in outcomes:
            job = self._holds(outcome.lease)
            if job is None:
                applied.append(False)
                continue
            applied.append(True)
            self._deadline.pop(job.id, None)
            self._apply(job, outcome, wall)
        return applied

    def _apply(self, job: Job, outcome: Outcome, wall: float) -> None:
        error = outcome.error if isinstance(outcome, Fail) else None
        history = self._history(job, outcome_label(outcome, job.cancel_requested), error, wall)
        if isinstance(outcome, Complete) and not job.retry_count and not job.attempts:
            history = ()  # the common case is told by the job's own times (see _history.py)
        base = replace(job, owner=None, last_updated_at=wall, attempts=history,
                       progress=job.progress if outcome.progress is None else outcome.progress)
        if isinstance(outcome, Complete):
            self._put(job, replace(base, status=_S.COMPLETED, result=outcome.result,
                                   error=None, completed_at=wall))
            self._rates.add(wall, "completed")
        elif isinstance(outcome, AckCancel) or job.cancel_requested:
            # A cancel request outranks a retry or a release: the user asked for it.
            self._put(job, replace(base, status=_S.CANCELED, completed_at=wall,
                                   error=error or base.error))
        elif isinstance(outcome, Fail):
            if outcome.retry_delay is None:
                self._put(job, replace(base, status=_S.FAILED, error=error, completed_at=wall))
                self._rates.add(wall, "failed")
            else:
                scheduled = self._put(job, replace(base, status=_S.SCHEDULED, error=error,
                                                   retry_count=job.retry_count + 1,
                                                   due_at=wall + outcome.retry_delay))
                self._schedule(scheduled, outcome.retry_delay)
        else:
            self._put(job, replace(base, status=_S.QUEUED, due_at=wall))
            self._ready.push_front(job.id)
            self._wake_workers()

    async def cancel(self, job_id: str) -> Job | None:
        await trio.lowlevel.checkpoint()
        return self._cancel(job_id, None)

    def _cancel(self, job_id: str, audit: AuditEntry | None) -> Job | None:
        job = self._jobs.get(job_id)
        if job is None or job.status in TERMINAL:
            return job
        wall = self._wall()
        noted = job.audit if audit is None else \
            audit_appended(job.audit, replace(audit, at=wall), MAX_AUDIT_KEPT)
        if job.status is _S.IN_PROGRESS:
            if job.cancel_requested:
                return job
            new = self._change(job, cancel_requested=True, last_updated_at=wall, audit=noted)
            for listener in list(self._cancel_listeners):
                listener(job_id)
            return new
        self._ready.remove(job_id)
        return self._put(job, replace(job, status=_S.CANCELED, completed_at=wall,
                                      last_updated_at=wall, due_at=None, audit=noted))

    # ---- the admin API (AdminStore) ------------------------------------------------------

    async def list_jobs(self, query: JobQuery) -> JobPage:
        await trio.lowlevel.checkpoint()
        return self._index.page(query, self._jobs.__getitem__)

    async def inspect(self, job_id: str) -> Inspected | None:
        await trio.lowlevel.checkpoint()
        job = self._jobs.get(job_id)
        if job is None:
            return None
        deadline = self._deadline.get(job_id)
        return Inspected(job, None if deadline is None
                         else self._wall() + (deadline - self._now()))

    async def retry(self, job_id: str, *, by: str | None = None) -> Retried:
        await trio.lowlevel.checkpoint()
        job = self._jobs.get(job_id)
        if job is None or job.status not in RETRYABLE:
            return Retried(job, False)
        wall = self._wall()
        new = self._put(job, replace(
            job, status=_S.QUEUED, retry_count=0, started_at=None, completed_at=None,
            result=None, error=None, owner=None, cancel_requested=False, due_at=wall,
            last_updated_at=wall,
            audit=audit_appended(job.audit, AuditEntry("retry", by, wall), MAX_AUDIT_KEPT)))
        self._ready.push_back(job_id, job.priority)
        self._wake_workers()
        return Retried(new, True)

    async def cancel_audited(self, job_id: str, *, by: str | None = None) -> Job | None:
        await trio.lowlevel.checkpoint()
        return self._cancel(job_id, AuditEntry("cancel", by, 0.0))

    async def stats(self) -> QueueStats:
        await trio.lowlevel.checkpoint()
        by_name: dict[str, dict[str, int]] = {}
        for (name, status), n in self._index.by_name.items():
            counts = by_name.setdefault(name, {s.value: 0 for s in JobStatus})
            counts[status.value] += n
        return QueueStats({s.value: self._counts[s] for s in JobStatus},
                          {name: by_name[name] for name in sorted(by_name)},
                          self._rates.last(self._wall()))

    async def announce(self, info: InstanceInfo, ttl: float) -> None:
        await trio.lowlevel.checkpoint()
        self._presence.announce(info, ttl, self._now(), self._wall())

    async def instances(self) -> list[Instance]:
        await trio.lowlevel.checkpoint()
        return self._presence.live(self._now())

    async def wait_for_terminal(self, job_id: str, timeout: float) -> Job | None:
        job = self._jobs.get(job_id)
        if job is None or job.status in TERMINAL or timeout <= 0:
            await trio.lowlevel.checkpoint()
            return job
        event = self._terminal_events.setdefault(job_id, trio.Event())
        with trio.move_on_after(timeout):
            await event.wait()
        return self._jobs.get(job_id)

    @asynccontextmanager
    async def watch(self, job_id: str) -> AsyncIterator[JobWatch]:
        await trio.lowlevel.checkpoint()
        watch = self.feeds.open(job_id)
        try:
            watch.current = self._jobs.get(job_id)
            if watch.current is not None:
                watch.offer(watch.current)
            yield watch
        finally:
            self.feeds.close(watch)

    async def watch_events(self, on_cancel: Callable[[str], None]) -> None:
        self._cancel_listeners.append(on_cancel)
        try:
            await trio.sleep_forever()
        finally:
            self._cancel_listeners.remove(on_cancel)

    async def recover(self, *, limit: int) -> RecoveryReport:
        await trio.lowlevel.checkpoint()
        now = self._now()
        reclaimed = failed = 0
        while self._leases and self._leases[0][0] <= now and reclaimed + failed < limit:
            deadline, _, job_id, token = heapq.heappop(self._leases)
            job = self._jobs.get(job_id)
            if (
                job is None
                or job.status is not _S.IN_PROGRESS
                or job.token != token
                or self._deadline.get(job_id) != deadline
            ):
                continue  # renewed, finished or reclaimed since this entry was pushed
            if self._expire(job):
                reclaimed += 1
            else:
                failed += 1
        promoted = self._promote_due(now, limit)
        purged = self._purge(now, limit)
        upcoming = [heap[0][0] for heap in (self._leases, self._scheduled) if heap]
        return RecoveryReport(
            reclaimed=reclaimed, expired_failed=failed, promoted=promoted, purged=purged,
            next_in=max(0.0, min(upcoming) - now) if upcoming else None,
        )

    def _expire(self, job: Job) -> bool:
        """An expired lease: the job back in the queue (True), or ended (False)."""
        wall = self._wall()
        self._deadline.pop(job.id, None)
        if job.cancel_requested:
            base = replace(job, owner=None, last_updated_at=wall,
                           attempts=self._history(job, "Canceled", None, wall))
            self._put(job, replace(base, status=_S.CANCELED, completed_at=wall))
            return False
        retries_left = job.retry_count < job.max_retries
        error = error_from_message(
            "LeaseExpired", "the instance running this job stopped renewing its lease"
            + ("" if retries_left else ", and no retries were left"))
        base = replace(job, owner=None, last_updated_at=wall, error=error,
                       attempts=self._history(job, "LeaseExpired", error, wall))
        if retries_left:
            self._put(job, replace(base, status=_S.QUEUED, retry_count=job.retry_count + 1,
                                   due_at=wall))
            self._ready.push_front(job.id)
            self._wake_workers()
            return True
        self._put(job, replace(base, status=_S.FAILED, completed_at=wall))
        self._rates.add(wall, "failed")
        return False

    async def counts(self) -> Mapping[str, int]:
        await trio.lowlevel.checkpoint()
        return {status.value: self._counts[status]
                for status in (_S.QUEUED, _S.SCHEDULED, _S.IN_PROGRESS)}

    async def ping(self) -> None:
        await trio.lowlevel.checkpoint()

    def describe(self) -> str:
        return "the in-memory store"

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()

    def statistics(self) -> Mapping[str, Any]:
        return {
            "jobs": len(self._jobs),
            "by_status": {status.value: self._counts[status] for status in JobStatus},
            "held_leases": len(self._deadline),
            "idempotency_keys": len(self._idempotency),
            "fenced_writes": self._fenced,
            "bytes": self._bytes,
            "watches": len(self.feeds),
        }
