"""Intake: stores submissions with group commit.

Routes send ``(NewJob, Reply)`` over a channel and await the reply. While one store round
trip is in flight, further submissions queue up in the channel; the next round trip takes
all of them at once. Under load that turns N round trips into about one per batch, and a
lone request pays nothing extra. A ``202`` is only ever sent after the store answered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio

from ._actor import Actor
from ._errors import StoreError
from .stores._protocol import JobStore, NewJob, Submitted

log = logging.getLogger("asyncendpoints_trio.intake")


class Reply:
    """A one-shot answer slot for one submission."""

    __slots__ = ("_done", "value")

    def __init__(self) -> None:
        self._done = trio.Event()
        self.value: Submitted | Exception | None = None

    def set(self, value: Submitted | Exception) -> None:
        self.value = value
        self._done.set()

    async def wait(self) -> Submitted | Exception:
        await self._done.wait()
        assert self.value is not None
        return self.value


Submission = tuple[NewJob, Reply]


@dataclass(slots=True)
class IntakeStats:
    submitted: int = 0
    batches: int = 0
    largest_batch: int = 0
    store_errors: int = 0


@dataclass(slots=True)
class Intake(Actor):
    store: JobStore
    receive: trio.MemoryReceiveChannel[Submission]
    batch_limit: int
    max_queued: int | None
    stats: IntakeStats = field(default_factory=IntakeStats)

    async def run(self) -> None:
        """Until the channel is closed and drained (that is how shutdown reaches us)."""
        async for first in self.receive:
            batch = [first]
            while len(batch) < self.batch_limit:
                try:
                    batch.append(self.receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            await self._commit(batch)

    async def _commit(self, batch: list[Submission]) -> None:
        try:
            answers = await self.store.submit([new for new, _ in batch],
                                              max_queued=self.max_queued)
        except StoreError as exc:
            # The whole batch failed: every caller hears so (503), none is left waiting.
            self.stats.store_errors += 1
            log.warning("storing %d submissions failed: %s", len(batch), exc)
            for _, reply in batch:
                reply.set(exc)
            return
        except BaseException as exc:
            # Cancelled, or a bug: callers must not wait forever; then let it propagate.
            for _, reply in batch:
                reply.set(StoreError(f"submission interrupted: {exc!r}"))
            raise
        self.stats.batches += 1
        self.stats.submitted += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        for (_, reply), answer in zip(batch, answers, strict=True):
            reply.set(answer)
