"""The jobs this instance holds leases on, from claim until their outcome is written.

Shared by the dispatcher (adds), workers (run, cancel), the lease keeper (renews, cancels)
and the outcome writer (removes). All of them run in one Trio thread, so plain dicts are safe.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

import trio

from .stores._protocol import Claimed, Lease


class CancelReason(enum.Enum):
    USER = "user"  # DELETE /jobs/<id>: ends Canceled
    LEASE_LOST = "lease_lost"  # a peer may run it now: write nothing
    SHUTDOWN = "shutdown"  # graceful drain: back to the queue, no attempt charged


@dataclass(slots=True, eq=False)
class HeldJob:
    claimed: Claimed
    renewed_at: float  # trio time of the claim or of the last renewal the store accepted
    scope: trio.CancelScope | None = None  # set while the handler runs
    reason: CancelReason | None = None

    @property
    def job_id(self) -> str:
        return self.claimed.job.id

    @property
    def lease(self) -> Lease:
        return self.claimed.lease

    def cancel(self, reason: CancelReason) -> None:
        # The first reason wins: a job cancelled by its user stays a user cancel even if
        # shutdown comes next, so it ends Canceled rather than back in the queue.
        if self.reason is None:
            self.reason = reason
        if self.scope is not None:
            self.scope.cancel()


class HeldJobs:
    def __init__(self) -> None:
        self._jobs: dict[str, HeldJob] = {}

    def add(self, claimed: Claimed) -> HeldJob:
        old = self._jobs.get(claimed.job.id)
        if old is not None:
            # We claimed a job we still hold under an older token: that lease was lost
            # (reclaimed, released by someone else) and our earlier run must stop.
            old.cancel(CancelReason.LEASE_LOST)
        held = HeldJob(claimed, renewed_at=trio.current_time())
        self._jobs[claimed.job.id] = held
        return held

    def get(self, job_id: str) -> HeldJob | None:
        return self._jobs.get(job_id)

    def remove(self, job_id: str, token: int) -> None:
        held = self._jobs.get(job_id)
        if held is not None and held.lease.token == token:
            del self._jobs[job_id]

    def cancel(self, job_id: str, reason: CancelReason) -> bool:
        held = self._jobs.get(job_id)
        if held is None:
            return False
        held.cancel(reason)
        return True

    def __iter__(self) -> Iterator[HeldJob]:
        return iter(list(self._jobs.values()))

    def __len__(self) -> int:
        return len(self._jobs)
