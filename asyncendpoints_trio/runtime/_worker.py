"""Workers: take held jobs from the dispatcher, run one attempt each, hand the outcomes on."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import trio

from .._logging import job_fields
from ..stores._protocol import Outcome
from ._actor import Actor
from ._attempt import Attempts, AttemptStats
from ._held import CancelReason, HeldJob, HeldJobs, Phase

log = logging.getLogger("asyncendpoints_trio.worker")


@dataclass(slots=True)
class WorkerPool(Actor):
    attempts: Attempts
    held: HeldJobs
    concurrency: int
    receive: trio.MemoryReceiveChannel[HeldJob]
    outcomes: trio.MemorySendChannel[Outcome]
    # Jobs a worker task of this pool took from the channel and has not handed over yet.
    # After a crash these are exactly the jobs whose handler died with the pool.
    _taken: dict[HeldJob, None] = field(default_factory=dict)  # ordered: replays repeat

    @property
    def stats(self) -> AttemptStats:
        return self.attempts.stats

    def drain(self) -> None:
        """Shutdown began: jobs not started yet go back to the queue unrun."""
        self.attempts.draining = True

    def cancel_running(self) -> None:
        for held in list(self._taken):
            held.cancel(CancelReason.SHUTDOWN)

    @property
    def running(self) -> list[HeldJob]:
        return list(self._taken)

    async def run(self) -> None:
        """Returns once the job channel is closed and every handler has ended."""
        async with trio.open_nursery() as nursery:
            for _ in range(self.concurrency):
                nursery.start_soon(self._loop)

    async def _loop(self) -> None:
        async for held in self.receive:
            # Taken and marked with no checkpoint in between: no crash can fall in the gap.
            self._taken[held] = None
            held.phase = Phase.RUNNING
            held.outcome = await self.attempts.run(held)
            await self._hand_over(held)

    @staticmethod
    def _with_progress(held: HeldJob) -> None:
        # The last report before the handler returned goes with its outcome: no renewal
        # is left to carry it, and one in flight may land after the outcome and be fenced.
        # So the latest report goes again even if a renewal took it.
        held.progress_pending = False
        if held.progress is not None and held.outcome is not None:
            held.outcome = replace(held.outcome, progress=held.progress)

    async def _hand_over(self, held: HeldJob) -> None:
        if held.outcome is None:
            self.held.done(held)
        else:
            held.phase = Phase.FINISHING
            self._with_progress(held)
            # A send that raises (cancelled) has not sent: the job stays ours to settle.
            await self.outcomes.send(held.outcome)
            self.held.give_credit(held)
        self._taken.pop(held, None)

    async def after_crash(self, exc: Exception) -> None:
        """Settle the jobs whose workers died with the pool: an outcome already known is
        handed on as it is; a handler cut short fails as ``HandlerCrashed`` (charged as an
        attempt, retried per policy), so nothing stays ``InProgress`` under a lease we keep
        renewing, and every credit comes back."""
        for held in list(self._taken):
            if held.outcome is None and held.reason is not CancelReason.LEASE_LOST:
                held.outcome = self.attempts.crashed(held, exc)
            log.warning("job %s: its worker died with the pool; %s", held.job_id,
                        "settling it" if held.outcome is not None else "dropping it",
                        extra=job_fields(held.claimed.job))
            await self._hand_over(held)
