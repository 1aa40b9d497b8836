"""Intake: stores submissions with group commit.

Routes send ``(NewJob, Reply)`` over a channel and await the reply. While one store round
trip is in flight, further submissions queue up in the channel; the next round trip takes
all of them at once, up to a count and a byte bound (256 bodies of 1 MB in one script call
would hold Redis for a second and a half, and every instance's heartbeats with it). Under
load that turns N round trips into about one per batch, and a lone request pays nothing
extra. A ``202`` is only ever sent after the store answered.

Each caller gets the answer for its own job: the store answers per job, so one job's
conflict or failure is never another's. A batch whose store call failed in transit is sent
once more at once: it carries the same job ids, so a batch the store had applied before
its reply was lost is recognised, not stored twice (see ``JobStore.submit``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio

from .._errors import NotAccepting, StoreError, StoreUnavailable
from .._text import plural
from ..stores._protocol import JobStore, NewJob, Submitted
from ..telemetry._recorder import JobRecorder
from ._actor import Actor

log = logging.getLogger("asyncendpoints_trio.intake")


class Reply:
    """A one-shot answer slot for one submission."""

    __slots__ = ("_done", "value")

    def __init__(self) -> None:
        self._done = trio.Event()
        self.value: Submitted | Exception | None = None

    def set(self, value: Submitted | Exception) -> None:
        if self.value is None:
            self.value = value
            self._done.set()

    async def wait(self) -> Submitted | Exception:
        await self._done.wait()
        assert self.value is not None
        return self.value


Submission = tuple[NewJob, Reply]


def submission_size(new: NewJob) -> int:
    return len(new.payload) + 256


@dataclass(slots=True)
class IntakeStats:
    submitted: int = 0
    batches: int = 0
    largest_batch: int = 0
    store_errors: int = 0
    resent: int = 0  # batches sent again after a failure in transit


@dataclass(slots=True)
class Intake(Actor):
    store: JobStore
    receive: trio.MemoryReceiveChannel[Submission]
    batch_limit: int
    batch_bytes: int
    max_queued: int | None
    recorder: JobRecorder = field(default_factory=JobRecorder)
    stats: IntakeStats = field(default_factory=IntakeStats)
    _carry: Submission | None = None

    async def run(self) -> None:
        """Until the channel is closed and drained (that is how shutdown reaches us)."""
        while True:
            batch = await self._next_batch()
            if not batch:
                return
            await self._commit(batch)

    async def _next_batch(self) -> list[Submission]:
        if self._carry is not None:
            first, self._carry = self._carry, None
        else:
            try:
                first = await self.receive.receive()
            except trio.EndOfChannel:
                return []
        batch = [first]
        size = submission_size(first[0])
        while len(batch) < self.batch_limit and size < self.batch_bytes:
            try:
                item = self.receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            item_size = submission_size(item[0])
            if size + item_size > self.batch_bytes:
                self._carry = item
                break
            batch.append(item)
            size += item_size
        return batch

    async def _commit(self, batch: list[Submission]) -> None:
        jobs = [new for new, _ in batch]
        try:
            try:
                answers = await self.store.submit(jobs, max_queued=self.max_queued)
            except StoreUnavailable as exc:
                self.stats.store_errors += 1
                self.stats.resent += 1
                log.debug("storing %s failed in transit (%s); sending them again",
                          plural(len(batch), "submission"), exc)
                answers = await self.store.submit(jobs, max_queued=self.max_queued)
        except StoreError as exc:
            # Nothing was stored: every caller hears so (503), none is left waiting.
            self.stats.store_errors += 1
            # An outage is logged once by the store's client; each refused batch only here.
            log.log(logging.DEBUG if isinstance(exc, StoreUnavailable) else logging.WARNING,
                    "storing %s failed: %s", plural(len(batch), "submission"), exc)
            for _, reply in batch:
                reply.set(exc)
            return
        except BaseException as exc:
            # Cancelled, or a bug: callers must not wait forever; then let it propagate.
            for _, reply in batch:
                reply.set(StoreError(f"submission interrupted: {type(exc).__name__}"))
            raise
        self.stats.batches += 1
        self.stats.submitted += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        if len(answers) != len(batch):  # a store breaking its contract: nobody gets a 202
            error = StoreError(f"the store answered {len(answers)} of {len(batch)} submits")
            answers = [error] * len(batch)
        for (new, reply), answer in zip(batch, answers, strict=True):
            if isinstance(answer, Submitted) and answer.created:
                self.recorder.submitted(new.name)
            reply.set(answer)

    def refuse_carry(self) -> None:
        """The runtime ended: the submission taken for a next batch gets its answer."""
        if self._carry is not None:
            self._carry[1].set(NotAccepting("the service is shutting down"))
            self._carry = None
