"""Dispatcher: claims jobs from the store as worker credit allows and hands them to workers."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio

from ._actor import Actor
from ._credits import Credits
from ._held import HeldJob, HeldJobs
from .stores._protocol import JobStore

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


@dataclass(slots=True)
class Dispatcher(Actor):
    store: JobStore
    held: HeldJobs
    credits: Credits
    send: trio.MemorySendChannel[HeldJob]
    owner: str
    lease_ttl: float
    stats: DispatcherStats = field(default_factory=DispatcherStats)

    async def run(self) -> None:
        """Runs until cancelled; that is how the runtime stops claiming."""
        while True:
            await self.credits.wait_free()
            # Shielded: a claim on its way to the store finishes even when we are stopped,
            # so the jobs it took are held here (and released on drain), not stranded
            # until their leases expire. The store's own timeouts bound it.
            asked = self.credits.free
            with trio.CancelScope(shield=True):
                claimed = await self.store.claim(self.owner, asked, self.lease_ttl)
            self.stats.claims += 1
            if not claimed:
                self.stats.empty_claims += 1
            self.stats.claimed_jobs += len(claimed)
            self.credits.take(len(claimed))
            for item in claimed:
                # Never blocks: the channel's buffer equals the total credit.
                self.send.send_nowait(self.held.add(item))
            if len(claimed) < asked:
                # The queue ran dry: claiming again before a wake-up would only come back
                # empty (a round trip per job on a lightly loaded Redis).
                await self.store.wait_for_work(IDLE_WAIT)
