"""One attempt at one job: run its handler and turn however it ended into an ``Outcome``.

``Attempts.run`` is closed under failure: whatever the handler, its request type's
validators or our own bookkeeping raise, the answer is an outcome for *that job*
(``HandlerCrashed`` where nothing more precise applies), never an exception that would take
the worker pool and every job running beside it down. Only cancellation and the process-wide
exits (``KeyboardInterrupt``, ``SystemExit``) leave it, as they must.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from typing import Any

import trio

from .._config import EndpointsConfig
from .._context import AsyncContext
from .._error_info import error_from_exception, error_from_message, type_name
from .._errors import JobTimeout
from .._handlers import HandlerRegistry, HandlerSpec
from .._job import Job
from .._logging import job_fields
from .._result import MethodResult
from .._retry import RetryPolicy
from .._text import plural
from ..stores._protocol import AckCancel, Complete, Fail, Outcome, Release
from ..telemetry._recorder import JobRecorder
from ..telemetry._tracing import end_attempt, process_span
from ._held import CancelReason, HeldJob
from ._lease import lease_margin

log = logging.getLogger("asyncendpoints_trio.worker")


@dataclass(slots=True)
class AttemptStats:
    started: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    timed_out: int = 0
    canceled: int = 0
    released: int = 0
    lease_lost: int = 0
    crashed: int = 0  # attempts that ended in HandlerCrashed
    running: int = 0


def outcome_label(outcome: Outcome | None, held: HeldJob) -> str:
    """The attempt's end as metrics and spans name it (see telemetry/_recorder.OUTCOMES)."""
    if outcome is None:
        return "lease_lost"
    if isinstance(outcome, Complete):
        return "completed"
    if isinstance(outcome, AckCancel):
        return "canceled"
    if isinstance(outcome, Release):
        return "lease_lost" if held.reason is CancelReason.LEASE_EXPIRING else "released"
    if outcome.error.get("code") == "Timeout":
        return "timeout"
    return "failed" if outcome.retry_delay is None else "retry"


