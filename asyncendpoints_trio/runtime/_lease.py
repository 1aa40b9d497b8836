"""Lease keeper: renews every lease this instance holds, and stops handlers that lost theirs.

Two loops:

- **Renewal**, one store call per interval for every held lease that is still ours, for as
  long as the job is held: while its handler runs, during a drain, and while its outcome
  waits to be written. Renewal stops only when the lease is lost. The store's answers turn
  into cancellations: a refused renewal means a peer may run the job now, so our handler
  must stop; a cancel request means a user asked for it.
- **Presence.** Whether or not it holds leases, the keeper renews this instance's presence
  record on the store (who it is, how many jobs it holds), which expires one lease TTL
  after its last renewal: the admin API's list of live instances. It renews on the
  heartbeat's ticks, but only as often as keeps the record alive: every k-th tick, k the
  most ticks that fit in three quarters of a TTL. So an idle instance pays one store call
  per ~0.75 TTL for it (on Redis one command), and a killed one leaves the list within a
  TTL.
- **The local deadline.** Each lease is known to be valid until the time its last accepted
  renewal was *sent* plus the TTL (the store set its deadline later than that, never
  earlier). A margin before that moment the handler is cancelled as lease-lost, whatever
  the renewals are doing: failing fast, failing slowly, or hanging in a stalled link. So a
  cooperative handler always stops before its lease can expire on the server, and no peer
  ever runs the job beside it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace

import trio

from .._logging import job_fields
from .._text import plural
from ..stores._admin import AdminStore, InstanceInfo
from ..stores._protocol import JobStore
from ._actor import Actor
from ._held import CancelReason, HeldJob, HeldJobs, Phase

log = logging.getLogger("asyncendpoints_trio.lease")

_STOPPED = frozenset({CancelReason.LEASE_LOST, CancelReason.LEASE_EXPIRING})


def lease_margin(lease_ttl: float) -> float:
    """How long before the local deadline a handler is stopped: a tenth of the TTL."""
    return lease_ttl / 10


@dataclass(slots=True)
class LeaseStats:
    renewals: int = 0  # store round trips
    leases_renewed: int = 0
    lost: int = 0  # handlers stopped because their lease was lost, for either reason below
    refused: int = 0  # the store refused the renewal
    expired_locally: int = 0  # no renewal accepted in time: the local deadline passed
    cancel_requests: int = 0
    store_errors: int = 0
    progress_written: int = 0  # progress reports sent with renewals
    announcements: int = 0  # presence renewals the store accepted


@dataclass(slots=True)
class LeaseKeeper(Actor):
    store: JobStore
    held: HeldJobs
    owner: str
    lease_ttl: float
    interval: float
    # Who this instance is, for its presence record; None: no record (a store without
    # the admin API, or a test's keeper).
    presence: InstanceInfo | None = None
    stats: LeaseStats = field(default_factory=LeaseStats)
    _failing: bool = False

    async def run(self) -> None:
        every = max(1, math.floor(self.lease_ttl * 0.75 / self.interval))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_deadlines)
            tick = 0
            while True:
                if tick % every == 0:
                    await self.announce_once()
                tick += 1
                await trio.sleep(self.interval)
                await self.renew_once()

    async def announce_once(self) -> None:
        if self.presence is None or not isinstance(self.store, AdminStore):
            return
        info = replace(self.presence, jobs_held=len(self.held))
        try:
            await self.store.announce(info, self.lease_ttl)
        except Exception as exc:
            # Renewals log store trouble; the record just lapses until the store is back.
            log.debug("renewing the presence of %s failed: %s", info.id, exc)
            return
        self.stats.announcements += 1

    def _keeps(self, held: HeldJob) -> bool:
        # Renewal goes on until the store refuses the lease, even for a job whose handler
        # was stopped because renewals were failing: the handler may not stop at once.
        return held.reason is not CancelReason.LEASE_LOST

    async def renew_once(self) -> None:
        holding = [h for h in self.held if self._keeps(h)]
        if not holding:
            return
        sent_at = trio.current_time()
        # The latest report of each job rides along (only a running handler reports; an
        # outcome carries its last report itself).
        progress = {h.job_id: report for h in holding if h.phase is Phase.RUNNING
                    and (report := h.take_progress()) is not None}
        try:
            reply = await self.store.heartbeat(
                self.owner, [h.lease for h in holding], self.lease_ttl, progress or None
            )
        except Exception as exc:
            for h in holding:
                if h.job_id in progress and not h.progress_pending:
                    h.progress_pending = True  # not written: the next renewal tries again
            # Store errors, and anything else: the local deadline stops the handlers in
            # time, so this loop only has to keep trying.
            self.stats.store_errors += 1
            if not self._failing:
                log.warning("renewing %s failed (%s); retrying every %.1fs",
                            plural(len(holding), "lease"), exc, self.interval)
            self._failing = True
            return
        if self._failing:
            log.warning("lease renewals work again")
            self._failing = False
        self.stats.renewals += 1
        self.stats.progress_written += len(progress)
        for h in holding:
            if h.job_id in reply.lost:
                # Our own outcome may have landed just before this renewal did: that is
                # not a lost lease, and the outcome writer hears how it went.
                if self.held.is_current(h) and h.phase is not Phase.FINISHING \
                        and self._keeps(h):
                    self.stats.lost += 1
                    self.stats.refused += 1
                    log.warning("job %s: lease refused on renewal; stopping its handler",
                                h.job_id, extra=job_fields(h.claimed.job))
                    h.cancel(CancelReason.LEASE_LOST)
            else:
                h.renewed_at = max(h.renewed_at, sent_at)
                self.stats.leases_renewed += 1
                if h.job_id in reply.cancel_requested and h.phase is not Phase.FINISHING:
                    self.stats.cancel_requests += 1
                    h.cancel(CancelReason.USER)

    async def _watch_deadlines(self) -> None:
        margin = lease_margin(self.lease_ttl)
        while True:
            now = trio.current_time()
            earliest = math.inf
            for h in self.held:
                if h.reason in _STOPPED or h.phase is Phase.FINISHING:
                    continue  # nothing left to stop
                deadline = h.renewed_at + self.lease_ttl - margin
                if deadline <= now:
                    self.stats.lost += 1
                    self.stats.expired_locally += 1
                    log.warning("job %s: no renewal accepted for %.1fs, its lease may expire "
                                "on the store; stopping its handler", h.job_id,
                                now - h.renewed_at, extra=job_fields(h.claimed.job))
                    h.cancel(CancelReason.LEASE_EXPIRING)
                else:
                    earliest = min(earliest, deadline)
            # Renewals only move deadlines later, so waking at the earliest one we know of
            # is enough; a new claim may bring an earlier one, so it wakes us too.
            with trio.move_on_at(earliest):
                await self.held.wait_added()
