"""Recovery: sweeps the store for expired leases, due retries and expired terminal jobs.

Every instance runs one; the store's ``recover`` is idempotent and bounded, so they never
fight. When a sweep hits its batch limit, the next one starts at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio

from .._text import plural
from ..stores._protocol import JobStore, RecoveryReport
from ._actor import Actor

log = logging.getLogger("asyncendpoints_trio.recovery")

# A deadline is only expired once the store's clock is past it; a little slack saves a
# sweep that would come a hair too early and find nothing.
_SLACK = 0.005


@dataclass(slots=True)
class RecoveryStats:
    sweeps: int = 0
    reclaimed: int = 0
    expired_failed: int = 0
    promoted: int = 0
    purged: int = 0


@dataclass(slots=True)
class Recovery(Actor):
    store: JobStore
    interval: float
    batch: int
    stats: RecoveryStats = field(default_factory=RecoveryStats)

    async def run(self) -> None:
        while True:
            report = await self.sweep_once()
            full = max(report.reclaimed + report.expired_failed, report.promoted,
                       report.purged) >= self.batch
            if full:
                continue
            pause = self.interval
            if report.next_in is not None:
                # Wake when the earliest lease may expire (or retry fall due), so a dead
                # instance's jobs come back within one lease TTL, not TTL + interval.
                pause = min(pause, report.next_in + _SLACK)
            await trio.sleep(pause)

    async def sweep_once(self) -> RecoveryReport:
        report = await self.store.recover(limit=self.batch)
        s = self.stats
        s.sweeps += 1
        s.reclaimed += report.reclaimed
        s.expired_failed += report.expired_failed
        s.promoted += report.promoted
        s.purged += report.purged
        if report.reclaimed or report.expired_failed:
            log.warning("recovered %s with expired leases (%d back in the queue, %d ended: "
                        "no retries left, or cancellation requested)",
                        plural(report.reclaimed + report.expired_failed, "job"),
                        report.reclaimed, report.expired_failed)
        return report
