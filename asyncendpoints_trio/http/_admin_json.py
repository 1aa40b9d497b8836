"""The admin API's JSON: the job detail, instances, stats, and the list's opaque cursor.

A cursor is the position the page ended at (see ``stores/_admin.py``) plus a digest of the
filter it belongs to, base64url-encoded: a cursor used with another filter, or tampered
with, is refused (400) rather than read as some other position.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson

from .._job import Job
from .._job_json import _iso, job_to_obj
from ..stores._admin import Inspected, Instance, JobQuery, PagePosition, QueueStats
from ..stores._history import synthesized


class BadCursor(ValueError):
    pass


def _filter_digest(query: JobQuery) -> str:
    text = ",".join(sorted(s.value for s in query.statuses)) + "\0" + (query.name or "")
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def encode_cursor(position: PagePosition, query: JobQuery) -> str:
    raw = orjson.dumps([position.created_us, position.job_id, _filter_digest(query)])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, query: JobQuery) -> PagePosition:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_us, job_id, digest = orjson.loads(raw)
    except (ValueError, TypeError) as exc:  # binascii.Error is a ValueError
        raise BadCursor("cursor is malformed: pass nextCursor from the last page as it "
                        "is") from exc
    if isinstance(created_us, bool) or not isinstance(created_us, int) or created_us < 0 \
            or not isinstance(job_id, str) or not isinstance(digest, str) \
            or len(job_id) > 64 or "\0" in job_id:
        raise BadCursor("cursor is malformed: pass nextCursor from the last page as it is")
    if digest != _filter_digest(query):
        raise BadCursor("cursor belongs to another filter: page with the status and name "
                        "filter of the page it came from")
    return PagePosition(created_us, job_id)


def detail_obj(inspected: Inspected, *, show_payload: bool) -> dict[str, Any]:
    """The public job JSON (stack traces included: operators debug with them) plus
    ``admin``: what an operator needs beside it."""
    job = inspected.job
    body = job_to_obj(job, stack_traces=True)
    attempts = synthesized(job.attempts, status=job.status.value,
                           retry_count=job.retry_count, started_at=job.started_at,
                           completed_at=job.completed_at)
    admin: dict[str, Any] = {
        "attempts": [{"number": a.number, "startedAt": _iso(a.started_at),
                      "endedAt": _iso(a.ended_at), "outcome": a.outcome,
                      "errorCode": a.error_code, "errorMessage": a.error_message}
                     for a in attempts],
        "owner": job.owner,
        "leaseExpiresAt": _iso(inspected.lease_expires_at),
        "fencingToken": job.token,
        "cancelRequested": job.cancel_requested,
        "priority": job.priority,
        "dueAt": _iso(job.due_at),
        "audit": [{"action": e.action, "by": e.by, "at": _iso(e.at)} for e in job.audit],
    }
    if show_payload:
        admin["payload"] = orjson.Fragment(job.payload)
    body["admin"] = admin
    return body


def list_obj(jobs: list[Job], next_cursor: str | None, *, stack_traces: bool
             ) -> dict[str, Any]:
    return {"jobs": [job_to_obj(j, stack_traces=stack_traces) for j in jobs],
            "nextCursor": next_cursor}


def instances_obj(instances: list[Instance]) -> dict[str, Any]:
    return {"instances": [{
        "id": i.info.id, "host": i.info.host, "pid": i.info.pid,
        "startedAt": _iso(i.info.started_at), "concurrency": i.info.concurrency,
        "jobsHeld": i.info.jobs_held, "lastHeartbeat": _iso(i.last_heartbeat),
        "expiresAt": _iso(i.expires_at)} for i in instances]}


def stats_obj(stats: QueueStats) -> dict[str, Any]:
    return {"byStatus": dict(stats.by_status),
            "byName": {name: dict(counts) for name, counts in stats.by_name.items()},
            "rates": {"bucketSeconds": stats.bucket_seconds, "buckets": [
                {"at": _iso(b.at), "submitted": b.submitted, "completed": b.completed,
                 "failed": b.failed} for b in stats.buckets]}}
