"""Workers: run handler coroutines and turn how they ended into an ``Outcome``."""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from typing import Any

import trio
from pydantic import ValidationError

from ._actor import Actor
from ._config import EndpointsConfig
from ._context import AsyncContext
from ._credits import Credits
from ._error_info import error_from_exception, error_from_message
from ._handlers import HandlerRegistry, HandlerSpec
from ._held import CancelReason, HeldJob, HeldJobs
from ._job import Job
from ._result import MethodResult
from .stores._protocol import AckCancel, Complete, Fail, Outcome, Release

log = logging.getLogger("asyncendpoints_trio.worker")


class JobTimeout(Exception):
    """An attempt ran longer than its handler's timeout."""


@dataclass(slots=True)
class WorkerStats:
    started: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    timed_out: int = 0
    canceled: int = 0
    released: int = 0
    lease_lost: int = 0
    running: int = 0


@dataclass(slots=True)
class WorkerPool(Actor):
    config: EndpointsConfig
    handlers: HandlerRegistry
    held: HeldJobs
    credits: Credits
    receive: trio.MemoryReceiveChannel[HeldJob]
    outcomes: trio.MemorySendChannel[Outcome]
    rng: random.Random = field(default_factory=random.Random)
    stats: WorkerStats = field(default_factory=WorkerStats)
    _draining: bool = False
    _running: set[HeldJob] = field(default_factory=set)

    def drain(self) -> None:
        """Shutdown began: jobs not started yet go back to the queue unrun."""
        self._draining = True

    def cancel_running(self) -> None:
        for held in list(self._running):
            held.cancel(CancelReason.SHUTDOWN)

    async def run(self) -> None:
        """Returns once the job channel is closed and every handler has ended."""
        async with trio.open_nursery() as nursery:
            for _ in range(self.config.concurrency):
                nursery.start_soon(self._loop)

    async def _loop(self) -> None:
        async for held in self.receive:
            outcome = await self._run_one(held)
            if outcome is None:
                self.held.remove(held.job_id, held.lease.token)
            else:
                await self.outcomes.send(outcome)
            self.credits.give()

    async def _run_one(self, held: HeldJob) -> Outcome | None:
        job = held.claimed.job
        if held.reason is None and self._draining:
            held.reason = CancelReason.SHUTDOWN
        if held.reason is not None:
            return self._after_cancel(held)
        spec = self.handlers.get(job.name)
        if spec is None:
            self.stats.failed += 1
            return Fail(held.lease, error_from_message(
                "UnknownHandler", f"no handler for job name {job.name!r} on this instance"), None)
        try:
            request = spec.request_adapter.validate_json(job.payload)
        except ValidationError as exc:
            self.stats.failed += 1
            return Fail(held.lease, error_from_exception("InvalidPayload", exc), None)
        ctx: AsyncContext[Any] = AsyncContext(request, job.id, job.name, job.attempt, job.context)
        timeout = spec.timeout if spec.timeout is not None else self.config.default_timeout
        self.stats.started += 1
        self.stats.running += 1
        value: Any = None
        error: BaseException | None = None
        self._running.add(held)
        # One scope serves both the timeout (its deadline) and our cancels (held.reason
        # says which): entering and leaving scopes was a quarter of a worker's time per job.
        deadline = trio.current_time() + timeout if timeout is not None else math.inf
        try:
            with trio.CancelScope(deadline=deadline) as scope:
                held.scope = scope
                if held.reason is not None:
                    scope.cancel()
                try:
                    value = await spec.func(ctx)
                except Exception as exc:
                    error = exc
        finally:
            held.scope = None
            self._running.discard(held)
            self.stats.running -= 1
        if scope.cancel_called:
            if held.reason is not None:
                # Whatever the handler did once cancelled, the cancel decides the outcome.
                return self._after_cancel(held)
            # The deadline passed. cancel_called, not cancelled_caught: a handler that
            # swallowed the cancellation and returned still ran out of time.
            error = JobTimeout(f"attempt {job.attempt} ran over its {timeout}s timeout")
        if error is None and isinstance(value, MethodResult):
            if value.error is not None:
                error = value.error
            value = value.value
        if error is not None:
            code = "Timeout" if isinstance(error, JobTimeout) else "HandlerError"
            return self._failure(spec, job, held, code, error)
        try:
            result = spec.result_adapter.dump_json(value, warnings=False)
        except Exception as exc:
            self.stats.failed += 1
            log.warning("job %s: result of %s does not serialize: %s", job.id, job.name, exc)
            return Fail(held.lease, error_from_exception("ResultSerializationError", exc), None)
        self.stats.succeeded += 1
        return Complete(held.lease, result)

    def _after_cancel(self, held: HeldJob) -> Outcome | None:
        if held.reason is CancelReason.USER:
            self.stats.canceled += 1
            return AckCancel(held.lease)
        if held.reason is CancelReason.SHUTDOWN:
            self.stats.released += 1
            return Release(held.lease)
        self.stats.lease_lost += 1
        log.warning("job %s: lease lost, handler stopped; its result is not written",
                    held.job_id)
        return None

    def _failure(
        self, spec: HandlerSpec, job: Job, held: HeldJob, code: str, exc: BaseException
    ) -> Outcome:
        policy = spec.retry or self.config.default_retry
        error = error_from_exception(code, exc)
        if code == "Timeout":
            self.stats.timed_out += 1
        if policy.is_retryable(exc) and job.retry_count < job.max_retries:
            self.stats.retried += 1
            delay = policy.delay(job.retry_count + 1, self.rng)
            log.info("job %s attempt %d failed (%s); retry in %.2fs", job.id, job.attempt,
                     error["message"], delay)
            return Fail(held.lease, error, delay)
        self.stats.failed += 1
        log.info("job %s failed for good after %d attempts: %s", job.id, job.attempt,
                 error["message"])
        return Fail(held.lease, error, None)
