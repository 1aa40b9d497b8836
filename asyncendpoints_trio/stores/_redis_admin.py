"""The Redis store's admin queries, each a function of one partition's scripts.

``run(script, args)`` runs one of the store's scripts on one set of ``RedisKeys`` (one hash
tag). A store of several partitions calls these per partition and merges: pages by their
order keys (``merge_pages``), counts by adding them up. Presence lives in one partition
(the first) alone, as plain commands: one key per instance, expiring by itself.
"""

from __future__ import annotations

import heapq
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import orjson

from .._job import Job, JobStatus
from ..redis import RedisAPI
from ._admin import (
    RATE_BUCKET_SECONDS,
    RATE_BUCKETS,
    Inspected,
    Instance,
    InstanceInfo,
    JobPage,
    JobQuery,
    PagePosition,
    QueueStats,
    RateBucket,
)
from ._redis_layout import RedisKeys, decode_job

Run = Callable[[str, Sequence[str | bytes | int | float]], Awaitable[Any]]
MAX_NAMES = 1000  # names the stats report at most

# One job of a page with its order key: 'created|id', created zero-padded (lua/_lib.lua).
Entry = tuple[str, Job]


def order_key(position: PagePosition) -> str:
    return f"{position.created_us:016d}|{position.job_id}"


def position_of(key: str) -> PagePosition:
    created, job_id = key.split("|", 1)
    return PagePosition(int(created), job_id)


async def list_partition(run: Run, query: JobQuery) -> tuple[list[Entry], bool]:
    """Up to ``query.limit`` jobs of one partition, newest first, and whether it has more."""
    after = "" if query.after is None else order_key(query.after)
    reply = await run("admin_list", [query.limit, query.name or "", after,
                                     *(s.value for s in query.wanted())])
    entries: list[Entry] = []
    for key, *snapshot in reply[1:]:
        text = key.decode()
        job = decode_job(text[17:], snapshot)
        if job is not None:
            entries.append((text, job))
    return entries, bool(reply[0])


def merge_pages(parts: Iterable[tuple[list[Entry], bool]], limit: int) -> JobPage:
    """One page from the pages of several partitions (each newest first)."""
    parts = list(parts)
    merged = list(heapq.merge(*(entries for entries, _ in parts), key=lambda e: e[0],
                              reverse=True))
    jobs = [job for _, job in merged[:limit]]
    more = len(merged) > limit or any(more for _, more in parts)
    return JobPage(jobs, position_of(merged[limit - 1][0]) if more and jobs else None)


async def inspect(run: Run, job_id: str) -> Inspected | None:
    lease_ms, *snapshot = await run("inspect", [job_id])
    job = decode_job(job_id, snapshot)
    if job is None:
        return None
    return Inspected(job, None if not lease_ms else int(float(lease_ms)) / 1000)


def _pairs(flat: Sequence[Any]) -> Iterable[tuple[Any, Any]]:
    return zip(flat[::2], flat[1::2], strict=True)


async def stats_partition(run: Run) -> tuple[float, QueueStats]:
    """One partition's counts and rate buckets, and the server's time (Unix seconds)."""
    now_ms, by_status, by_name, rates = await run("admin_stats", [MAX_NAMES])
    statuses = {k.decode(): int(v) for k, v in _pairs(by_status)}
    names = {name.decode(): {k.decode(): int(v) for k, v in _pairs(counts)}
             for name, counts in _pairs(by_name)}
    now = int(now_ms) / 1000
    minute = int(now // RATE_BUCKET_SECONDS)
    counts: dict[tuple[int, str], int] = {}
    for field, value in _pairs(rates):
        at, kind = field.decode().split(":", 1)
        counts[int(at), kind] = int(value)
    buckets = [RateBucket(m * RATE_BUCKET_SECONDS, counts.get((m, "s"), 0),
                          counts.get((m, "c"), 0), counts.get((m, "f"), 0))
               for m in range(minute - RATE_BUCKETS + 1, minute + 1)]
    return now, QueueStats(statuses, names, buckets)


def merge_stats(parts: Sequence[QueueStats]) -> QueueStats:
    by_status = {s.value: sum(p.by_status.get(s.value, 0) for p in parts) for s in JobStatus}
    by_name: dict[str, dict[str, int]] = {}
    for part in parts:
        for name, counts in part.by_name.items():
            into = by_name.setdefault(name, {s.value: 0 for s in JobStatus})
            for status, n in counts.items():
                into[status] += n
    buckets = [RateBucket(column[0].at, sum(b.submitted for b in column),
                          sum(b.completed for b in column), sum(b.failed for b in column))
               for column in zip(*(p.buckets for p in parts), strict=True)]
    return QueueStats(by_status, {n: by_name[n] for n in sorted(by_name)}, buckets)


def _info_json(info: InstanceInfo, ttl_ms: int) -> bytes:
    return orjson.dumps({"host": info.host, "pid": info.pid, "startedAt": info.started_at,
                         "concurrency": info.concurrency, "jobsHeld": info.jobs_held,
                         "ttlMs": ttl_ms})


async def announce(client: RedisAPI, keys: RedisKeys, info: InstanceInfo, ttl: float) -> None:
    """One command in the common case: the instance's own key, set with a server-side
    expiry (``PX``), so that a killed instance's record lapses one TTL after its last
    renewal on the server's clock. Its id joins the set of instances when the key was
    missing (a first announcement, or one after a lapse)."""
    ttl_ms = max(1, round(ttl * 1000))
    old = await client.execute("SET", keys.presence_of(info.id), _info_json(info, ttl_ms),
                               "PX", ttl_ms, "GET")
    if old is None:
        await client.execute("SADD", keys.presence, info.id)


async def instances(client: RedisAPI, keys: RedisKeys) -> list[Instance]:
    """Every instance whose key has not expired; ids whose key is gone leave the set."""
    ids = [m.decode() for m in await client.execute("SMEMBERS", keys.presence)]
    if not ids:
        return []
    replies = await client.pipeline([("TIME",), *[
        command for i in ids for command in (("GET", keys.presence_of(i)),
                                              ("PTTL", keys.presence_of(i)))]])
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    seconds, micros = replies[0]
    now = int(seconds) + int(micros) / 1_000_000
    found, gone = [], []
    for k, instance_id in enumerate(ids):
        text, left_ms = replies[1 + 2 * k], int(replies[2 + 2 * k])
        if text is None or left_ms < 0:
            gone.append(instance_id)
            continue
        data = orjson.loads(text)
        info = InstanceInfo(instance_id, str(data["host"]), int(data["pid"]),
                            float(data["startedAt"]), int(data["concurrency"]),
                            int(data["jobsHeld"]))
        expires = now + left_ms / 1000
        found.append(Instance(info, expires - int(data["ttlMs"]) / 1000, expires))
    if gone:
        await client.execute("SREM", keys.presence, *gone)
    return sorted(found, key=lambda i: i.info.id)
