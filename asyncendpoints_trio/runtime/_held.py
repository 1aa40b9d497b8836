"""The jobs this instance holds leases on, and the claim credits they use.

A held job moves through three phases, each owned by one actor:

    WAITING ---worker takes it---> RUNNING ---outcome handed over---> FINISHING ---> gone
    (dispatcher claimed it,        (its handler runs)                 (the outcome writer
     it waits in the job channel)                                      stores it)

A job takes a claim *credit* from the moment it is claimed until its outcome is in the
outcome writer's hands, so an instance never claims more than it can run plus a small
prefetch. Credits are not counted separately: the number free is ``capacity`` minus the held
jobs that still have one, so giving a credit back can never be forgotten, and after an actor
crash they are right again as soon as its jobs are settled.

Shared by the dispatcher (adds), the workers (run, cancel), the lease keeper (renews,
cancels) and the outcome writer (removes). All run in one Trio thread: plain dicts are safe.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

import trio

from ..stores._protocol import Claimed, Lease, Outcome


class CancelReason(enum.Enum):
    USER = "user"  # DELETE /jobs/<id>: ends Canceled
    LEASE_LOST = "lease_lost"  # the store refused the lease: a peer may run it, write nothing
    # No renewal got through in time: the lease may be expiring on the store. Stop, then
    # hand the job back uncharged (refused, harmlessly, if it did expire meanwhile).
    LEASE_EXPIRING = "lease_expiring"
    SHUTDOWN = "shutdown"  # graceful drain: back to the queue, no attempt charged


# A later reason replaces an earlier one only if it ranks higher.
_RANK = {CancelReason.USER: 0, CancelReason.SHUTDOWN: 0, CancelReason.LEASE_EXPIRING: 1,
         CancelReason.LEASE_LOST: 2}


class Phase(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHING = "finishing"
    DONE = "done"


@dataclass(slots=True, eq=False)
class HeldJob:
    claimed: Claimed
    # Trio time at which the claim, or the last renewal the store accepted, was *sent*:
    # the store's deadline is at least this plus the lease TTL, whatever the reply's delay.
    renewed_at: float
    phase: Phase = Phase.WAITING
    has_credit: bool = True
    scope: trio.CancelScope | None = None  # set while the handler runs
    reason: CancelReason | None = None
    outcome: Outcome | None = None  # once known, so that a crash cannot lose it
    started: bool = False  # its handler was called
    # The handler's latest progress report and whether it still waits to be written: the
    # lease keeper sends it with the next renewal, the worker with the outcome. Reports in
    # between replace it, so a tight loop of them costs one write per heartbeat.
    progress: bytes | None = None
    progress_pending: bool = False

    def report_progress(self, report: bytes) -> None:
        self.progress = report
        self.progress_pending = True

    def take_progress(self) -> bytes | None:
        """The report to write now, if one waits; it counts as written from here on."""
        if not self.progress_pending:
            return None
        self.progress_pending = False
        return self.progress

    @property
    def job_id(self) -> str:
        return self.claimed.job.id

    @property
    def lease(self) -> Lease:
        return self.claimed.lease

    def cancel(self, reason: CancelReason) -> None:
        # Between a user's cancel and a shutdown the first wins: a job cancelled by its
        # user stays a user cancel if shutdown comes next, so it ends Canceled rather than
        # back in the queue. A lease in doubt outranks both, a lost one everything.
        if self.reason is None or _RANK[reason] > _RANK[self.reason]:
            self.reason = reason
        if self.scope is not None:
            self.scope.cancel()


class HeldJobs:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._jobs: dict[str, HeldJob] = {}
        # Every job holding a credit, including one replaced in _jobs by a newer claim of
        # the same job whose old run has not ended yet.
        self._credited: dict[HeldJob, None] = {}
        self._credit_freed = trio.Event()
        self._added = trio.Event()

    # ---- credits ---------------------------------------------------------------------------

    @property
    def free(self) -> int:
        return self.capacity - len(self._credited)

    @property
    def busy(self) -> int:
        """Jobs that hold a credit: claimed and not yet handed to the outcome writer."""
        return len(self._credited)

    async def wait_free(self) -> None:
        while self.free <= 0:
            await self._credit_freed.wait()

    def give_credit(self, held: HeldJob) -> None:
        if held.has_credit:
            held.has_credit = False
            del self._credited[held]
            self._credit_freed.set()
            self._credit_freed = trio.Event()

    # ---- the jobs --------------------------------------------------------------------------

    def add(self, claimed: Claimed, sent_at: float) -> HeldJob:
        if self.free <= 0:
            raise RuntimeError(f"claimed beyond capacity ({self.capacity})")
        old = self._jobs.get(claimed.job.id)
        if old is not None:
            # We claimed a job we still hold under an older token: that lease was lost
            # (reclaimed, released by someone else) and our earlier run must stop.
            old.cancel(CancelReason.LEASE_LOST)
        held = HeldJob(claimed, renewed_at=sent_at)
        self._jobs[claimed.job.id] = held
        self._credited[held] = None
        self._added.set()
        self._added = trio.Event()
        return held

    async def wait_added(self) -> None:
        await self._added.wait()

    def get(self, job_id: str) -> HeldJob | None:
        return self._jobs.get(job_id)

    def is_current(self, held: HeldJob) -> bool:
        return self._jobs.get(held.job_id) is held

    def done(self, held: HeldJob) -> None:
        """The job's lease is no longer ours to keep: written, lost, or given up."""
        held.phase = Phase.DONE
        self.give_credit(held)
        if self._jobs.get(held.job_id) is held:
            del self._jobs[held.job_id]

    def settle(self, lease: Lease) -> None:
        """The outcome for ``lease`` was stored (or refused): forget that job."""
        held = self._jobs.get(lease.job_id)
        if held is not None and held.lease.token == lease.token:
            self.done(held)

    def cancel(self, job_id: str, reason: CancelReason) -> bool:
        held = self._jobs.get(job_id)
        if held is None:
            return False
        held.cancel(reason)
        return True

    def credited(self) -> list[HeldJob]:
        return list(self._credited)

    def __iter__(self) -> Iterator[HeldJob]:
        return iter(list(self._jobs.values()))

    def __len__(self) -> int:
        return len(self._jobs)
