"""Outcome writer: applies finished jobs' outcomes to the store, batched.

Workers never wait on the store themselves. Outcomes that pile up while one write is in
flight go out together in the next, up to a count and a byte bound (one huge batch would
hold Redis, and every instance's heartbeats with it, for as long as it takes to run).

What fails is told apart:

- ``StoreUnavailable`` (the link, a timeout, a full pool) is transient: the same batch is
  retried with backoff. The leases stay renewed meanwhile, and if they are lost anyway,
  fencing makes the late write harmless. But a write that keeps failing in transit while
  the store answers a plain read is not an outage: Redis drops the connection of a request
  it will not take (over ``proto-max-bulk-len``), which looks just like a cut link. After
  ``SUSPECT_AFTER`` failures, if the store answers a read, the batch is tried once more at
  once (the outage may just have ended); failing again while reads work, it is treated as
  below. Not a ``ReplicationTimeout`` (with ``replicas_ack``, a write the replicas did not
  confirm in time): reads work then too, and it is never taken for such a write (below).
- Anything else (an error reply, a result over the server's limits, a bug) will fail the
  same way again. The batch is split in halves until the outcome that fails is alone; only
  that one is replaced by a plain failure of its job (``OutcomeUnwritable``), and if even that
  cannot be written, the job is let go: its lease expires and recovery hands it to a peer.
  One bad outcome never blocks the ones behind it.

With ``replicas_ack``, a third: ``ReplicationTimeout``. From ``RedisStore.finish`` it says
that the outcomes *were* applied on the primary, and which (its ``reply``, as ``finish``
would have answered); only fewer replicas than asked confirmed them in time. That is not an
outage and not a refusal: the batch is settled as applied, never retried (a second write
would be refused, the lease being gone, and be counted as fenced) and never reported as
fenced, and the shortfall is logged and counted (``unreplicated``). A ``ReplicationTimeout``
that does not say what was applied is waited out like an outage, never isolated. Holding the
leases until the replicas catch up would keep renewing leases the primary no longer has.
What remains at risk, a failover before the replicas catch up, is at-least-once as without
replicas: the job is back to running on the new primary under its old lease, which expires
there, and recovery runs it again (docs/pages/production.md, "replicas_ack").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import orjson
import trio

from .._backoff import backoff_delay
from .._error_info import error_from_message, safe_str
from .._errors import ReplicationTimeout, StoreUnavailable
from ..stores._protocol import AckCancel, Complete, Fail, JobStore, Outcome
from ..telemetry._recorder import JobRecorder
from ._actor import Actor
from ._held import HeldJobs

log = logging.getLogger("asyncendpoints_trio.outcomes")

BATCH_LIMIT = 256
_FINAL: dict[type, str] = {Complete: "Completed", AckCancel: "Canceled"}
# After this many transient failures in a row, the writer asks whether the store answers
# a plain read; if it does, the write itself is what fails.
SUSPECT_AFTER = 3


def outcome_size(outcome: Outcome) -> int:
    """Roughly the bytes an outcome sends to the store."""
    base = 64 + len(outcome.progress or b"")
    if isinstance(outcome, Complete):
        return len(outcome.result) + base
    if isinstance(outcome, Fail):
        try:
            return len(orjson.dumps(outcome.error)) + base
        except Exception:  # unserializable: the store will say so, and we isolate it
            return base
    return base


@dataclass(slots=True)
class OutcomeStats:
    written: int = 0
    batches: int = 0
    fenced: int = 0  # refused: the lease had moved on (e.g. a paused instance woke up)
    store_errors: int = 0
    splits: int = 0  # batches split to isolate an outcome that could not be written
    unwritable: int = 0  # outcomes replaced by OutcomeUnwritable, or let go
    unreplicated: int = 0  # applied, but fewer replicas than replicas_ack confirmed them


@dataclass(slots=True)
class OutcomeWriter(Actor):
    store: JobStore
    held: HeldJobs
    receive: trio.MemoryReceiveChannel[Outcome]
    backoff_cap: float
    batch_bytes: int
    recorder: JobRecorder = field(default_factory=JobRecorder)
    stats: OutcomeStats = field(default_factory=OutcomeStats)
    _carry: Outcome | None = None  # taken from the channel, too big for the last batch
    _inflight: list[Outcome] = field(default_factory=list)

    async def run(self) -> None:
        if self._inflight:  # what a crashed run was writing
            await self._write(self._inflight)
            self._inflight = []
        while True:
            batch = await self._next_batch()
            if not batch:
                return
            self._inflight = batch
            await self._write(batch)
            self._inflight = []

    async def _next_batch(self) -> list[Outcome]:
        if self._carry is not None:
            first, self._carry = self._carry, None
        else:
            try:
                first = await self.receive.receive()
            except trio.EndOfChannel:
                return []
        batch = [first]
        size = outcome_size(first)
        while len(batch) < BATCH_LIMIT and size < self.batch_bytes:
            try:
                item = self.receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            item_size = outcome_size(item)
            if size + item_size > self.batch_bytes:
                self._carry = item
                break
            batch.append(item)
            size += item_size
        return batch

    async def _write(self, batch: list[Outcome]) -> None:
        failures = 0
        suspect = False  # the last try came right after the store answered a read
        while True:
            try:
                applied = await self.store.finish(batch)
                break
            except StoreUnavailable as exc:
                flags = self._unreplicated(batch, exc)
                if flags is not None:
                    applied = flags
                    break
                failures += 1
                self.stats.store_errors += 1
                log.log(logging.WARNING if failures == 1 else logging.DEBUG,
                        "writing %d outcomes failed (%s); retrying", len(batch), exc)
                # A ReplicationTimeout is the server's own answer (applied, not yet on
                # enough replicas), never a request it drops: wait for the replicas.
                if failures >= SUSPECT_AFTER and not isinstance(exc, ReplicationTimeout) \
                        and await self._store_answers(batch):
                    if suspect:
                        # The store answers, only this write keeps failing in transit,
                        # even between two good reads: a request the server drops (too
                        # large for it, say). Treat it as one that can never be written.
                        await self._isolate(batch, exc)
                        return
                    # Or the outage just ended (a failover completed during the last
                    # try): one more try, at once, tells the two apart.
                    suspect = True
                    continue
                suspect = False
                await trio.sleep(backoff_delay(failures, self.backoff_cap))
            except Exception as exc:
                self.stats.store_errors += 1
                await self._isolate(batch, exc)
                return
        self.stats.batches += 1
        self._settle(batch, applied)

    def _unreplicated(self, batch: list[Outcome], exc: Exception) -> list[bool] | None:
        """For a ``ReplicationTimeout`` that says which outcomes were applied (as
        ``RedisStore.finish`` does): those flags. ``None`` for any other failure, and for a
        shortfall that does not say: that one is waited out like an outage."""
        if not isinstance(exc, ReplicationTimeout):
            return None
        applied = exc.reply
        if not isinstance(applied, list) or len(applied) != len(batch) or \
                not all(isinstance(flag, bool) for flag in applied):
            return None
        self.stats.unreplicated += applied.count(True)
        log.warning("%d outcomes applied, but not confirmed by the replicas (%s); jobs "
                    "such as %s may run again after a failover", applied.count(True), exc,
                    batch[0].lease.job_id, extra={"job_id": batch[0].lease.job_id})
        return applied

    async def _store_answers(self, batch: list[Outcome]) -> bool:
        try:
            await self.store.get(batch[0].lease.job_id)
        except Exception:
            return False
        return True

    async def _isolate(self, batch: list[Outcome], exc: Exception) -> None:
        if len(batch) > 1:
            self.stats.splits += 1
            half = len(batch) // 2
            await self._write(batch[:half])
            await self._write(batch[half:])
            return
        [outcome] = batch
        self.stats.unwritable += 1
        replacement = _plain_failure(outcome, exc)
        if replacement is not None:
            log.error("job %s: its %s cannot be stored (%s); failing the job instead",
                      outcome.lease.job_id, type(outcome).__name__, safe_str(exc),
                      extra={"job_id": outcome.lease.job_id})
            try:
                applied = await self._finish_once([replacement])
            except Exception as again:
                log.error("job %s: not even its failure can be stored (%s)",
                          outcome.lease.job_id, safe_str(again),
                          extra={"job_id": outcome.lease.job_id})
            else:
                self._settle([replacement], applied)
                return
        # Let it go: stop renewing, so the lease expires and recovery gives the job to a
        # peer (or here) again. Better than holding every later outcome behind it.
        log.error("job %s: giving up on its outcome; it is retried once its lease expires",
                  outcome.lease.job_id, extra={"job_id": outcome.lease.job_id})
        self.held.settle(outcome.lease)

    async def _finish_once(self, batch: list[Outcome]) -> list[bool]:
        failures = 0
        while True:
            try:
                return await self.store.finish(batch)
            except StoreUnavailable as exc:
                flags = self._unreplicated(batch, exc)
                if flags is not None:
                    return flags
                failures += 1
                self.stats.store_errors += 1
                await trio.sleep(backoff_delay(failures, self.backoff_cap))

    def _settle(self, batch: list[Outcome], applied: list[bool]) -> None:
        for outcome, ok in zip(batch, applied, strict=True):
            lease = outcome.lease
            held = self.held.get(lease.job_id)
            self.held.settle(lease)
            if ok:
                self.stats.written += 1
                status = _FINAL.get(type(outcome)) if not isinstance(outcome, Fail) else \
                    ("Failed" if outcome.retry_delay is None else None)
                if status is not None and held is not None:
                    self.recorder.finished(held.claimed.job.name, status)
            else:
                self.stats.fenced += 1
                log.warning("job %s: %s refused, the lease (token %d) is no longer ours",
                            lease.job_id, type(outcome).__name__, lease.token,
                            extra={"job_id": lease.job_id})


def _plain_failure(outcome: Outcome, exc: Exception) -> Outcome | None:
    """A failure of the job, small and plain, to store instead of what could not be."""
    if not isinstance(outcome, (Complete, Fail)):
        return None  # a release or a cancel ack: nothing smaller to say
    if isinstance(outcome, Fail) and outcome.error.get("code") == "OutcomeUnwritable":
        return None  # this already was the plain one
    what = "result" if isinstance(outcome, Complete) else "error"
    error = error_from_message(
        "OutcomeUnwritable",
        f"the attempt's {what} could not be stored: {type(exc).__name__}: {safe_str(exc)}"[:500])
    retry = outcome.retry_delay if isinstance(outcome, Fail) else None
    return Fail(outcome.lease, error, retry, progress=outcome.progress)