@dataclass(slots=True)
class Attempts:
    config: EndpointsConfig
    handlers: HandlerRegistry
    rng: random.Random = field(default_factory=random.Random)
    recorder: JobRecorder = field(default_factory=JobRecorder)
    stats: AttemptStats = field(default_factory=AttemptStats)
    draining: bool = False  # shutdown began: jobs not started yet go back unrun

    async def run(self, held: HeldJob) -> Outcome | None:
        """The outcome to store for ``held``; ``None`` when nothing may be written."""
        try:
            return await self._run(held)
        except Exception as exc:
            return self.crashed(held, exc)

    def crashed(self, held: HeldJob, exc: BaseException) -> Outcome | None:
        """A failure around the handler, ours or the user's: the job's outcome, charged as
        an attempt and retried per its policy like any failure."""
        self.stats.crashed += 1
        if held.reason is CancelReason.LEASE_LOST:
            return None
        if held.reason is CancelReason.LEASE_EXPIRING:
            return Release(held.lease, ran=held.started)
        try:
            spec = self.handlers.get(held.claimed.job.name)
            return self._failure(spec, held, "HandlerCrashed", exc)
        except Exception:  # the last line of defence must not fail: fail the job plainly
            log.exception("job %s: building its failure failed", held.job_id)
            return Fail(held.lease, error_from_message(
                "HandlerCrashed", "the attempt failed in a way that could not be recorded"),
                None)

    async def _run(self, held: HeldJob) -> Outcome | None:
        job = held.claimed.job
        if held.reason is None and self.draining:
            held.reason = CancelReason.SHUTDOWN
        ttl = self.config.lease_ttl
        if trio.current_time() >= held.renewed_at + ttl - lease_margin(ttl):
            # Its lease may be gone already (a claim that took long to come back, renewals
            # that fail): never start a handler on it.
            held.cancel(CancelReason.LEASE_EXPIRING)
        if held.reason is not None:
            return self._after_cancel(held)
        spec = self.handlers.get(job.name)
        if spec is None:
            self.stats.failed += 1
            return Fail(held.lease, error_from_message(
                "UnknownHandler", f"no handler for job name {job.name!r} on this instance"), None)
        try:
            request = spec.request_adapter.validate_json(job.payload)
        except Exception as exc:  # ValidationError, or a validator that raised on old data
            self.stats.failed += 1
            log.warning("job %s: the stored request of %s does not validate: %s", job.id,
                        job.name, type(exc).__name__, extra=job_fields(job))
            return Fail(held.lease, error_from_exception("InvalidPayload", exc), None)
        ctx: AsyncContext[Any] = AsyncContext(
            request, job.id, job.name, job.attempt, job.context, job.principal,
            progress_sink=held.report_progress,
            max_progress_bytes=self.config.max_progress_bytes)
        waited = None if job.started_at is None else \
            job.started_at - (job.due_at if job.due_at is not None else job.created_at)
        self.recorder.started(job.name, waited)
        began = trio.current_time()
        label = "failed"
        try:
            with process_span(job.name, job.id, job.attempt, self.config.queue,
                              job.trace) as span:
                outcome, error = await self._attempt(held, spec, ctx)
                label = outcome_label(outcome, held)
                end_attempt(span, label, error)
        finally:
            self.recorder.ended(job.name, label, trio.current_time() - began)
        return outcome

    async def _attempt(self, held: HeldJob, spec: HandlerSpec,
                       ctx: AsyncContext[Any]) -> tuple[Outcome | None, BaseException | None]:
        """The handler's run and its outcome, with the exception of a failed one."""
        job = held.claimed.job
        timeout = spec.timeout if spec.timeout is not None else self.config.default_timeout
        value, error, scope = await self._call(held, spec, ctx, timeout)
        if scope.cancel_called:
            finished = error is None and not scope.cancelled_caught
            if held.reason is CancelReason.SHUTDOWN and finished:
                # It ran to the end all the same (a thread cannot be stopped): store its
                # result rather than run it again elsewhere.
                pass
            elif held.reason is not None:
                # Whatever the handler did once cancelled, the cancel decides the outcome.
                return self._after_cancel(held), None
            else:
                # The deadline passed. cancel_called, not cancelled_caught: a handler that
                # swallowed the cancellation and returned still ran out of time.
                self.stats.timed_out += 1
                error = JobTimeout(f"attempt {job.attempt} ran over its {timeout}s timeout")
        if error is None and isinstance(value, MethodResult):
            if value.error is not None:
                error = value.error
            value = value.value
        if error is not None:
            code = "Timeout" if isinstance(error, JobTimeout) else "HandlerError"
            return self._failure(spec, held, code, error), error
        return self._complete(spec, held, value), None

    async def _call(
        self, held: HeldJob, spec: HandlerSpec, ctx: AsyncContext[Any], timeout: float | None
    ) -> tuple[Any, BaseException | None, trio.CancelScope]:
        value: Any = None
        error: BaseException | None = None
        self.stats.started += 1
        self.stats.running += 1
        # One scope serves both the timeout (its deadline) and our cancels (held.reason
        # says which): entering and leaving scopes was a quarter of a worker's time per job.
        deadline = trio.current_time() + timeout if timeout is not None else math.inf
        scope = trio.CancelScope(deadline=deadline)
        try:
            with scope:
                held.scope = scope
                held.started = True
                if held.reason is not None:
                    scope.cancel()
                try:
                    value = await spec.func(ctx)
                except Exception as exc:
                    error = exc
        except Exception as exc:
            # What a nursery inside the handler raised next to the Cancelled our scope took
            # out of the group: a failure of the handler like any other.
            error = exc
        finally:
            held.scope = None
            self.stats.running -= 1
        return value, error, scope

    def _complete(self, spec: HandlerSpec, held: HeldJob, value: Any) -> Outcome:
        job = held.claimed.job
        try:
            result = spec.result_adapter.dump_json(value, warnings=False)
        except Exception as exc:
            self.stats.failed += 1
            log.warning("job %s: result of %s does not serialize: %s", job.id, job.name,
                        type(exc).__name__, extra=job_fields(job))
            return Fail(held.lease, error_from_exception("ResultSerializationError", exc), None)
        limit = self.config.max_result_bytes
        if len(result) > limit:
            self.stats.failed += 1
            log.warning("job %s: result of %s is %d bytes, over max_result_bytes (%d)",
                        job.id, job.name, len(result), limit, extra=job_fields(job))
            return Fail(held.lease, error_from_message(
                "ResultTooLarge", f"the result is {len(result)} bytes; the limit "
                f"(max_result_bytes) is {limit}"), None)
        self.stats.succeeded += 1
        log.debug("job %s (%s) attempt %d completed", job.id, job.name, job.attempt,
                  extra=job_fields(job))
        return Complete(held.lease, result)

    def _after_cancel(self, held: HeldJob) -> Outcome | None:
        if held.reason is CancelReason.USER:
            self.stats.canceled += 1
            return AckCancel(held.lease)
        if held.reason is CancelReason.SHUTDOWN:
            self.stats.released += 1
            return Release(held.lease, ran=held.started)
        self.stats.lease_lost += 1
        if held.reason is CancelReason.LEASE_EXPIRING:
            log.warning("job %s (%s) attempt %d: lease in doubt, handler stopped; handing the "
                        "job back", held.job_id, held.claimed.job.name, held.claimed.job.attempt,
                        extra=job_fields(held.claimed.job))
            return Release(held.lease, ran=held.started)
        log.warning("job %s (%s) attempt %d: lease lost, handler stopped; its result is not "
                    "written", held.job_id, held.claimed.job.name, held.claimed.job.attempt,
                    extra=job_fields(held.claimed.job))
        return None

    def _failure(
        self, spec: HandlerSpec | None, held: HeldJob, code: str, exc: BaseException
    ) -> Outcome:
        job: Job = held.claimed.job
        policy: RetryPolicy = (spec.retry if spec is not None else None) or \
            self.config.default_retry
        error = error_from_exception(code, exc)
        kind = type_name(type(exc))
        if policy.is_retryable(exc) and job.retry_count < job.max_retries:
            self.stats.retried += 1
            self.recorder.retried(job.name)
            delay = policy.delay(job.retry_count + 1, self.rng)
            # The traceback only at DEBUG: a retry is routine, the final failure is not.
            log.warning("job %s (%s) attempt %d failed with %s: %s; retry %d of %d in %.1fs",
                        job.id, job.name, job.attempt, kind, error["message"],
                        job.retry_count + 1, job.max_retries, delay,
                        exc_info=exc if log.isEnabledFor(logging.DEBUG) else None,
                        extra=job_fields(job))
            return Fail(held.lease, error, delay)
        self.stats.failed += 1
        why = "no retries left" if policy.is_retryable(exc) else "not retryable"
        log.error("job %s (%s) failed for good after %s (%s): %s: %s", job.id, job.name,
                  plural(job.attempt, "attempt"), why, kind, error["message"], exc_info=exc,
                  extra=job_fields(job))
        return Fail(held.lease, error, None)
