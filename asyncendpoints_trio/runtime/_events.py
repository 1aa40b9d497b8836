"""Store events: hears fleet-wide cancel requests and stops our handler of that job at once."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..stores._protocol import JobStore
from ._actor import Actor
from ._held import CancelReason, HeldJobs


@dataclass(slots=True)
class EventStats:
    cancels_heard: int = 0
    cancels_applied: int = 0


@dataclass(slots=True)
class StoreEvents(Actor):
    store: JobStore
    held: HeldJobs
    stats: EventStats = field(default_factory=EventStats)

    async def run(self) -> None:
        await self.store.watch_events(self._on_cancel)

    def _on_cancel(self, job_id: str) -> None:
        self.stats.cancels_heard += 1
        if self.held.cancel(job_id, CancelReason.USER):
            self.stats.cancels_applied += 1
