"""Job JSON, wire-compatible with the .NET original (camelCase keys)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from ._job import Job


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat()


def job_to_obj(job: Job) -> dict[str, Any]:
    """The public JSON shape; stored JSON (request, result) is embedded without re-parsing."""
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
        "error": job.error,
        "cancelRequested": job.cancel_requested,
    }


def job_to_json(job: Job) -> bytes:
    return orjson.dumps(job_to_obj(job))
