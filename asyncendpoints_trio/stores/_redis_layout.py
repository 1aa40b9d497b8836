"""The Redis store's layout: its keys by name, and how a job is packed into them.

See ``lua/_lib.lua`` for what each key holds; the order here is the order of ``KEYS`` there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from .._job import EMPTY_CONTEXT, Attempt, AuditEntry, HttpContext, Job, JobStatus
from ._protocol import NewJob


def layout_key(queue: str) -> str:
    """The queue's partition count, where a queue of more than one records it (a STRING in
    partition 0's slot; missing: one partition)."""
    return f"ae:{{{queue}}}:partitions"


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Every key of one partition of a queue; all share its hash tag (one Cluster slot):
    ``{queue}`` for partition 0 (a queue of one partition is today's layout) and
    ``{queue|k}`` for partition ``k`` (see _partitions.py)."""

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
    hist: str
    prog: str
    idle: str
    # The admin index and records (lua/_lib.lua, "Admin indexes").
    by_name: str
    counts: str
    audit: str
    rates: str
    presence: str

    def inbox(self, owner: str) -> str:
        """The list an idle instance blocks on for jobs pushed to it (lua/_lib.lua)."""
        return self.rec[:-3] + "inbox:" + owner

    def presence_of(self, instance: str) -> str:
        """An instance's presence record (``presence`` is the set of their ids); plain
        commands only, never a script's."""
        return self.rec[:-3] + "presence:" + instance

    @classmethod
    def of(cls, tag: str) -> RedisKeys:
        """The keys of hash tag ``tag``: a queue's name, for its partition 0."""
        prefix = f"ae:{{{tag}}}:"
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
FINISH_RELEASE = "L"  # of a run that started
FINISH_RELEASE_UNRUN = "l"
FINISH_ACK_CANCEL = "X"


def _seconds(us: bytes) -> float | None:
    return int(us) / 1_000_000 if us else None


def decode_history(history: bytes | None) -> tuple[Attempt, ...]:
    """The history hash's lines (see ``attempt_line`` in lua/_lib.lua)."""
    if not history:
        return ()
    attempts = []
    for line in history.split(b"\n"):
        entry = orjson.loads(line)
        attempts.append(Attempt(
            number=int(entry["n"]),
            started_at=None if entry["s"] is None else entry["s"] / 1_000_000,
            ended_at=entry["e"] / 1_000_000,
            outcome=str(entry["o"]),
            error_code=entry.get("c"),
            error_message=entry.get("m"),
        ))
    return tuple(attempts)


def decode_audit(audit: bytes | None) -> tuple[AuditEntry, ...]:
    """The audit hash's lines (see ``audit`` in lua/_lib.lua)."""
    if not audit:
        return ()
    entries = []
    for line in audit.split(b"\n"):
        entry = orjson.loads(line)
        by = entry.get("b")
        entries.append(AuditEntry(str(entry["a"]), None if by is None else str(by),
                                  entry["t"] / 1_000_000))
    return tuple(entries)


def decode_job(job_id: str, snapshot: Sequence[Any]) -> Job | None:
    """A job from ``{record, data, result, error[, history[, progress[, audit]]]}`` as
    the scripts return them."""
    record, data, result, error = snapshot[:4]
    history = snapshot[4] if len(snapshot) > 4 else None
    progress = snapshot[5] if len(snapshot) > 5 else None
    audit = snapshot[6] if len(snapshot) > 6 else None
    if not record or not data:
        return None
    fields = record.split(b"|", 13)
    if len(fields) == 13:
        # A record from before versions (the 0.1 layout, 13 fields): version 0. The key
        # stored last is a hex digest, so the field count tells the layouts apart.
        fields.insert(12, b"0")
    # The last field (name \0 idempotency key) is the scripts' own: the name is the data's.
    st, tok, rt, mx, cn, cr, sa, co, up, owner, pr, du, ver, _ = fields
    name, context, principal, trace, payload = data.split(b"\0", 4)
    return Job(
        id=job_id,
        name=name.decode(),
        status=JobStatus(st.decode()),
        payload=payload,
        max_retries=int(mx),
        created_at=int(cr) / 1_000_000,
        last_updated_at=int(up) / 1_000_000,
        retry_count=int(rt),
        started_at=_seconds(sa),
        completed_at=_seconds(co),
        result=result or None,
        error=orjson.loads(error) if error else None,
        context=HttpContext.from_json_obj(orjson.loads(context)) if context else EMPTY_CONTEXT,
        token=int(tok),
        owner=owner.decode() or None,
        cancel_requested=cn == b"1",
        priority=int(pr),
        due_at=_seconds(du),
        principal=principal.decode() or None,
        trace=trace.decode(),
        attempts=decode_history(history),
        progress=progress or None,
        version=int(ver),
        audit=decode_audit(audit),
    )


def decode_frames(entry: bytes) -> list[bytes | None]:
    """``frame`` values of lua/_lib.lua, one after another: ``<n>:<bytes>``, or ``-`` for
    none."""
    parts: list[bytes | None] = []
    pos = 0
    while pos < len(entry):
        if entry[pos:pos + 1] == b"-":
            parts.append(None)
            pos += 1
            continue
        colon = entry.index(b":", pos)
        start = colon + 1
        end = start + int(entry[pos:colon])
        parts.append(entry[start:end])
        pos = end
    return parts


def decode_pushed(entry: bytes) -> tuple[str, Job]:
    """An inbox entry: framed id, token, record, data, error, progress."""
    raw_id, _token, record, data, error, progress = decode_frames(entry)
    assert raw_id is not None
    job_id = raw_id.decode()
    job = decode_job(job_id, (record, data, None, error, None, progress))
    if job is None:
        raise ValueError(f"unreadable inbox entry for job {job_id}")
    return job_id, job


def encode_data(new: NewJob) -> bytes:
    """``name \\0 context \\0 principal \\0 trace \\0 payload``: what never changes after
    submit (JSON text, trace contexts and our names hold no NUL)."""
    context = b"" if new.context == EMPTY_CONTEXT else orjson.dumps(new.context.to_json_obj())
    principal = (new.principal or "").encode()
    return b"\0".join([new.name.encode(), context, principal, new.trace.encode(), new.payload])
