"""Lease keeper: renews every lease this instance holds, in one store call per interval.

It also turns the store's answers into cancellations: a refused renewal means a peer may
run the job now, so our handler must stop; a cancel request means a user asked for it.
And if renewals keep failing (store unreachable) for a whole lease TTL, our leases have
expired by the store's clock, so we stop those handlers ourselves rather than run them
twice alongside whoever reclaims them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio

from ._actor import Actor
from ._errors import StoreError
from ._held import CancelReason, HeldJobs
from .stores._protocol import JobStore

log = logging.getLogger("asyncendpoints_trio.lease")


@dataclass(slots=True)
class LeaseStats:
    renewals: int = 0  # store round trips
    leases_renewed: int = 0
    lost: int = 0
    cancel_requests: int = 0
    store_errors: int = 0


@dataclass(slots=True)
class LeaseKeeper(Actor):
    store: JobStore
    held: HeldJobs
    owner: str
    lease_ttl: float
    interval: float
    stats: LeaseStats = field(default_factory=LeaseStats)

    async def run(self) -> None:
        while True:
            await trio.sleep(self.interval)
            await self.renew_once()

    async def renew_once(self) -> None:
        holding = [h for h in self.held if h.reason is None]
        if not holding:
            return
        sent_at = trio.current_time()
        try:
            reply = await self.store.heartbeat(
                self.owner, [h.lease for h in holding], self.lease_ttl
            )
        except StoreError as exc:
            self.stats.store_errors += 1
            log.warning("renewing %d leases failed: %s", len(holding), exc)
            self._expire_overdue()
            return
        self.stats.renewals += 1
        for h in holding:
            if h.job_id in reply.lost:
                self.stats.lost += 1
                log.warning("job %s: lease refused on renewal; stopping its handler", h.job_id)
                h.cancel(CancelReason.LEASE_LOST)
            else:
                h.renewed_at = sent_at
                self.stats.leases_renewed += 1
                if h.job_id in reply.cancel_requested:
                    self.stats.cancel_requests += 1
                    h.cancel(CancelReason.USER)

    def _expire_overdue(self) -> None:
        now = trio.current_time()
        for h in self.held:
            if h.reason is None and now - h.renewed_at >= self.lease_ttl:
                self.stats.lost += 1
                log.warning("job %s: no renewal for a whole lease TTL; stopping its handler",
                            h.job_id)
                h.cancel(CancelReason.LEASE_LOST)
