"""The Redis store's layout: its keys by name, and how a job is packed into them.

See ``lua/_lib.lua`` for what each key holds; the order here is the order of ``KEYS`` there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from .._job import EMPTY_CONTEXT, HttpContext, Job, JobStatus
from ._protocol import NewJob


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Every key of one queue; all share the hash tag ``{queue}`` (one Cluster slot)."""

    rec: str
    data: str
    out: str
    err: str
    ready: str
    scheduled: str
    leases: str
    expiry: str
    idem: str
    wake: str
    watch: str
    seq: str

    @classmethod
    def of(cls, queue: str) -> RedisKeys:
        prefix = f"ae:{{{queue}}}:"
        return cls(**{f.name: prefix + f.name for f in dataclasses.fields(cls)})

    def as_list(self) -> list[str]:
        return [getattr(self, f.name) for f in dataclasses.fields(self)]


# Kinds of a submit script's answer per job (lua/submit.lua).
SUBMIT_NEW = b"new"
SUBMIT_SAME = b"same"
SUBMIT_CONFLICT = b"conflict"
SUBMIT_FULL = b"full"

# Kinds of outcome in a finish call (lua/finish.lua).
FINISH_COMPLETE = "C"
FINISH_FAIL = "F"
FINISH_RETRY = "R"
FINISH_RELEASE = "L"
FINISH_ACK_CANCEL = "X"


def _seconds(ms: bytes) -> float | None:
    return int(ms) / 1000 if ms else None


def decode_job(job_id: str, snapshot: Sequence[Any]) -> Job | None:
    """A job from ``{record, data, result, error}`` as the scripts return them."""
    record, data, result, error = snapshot
    if not record or not data:
        return None
    st, tok, rt, mx, cn, cr, sa, co, up, owner, _ = record.split(b"|", 10)
    name, context, payload = data.split(b"\0", 2)
    return Job(
        id=job_id,
        name=name.decode(),
        status=JobStatus(st.decode()),
        payload=payload,
        max_retries=int(mx),
        created_at=int(cr) / 1000,
        last_updated_at=int(up) / 1000,
        retry_count=int(rt),
        started_at=_seconds(sa),
        completed_at=_seconds(co),
        result=result or None,
        error=orjson.loads(error) if error else None,
        context=HttpContext.from_json_obj(orjson.loads(context)) if context else EMPTY_CONTEXT,
        token=int(tok),
        owner=owner.decode() or None,
        cancel_requested=cn == b"1",
    )


def encode_data(new: NewJob) -> bytes:
    context = b"" if new.context == EMPTY_CONTEXT else orjson.dumps(new.context.to_json_obj())
    return new.name.encode() + b"\0" + context + b"\0" + new.payload
