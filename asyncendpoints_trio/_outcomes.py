"""Outcome writer: applies finished jobs' outcomes to the store, batched.

Workers never wait on the store themselves. Outcomes that pile up while one write is in
flight go out together in the next. A failed write is retried (with backoff) rather than
dropped: the leases stay renewed meanwhile, and if they are lost anyway, fencing makes the
late write harmless.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio

from ._actor import Actor
from ._errors import StoreError
from ._held import HeldJobs
from ._supervisor import backoff_delay
from .stores._protocol import JobStore, Outcome

log = logging.getLogger("asyncendpoints_trio.outcomes")

BATCH_LIMIT = 256


@dataclass(slots=True)
class OutcomeStats:
    written: int = 0
    batches: int = 0
    fenced: int = 0  # refused: the lease had moved on (e.g. a paused instance woke up)
    store_errors: int = 0


@dataclass(slots=True)
class OutcomeWriter(Actor):
    store: JobStore
    held: HeldJobs
    receive: trio.MemoryReceiveChannel[Outcome]
    backoff_cap: float
    stats: OutcomeStats = field(default_factory=OutcomeStats)

    async def run(self) -> None:
        async for first in self.receive:
            batch = [first]
            while len(batch) < BATCH_LIMIT:
                try:
                    batch.append(self.receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            await self._write(batch)

    async def _write(self, batch: list[Outcome]) -> None:
        failures = 0
        while True:
            try:
                applied = await self.store.finish(batch)
                break
            except StoreError as exc:
                failures += 1
                self.stats.store_errors += 1
                log.warning("writing %d outcomes failed (%s); retrying", len(batch), exc)
                await trio.sleep(backoff_delay(failures, self.backoff_cap))
        self.stats.batches += 1
        for outcome, ok in zip(batch, applied, strict=True):
            lease = outcome.lease
            self.held.remove(lease.job_id, lease.token)
            if ok:
                self.stats.written += 1
            else:
                self.stats.fenced += 1
                log.warning("job %s: %s refused, the lease (token %d) is no longer ours",
                            lease.job_id, type(outcome).__name__, lease.token)
