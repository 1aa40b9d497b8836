"""Job JSON, wire-compatible with the .NET original (camelCase keys), plus what it lacks."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from ._job import Attempt, Job, JobStatus
from .stores._history import synthesized


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _without_traces(exception: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if exception is None:
        return None
    inner = exception.get("innerException")
    return {**exception, "stackTrace": None,
            "innerException": _without_traces(inner) if isinstance(inner, Mapping) else None}


def public_error(error: Mapping[str, Any] | None, *, stack_traces: bool) -> Any:
    """The job's ``error`` as clients see it: stack traces (server paths, code) only when
    the app opts in; type and message always. The logs keep the whole chain."""
    if error is None or stack_traces:
        return error
    exception = error.get("exception")
    return {**error, "exception": _without_traces(exception)
            if isinstance(exception, Mapping) else exception}


def _attempt_obj(attempt: Attempt) -> dict[str, Any]:
    error = None
    if attempt.error_code is not None or attempt.error_message is not None:
        error = {"code": attempt.error_code, "message": attempt.error_message}
    return {"attempt": attempt.number, "startedAt": _iso(attempt.started_at),
            "endedAt": _iso(attempt.ended_at), "outcome": attempt.outcome, "error": error}


def job_to_obj(job: Job, *, stack_traces: bool = True) -> dict[str, Any]:
    """The public JSON shape; stored JSON (request, result) is embedded without re-parsing.

    The original's fields keep their meaning (``error`` is the latest failure, cleared by
    a success); ``attempts`` keeps the runs before it, the latest ten.
    """
    attempts = synthesized(job.attempts, status=job.status.value,
                           retry_count=job.retry_count, started_at=job.started_at,
                           completed_at=job.completed_at)
    return {
        "id": job.id,
        "name": job.name,
        "status": job.status.value,
        "retryCount": job.retry_count,
        "maxRetries": job.max_retries,
        "createdAt": _iso(job.created_at),
        "startedAt": _iso(job.started_at),
        "completedAt": _iso(job.completed_at),
        "lastUpdatedAt": _iso(job.last_updated_at),
        "result": None if job.result is None else orjson.Fragment(job.result),
        "error": public_error(job.error, stack_traces=stack_traces),
        "cancelRequested": job.cancel_requested,
        "priority": job.priority,
        "nextAttemptAt": _iso(job.due_at) if job.status is JobStatus.SCHEDULED else None,
        "attempts": [_attempt_obj(a) for a in attempts],
        "progress": None if job.progress is None else orjson.Fragment(job.progress),
    }


def job_to_json(job: Job, *, stack_traces: bool = True) -> bytes:
    return orjson.dumps(job_to_obj(job, stack_traces=stack_traces))
