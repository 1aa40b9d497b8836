"""Dispatcher: claims jobs from the store as credit allows and hands them to the workers.

A claim whose reply is lost (the link broke after the store applied it) leaves jobs leased
to this instance that it knows nothing of: nobody would run or renew them, and they would
come back only when their leases expire, charged an attempt for a run that never happened.
So after any failed claim, and once at start (a restarted instance may reuse its id), the
dispatcher asks the store which leases it holds for us and releases, uncharged, the ones we
do not hold. The dispatcher is the only actor that adds held jobs, and it does this before
its next claim, so no claim of ours can be in flight meanwhile.

Idle, the dispatcher waits with an offer to take pushed jobs (``IdleOffer``): a store that
pushes (Redis) leases new jobs to it while it waits and its wait returns them, so an idle
instance starts a job with no claim round trip. It waits again at once while it has credit
left, and claims only when the store says there may be work it did not push. A wait that
did not end normally (cancelled, failed) may have lost a pushed job with its reply: that
makes the dispatcher unsure too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio

from .._text import plural
from ..stores._protocol import IdleOffer, JobStore, Release
from ._actor import Actor
from ._held import HeldJob, HeldJobs

log = logging.getLogger("asyncendpoints_trio.dispatcher")

# How long an idle dispatcher waits on the store before it claims again anyway. The store's
# wait returns at once on local submits and (Redis) on a wake-up from a peer, so this only
# bounds the cost of a missed wake-up.
IDLE_WAIT = 5.0


@dataclass(slots=True)
class DispatcherStats:
    claims: int = 0
    empty_claims: int = 0
    claimed_jobs: int = 0
    claim_errors: int = 0
    orphans_released: int = 0  # leased to us by claims whose reply never arrived
    pushed_jobs: int = 0  # leased to us by submits while we waited idle (no claim)


@dataclass(slots=True)
class Dispatcher(Actor):
    store: JobStore
    held: HeldJobs
    send: trio.MemorySendChannel[HeldJob]
    owner: str
    lease_ttl: float
    stats: DispatcherStats = field(default_factory=DispatcherStats)
    _unsure: bool = True  # the store may hold leases for us that we do not know of

    async def run(self) -> None:
        """Runs until cancelled; that is how the runtime stops claiming."""
        while True:
            if self._unsure:
                await self._release_orphans()
            await self.held.wait_free()
            # The claim below is shielded, and wait_free does not block while credit is
            # free: without this, a busy queue left the dispatcher no point at which a
            # cancellation could reach it (a drain that releases jobs to the front of the
            # queue then claimed and released them forever; the fault simulator found it).
            await trio.lowlevel.checkpoint_if_cancelled()
            asked = self.held.free
            sent_at = trio.current_time()
            # Shielded: a claim on its way to the store finishes even when we are stopped,
            # so the jobs it took are held here (and released on drain), not stranded
            # until their leases expire. The store's own timeouts bound it.
            try:
                with trio.CancelScope(shield=True):
                    claimed = await self.store.claim(self.owner, asked, self.lease_ttl)
            except Exception:
                self.stats.claim_errors += 1
                self._unsure = True
                raise
            self.stats.claims += 1
            if not claimed:
                self.stats.empty_claims += 1
            self.stats.claimed_jobs += len(claimed)
            for item in claimed:
                # Never blocks: the channel's buffer equals the total credit.
                self.send.send_nowait(self.held.add(item, sent_at))
            if len(claimed) < asked:
                # The queue ran dry: claiming again before a wake-up would only come back
                # empty (a round trip per job on a lightly loaded Redis).
                await self._wait_idle()

    async def _wait_idle(self) -> None:
        while True:
            sent_at = trio.current_time()
            try:
                pushed = await self.store.wait_for_work(
                    IDLE_WAIT, IdleOffer(self.owner, self.held.free, self.lease_ttl))
            except BaseException:
                self._unsure = True
                raise
            if not pushed:
                return
            self.stats.pushed_jobs += len(pushed)
            for item in pushed:
                # The store pushes no more than the credit we offered.
                self.send.send_nowait(self.held.add(item, sent_at))
            if self.held.free <= 0:
                return

    async def _release_orphans(self) -> None:
        leases = await self.store.leases_of(self.owner)
        orphans = [lease for lease in leases
                   if (held := self.held.get(lease.job_id)) is None
                   or held.lease.token != lease.token]
        if orphans:
            applied = await self.store.finish([Release(lease) for lease in orphans])
            released = sum(applied)
            self.stats.orphans_released += released
            log.warning("released %s leased to this instance (%s) by a claim whose "
                        "reply was lost, or by an earlier process with the same id",
                        plural(released, "job"), self.owner)
        self._unsure = False
