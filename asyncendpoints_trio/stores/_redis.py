"""``RedisStore``: jobs in Redis, shared by every instance of a fleet.

Each state change is one Lua script (``lua/*.lua``), so a job is never half-written, and
every script declares all the keys it touches, all under one hash tag per queue: the store
is Redis Cluster-safe. Lease deadlines, retry due times and retention run on the Redis
server's clock. See docs/pages/redis-internals.md for the data layout and each script's
contract.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
import trio

from .._backoff import backoff_delay
from .._error_info import error_from_message
from .._errors import (
    ConfigurationError,
    IdempotencyConflict,
    QueueFull,
    ReplicationTimeout,
    StoreError,
    StoreUnavailable,
)
from .._job import Job, JobStatus
from ..redis import RedisAPI, ReplicaWait, Script, open_client
from . import _redis_admin as admin
from ._admin import Inspected, Instance, InstanceInfo, JobPage, JobQuery, QueueStats, Retried
from ._feeds import JobFeeds, JobWatch
from ._history import error_summary
from ._partitions import MAX_PARTITIONS, ClaimOrder, id_in, partition_of, tags
from ._protocol import (
    AckCancel,
    Claimed,
    Complete,
    Fail,
    HeartbeatReply,
    IdleOffer,
    Lease,
    NewJob,
    Outcome,
    RecoveryReport,
    Release,
    Submitted,
)
from ._redis_layout import (
    FINISH_ACK_CANCEL,
    FINISH_COMPLETE,
    FINISH_FAIL,
    FINISH_RELEASE,
    FINISH_RELEASE_UNRUN,
    FINISH_RETRY,
    SUBMIT_CONFLICT,
    SUBMIT_FULL,
    SUBMIT_NEW,
    SUBMIT_SAME,
    RedisKeys,
    decode_frames,
    decode_job,
    decode_pushed,
    encode_data,
    layout_key,
)

log = logging.getLogger("asyncendpoints_trio.redis_store")
_T = TypeVar("_T")

_LUA = Path(__file__).with_name("lua")
_LIB = (_LUA / "_lib.lua").read_text(encoding="utf-8")
# Script flags (Redis 7). Every script declares flags, so Redis checks "out of memory"
# before a script starts, never halfway through it. Under maxmemory only new work is
# refused (submit -> 503, long-poll registration); the scripts that keep existing work
# moving may run: a refused heartbeat would lose leases and run jobs twice, and recovery
# is what frees memory.
_FLAGS = {
    "submit": "",
    "watch": "",
    "renew_watch": "",
    "claim": "allow-oom",
    "heartbeat": "allow-oom",
    "finish": "allow-oom",
    "cancel": "allow-oom",
    "recover": "allow-oom",
    "get": "no-writes,allow-oom",
    "owned": "no-writes,allow-oom",
    "unidle": "allow-oom",
    "sync": "allow-oom",
    # The admin API's (see _redis_admin.py). A retry is new work: refused under maxmemory.
    "retry": "",
    "inspect": "no-writes,allow-oom",
    "admin_list": "no-writes,allow-oom",
    "admin_stats": "no-writes,allow-oom",
}


def _script(name: str, publish: str) -> Script:
    flags = _FLAGS[name]
    shebang = f"#!lua flags={flags}\n" if flags else "#!lua\n"
    return Script(f"{shebang}local PUBLISH_CMD = '{publish}'\n{_LIB}"
                  + (_LUA / f"{name}.lua").read_text(encoding="utf-8"))


_SCRIPTS = {name: _script(name, "PUBLISH") for name in _FLAGS}
# On a cluster, events go by sharded pub/sub: a message stays inside the shard of its
# partition's slot instead of being broadcast to every node.
_SHARDED_SCRIPTS = {name: _script(name, "SPUBLISH") for name in _FLAGS}
# Sent whole with EVAL, ahead of the BLPOP it registers, in the same write: with EVALSHA, a
# server that lost its script cache would answer NOSCRIPT while the BLPOP went on waiting
# unregistered. It is small, and it needs no library.
_REGISTER = "#!lua\n" + (_LUA / "register.lua").read_text(encoding="utf-8")
# The runtime's own traffic (claims, renewals, outcomes, sweeps, the idle wait) goes over a
# small pool of its own, so that a burst of HTTP reads can never keep a heartbeat waiting
# for a connection and look like an outage to the lease keeper.
_CONTROL = frozenset({"claim", "heartbeat", "finish", "recover", "owned", "unidle"})
CONTROL_CONNECTIONS = 6
_DEFAULT_BULK_LIMIT = 512 * 1024 * 1024

# Without a live subscription, long-polls and event streams re-read the job this often.
_POLL_WITHOUT_EVENTS = 0.5
# Event streams register their jobs in WATCH for this long; the fan-out renews the
# registrations (and re-reads the jobs, which repairs a missed message) every
# _STREAM_REFRESH seconds, so a registration never lapses while a stream is open.
_STREAM_REGISTRATION = 60.0
_STREAM_REFRESH = 20.0
_FEED_READS = 256  # jobs read in one pipelined round trip by the fan-out
_RENEWALS = 1_000  # registrations renewed (and versions read) by one script call
_RECLAIM_MESSAGE = "the instance running this job stopped renewing its lease"
_RECLAIM_ERROR = orjson.dumps(error_from_message(
    "LeaseExpired", "the instance running this job stopped renewing its lease"))
_EXPIRED_ERROR = orjson.dumps(error_from_message(
    "LeaseExpired", "the instance running this job stopped renewing its lease, "
    "and no retries were left"))


def _history_fields(error: Mapping[str, Any]) -> bytes:
    """The error's code and message as members of the attempt's history line."""
    code, message = error_summary(error)
    return orjson.dumps({"c": code, "m": message})[1:-1]


def replica_wait(replicas_ack: int, replicas_timeout: float) -> ReplicaWait | None:
    """The ``WAIT`` submits and outcomes ask for; ``None`` for none."""
    if isinstance(replicas_ack, bool) or not isinstance(replicas_ack, int) or replicas_ack < 0:
        raise ConfigurationError(f"replicas_ack must be an integer >= 0, not {replicas_ack!r}")
    if isinstance(replicas_timeout, bool) or not isinstance(replicas_timeout, (int, float)) \
            or not 0 < replicas_timeout < float("inf"):
        raise ConfigurationError("replicas_timeout must be a finite number of seconds > 0, "
                                 f"not {replicas_timeout!r}")
    return ReplicaWait(replicas_ack, float(replicas_timeout)) if replicas_ack else None


def _texts(args: Sequence[str | bytes | int | float]) -> list[str | bytes]:
    return [a if isinstance(a, (bytes, str)) else str(a) for a in args]


@dataclass(frozen=True, slots=True)
class _Part:
    """One partition: its keys (``KEYS`` of every script) and pub/sub channels."""

    index: int
    keys: RedisKeys
    key_list: list[str]
    cancel: str
    done: str
    changes: str  # named in lua/_lib.lua too

    @classmethod
    def of(cls, tag: str, index: int) -> _Part:
        keys = RedisKeys.of(tag)
        prefix = keys.rec[:-3]
        return cls(index, keys, keys.as_list(), prefix + "cancel", prefix + "done",
                   prefix + "changes")


class _Waiter:
    """One long-poll: woken by its job's end, which may bring the job's new state."""

    __slots__ = ("ended", "event")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.ended: tuple[bytes, bytes | None, bytes | None, bytes | None,
                          bytes | None] | None = None


class RedisStore:
    """``queue`` names the key space (jobs of different queues never meet); ``retention``
    is how long, in seconds, a finished job stays readable. ``replicas_ack``: submits and
    outcomes wait (``WAIT``) until that many replicas have them, for at most
    ``replicas_timeout`` seconds, else raise ``ReplicationTimeout`` (docs: production)."""

    def __init__(self, client: RedisAPI, *, queue: str = "default",
                 retention: float = 3600.0, owns_client: bool = False,
                 control: RedisAPI | None = None, partitions: int = 1,
                 replicas_ack: int = 0, replicas_timeout: float = 1.0) -> None:
        """``control``: the client for the runtime's own calls; by default a small pool
        of ``CONTROL_CONNECTIONS`` made from ``client``'s settings, owned by the store.
        ``partitions``: hash tags the queue is spread over (see _partitions.py); every
        instance of a fleet must use the same number."""
        if not queue or any(c in queue for c in "{}| "):
            raise ConfigurationError(f"queue {queue!r}: use a non-empty name without braces, "
                                     "spaces or '|'")
        if isinstance(partitions, bool) or not isinstance(partitions, int) or \
                not 1 <= partitions <= MAX_PARTITIONS:
            raise ConfigurationError(f"partitions must be an integer from 1 to "
                                     f"{MAX_PARTITIONS}, not {partitions!r}")
        self._wait = replica_wait(replicas_ack, replicas_timeout)
        self.client = client
        self.queue = queue
        self.retention = retention
        self.partitions = partitions
        self._owns_client = owns_client
        self._owns_control = control is None
        self.control = control if control is not None else client.sibling(
            max_connections=CONTROL_CONNECTIONS)
        self._scripts = _SHARDED_SCRIPTS if client.clustered else _SCRIPTS
        # On a cluster an idle wait holds one connection per partition (BLPOP may not cross
        # slots): a pool of their own, so that they can never take the control pool's
        # connections from heartbeats and outcomes on a node serving many partitions.
        self._waits: RedisAPI | None = None
        if partitions > 1 and client.clustered:
            self._waits = client.sibling(max_connections=partitions)
        self._parts = [_Part.of(tag, k) for k, tag in enumerate(tags(queue, partitions))]
        self.keys = self._parts[0].keys  # partition 0: presence, and the layout record
        self._channels = {channel: kind for part in self._parts for channel, kind in (
            (part.cancel.encode(), "cancel"), (part.done.encode(), "done"),
            (part.changes.encode(), "changes"))}
        self._claims = ClaimOrder(partitions)
        self._sweep_from = 0  # the partition recovery sweeps first next time
        self._layout_checked = False
        self.feeds = JobFeeds()  # event streams on this instance, by job id
        self._stale: set[str] = set()  # watched jobs whose change was announced, to read
        self._stale_event = trio.Event()
        self._feed_reads = 0
        self._watch_renewals = 0
        self._waiters: dict[str, set[_Waiter]] = {}  # long-polls, by job id
        self._subscribed = False
        self._next_due: float | None = None  # trio time a retry falls due, as last seen
        self._fenced = 0
        self._shortfalls = 0  # writes that WAIT saw fewer than replicas_ack replicas take
        self._events_seen = 0
        self._bulk_limit: int | None = None
        self.pushed = 0  # jobs an idle wait of ours received by push

    @classmethod
    def from_url(cls, url: str, *, queue: str = "default", retention: float = 3600.0,
                 partitions: int = 1, replicas_ack: int = 0, replicas_timeout: float = 1.0,
                 **client_options: Any) -> RedisStore:
        replica_wait(replicas_ack, replicas_timeout)  # checked before a client opens
        return cls(open_client(url, **client_options), queue=queue,
                   retention=retention, owns_client=True, partitions=partitions,
                   replicas_ack=replicas_ack, replicas_timeout=replicas_timeout)

    @property
    def replicas_ack(self) -> int:
        return 0 if self._wait is None else self._wait.replicas

    def _part(self, job_id: str) -> _Part:
        return self._parts[partition_of(job_id, self.partitions)]

    async def _run(self, name: str, args: Sequence[str | bytes | int | float],
                   part: _Part | None = None, *, wait: ReplicaWait | None = None) -> Any:
        client = self.control if name in _CONTROL else self.client
        return await client.evalsha(self._scripts[name], (part or self._parts[0]).key_list,
                                    _texts(args), wait=wait)

    async def _run_each(self, name: str,
                        calls: Sequence[tuple[_Part, Sequence[str | bytes | int | float]]],
                        *, wait: ReplicaWait | None = None) -> list[Any]:
        """One script on several partitions in one round trip per node; a failed call
        raises (after all have run). With ``wait``, a shortfall raises
        ``ReplicationTimeout`` whose ``reply`` is the list of replies, one per call."""
        client = self.control if name in _CONTROL else self.client
        try:
            if len(calls) == 1:
                return [await self._run(name, calls[0][1], calls[0][0], wait=wait)]
            replies = await client.evalsha_many(
                [(self._scripts[name], part.key_list, _texts(args)) for part, args in calls],
                wait=wait)
        except ReplicationTimeout as exc:
            replies = [exc.reply] if len(calls) == 1 else exc.reply
            shortfall: ReplicationTimeout | None = exc
        else:
            shortfall = None
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        if shortfall is not None:
            raise ReplicationTimeout(str(shortfall), acknowledged=shortfall.acknowledged,
                                     reply=replies,
                                     unconfirmed=shortfall.unconfirmed) from shortfall
        return replies

    @property
    def _retention_ms(self) -> int:
        return int(self.retention * 1000)

    # ---- the store contract ----------------------------------------------------------------

    async def submit(
        self, jobs: Sequence[NewJob], *, max_queued: int | None = None
    ) -> list[Submitted | Exception]:
        await self._check_layout()
        jobs = [self._placed(new) for new in jobs]
        groups: dict[int, list[int]] = {}  # partition -> positions in jobs, in order
        for i, new in enumerate(jobs):
            groups.setdefault(partition_of(new.id, self.partitions), []).append(i)
        # One script sees one partition, so each bounds its own share of the line: ids
        # spread evenly, and the queue as a whole holds about max_queued.
        share = -1 if max_queued is None else -(-max_queued // self.partitions)
        calls: list[tuple[_Part, Sequence[str | bytes | int | float]]] = []
        for k, positions in groups.items():
            args: list[str | bytes | int | float] = [share, len(positions)]
            for i in positions:
                new = jobs[i]
                delay_ms = 0 if not new.delay or new.delay <= 0 else max(
                    1, round(new.delay * 1000))
                args += [new.id, new.max_retries, encode_data(new), new.idempotency_key or "",
                         new.fingerprint, new.priority, delay_ms]
            calls.append((self._parts[k], args))
        client = self.client
        shortfall: ReplicationTimeout | None = None
        try:
            if len(calls) == 1:
                replies_by_call: list[Any] = [
                    await self._run("submit", calls[0][1], calls[0][0], wait=self._wait)]
            else:
                replies_by_call = await client.evalsha_many(
                    [(self._scripts["submit"], part.key_list, _texts(args))
                     for part, args in calls], wait=self._wait)
        except ReplicationTimeout as exc:
            replies_by_call = [exc.reply] if len(calls) == 1 else exc.reply
            shortfall = exc
        else:
            shortfall = await self._sync(calls, replies_by_call)
        if shortfall is not None:
            self._shortfalls += 1
        for k in groups:
            self._claims.woken(k)  # our own claims look there next
        answers: list[Submitted | Exception | None] = [None] * len(jobs)
        for call, (positions, replies) in enumerate(zip(groups.values(), replies_by_call,
                                                        strict=True)):
            for j, i in enumerate(positions):
                new = jobs[i]
                if isinstance(replies, Exception):
                    answers[i] = replies  # that partition's call failed: its jobs alone
                    continue
                try:
                    answers[i] = self._submit_answer(new, replies[j], max_queued)
                except Exception as exc:  # one odd reply is that job's problem alone
                    answers[i] = StoreError(f"unreadable answer for job {new.id}: {exc!r}")
                if shortfall is not None and isinstance(answers[i], Submitted) and (
                        shortfall.unconfirmed is None or call in shortfall.unconfirmed):
                    # Stored (or found) on the primary, not confirmed by the replicas: no
                    # 202. The job stays; a retry with the same idempotency key finds it.
                    # (Partitions on nodes whose replicas answered keep their 202s.)
                    answers[i] = ReplicationTimeout(
                        str(shortfall), acknowledged=shortfall.acknowledged, reply=answers[i])
        return [a for a in answers if a is not None]

    async def _sync(self, calls: Sequence[tuple[_Part, Sequence[str | bytes | int | float]]],
                    replies_by_call: Sequence[Any]) -> ReplicationTimeout | None:
        """A write that changes nothing (lua/sync.lua), then ``WAIT``, in each partition
        whose submit found its jobs stored already (a retry) and stored none: ``WAIT``
        covers its own connection's writes only, so that submit's wrote nothing to wait for.
        The jobs' first writes came before this one in the node's one replication stream:
        the replicas that have this write have them."""
        if self._wait is None:
            return None
        found = [call for call, replies in enumerate(replies_by_call)
                 if not isinstance(replies, Exception)
                 and any(r[0] == SUBMIT_SAME for r in replies)
                 and not any(r[0] == SUBMIT_NEW for r in replies)]
        if not found:
            return None
        try:
            await self._run_each("sync", [(calls[call][0], []) for call in found],
                                 wait=self._wait)
        except ReplicationTimeout as exc:
            short = (found if exc.unconfirmed is None
                     else [found[i] for i in exc.unconfirmed])  # as positions in ``calls``
            return ReplicationTimeout(str(exc), acknowledged=exc.acknowledged,
                                      reply=exc.reply, unconfirmed=frozenset(short))
        return None

    def _placed(self, new: NewJob) -> NewJob:
        """A job whose id we drew moves to its idempotency key's partition (see
        _partitions.py), so that every submit with that key meets the same partition."""
        key = new.idempotency_key
        if self.partitions == 1 or key is None or new.id_chosen:
            return new
        home = partition_of(key, self.partitions)
        if partition_of(new.id, self.partitions) == home:
            return new
        return dataclasses.replace(new, id=id_in(home, self.partitions))

    @staticmethod
    def _submit_answer(new: NewJob, reply: Sequence[Any],
                       max_queued: int | None) -> Submitted | Exception:
        kind = reply[0]
        if kind == SUBMIT_NEW:
            created = int(reply[1]) / 1_000_000
            delayed = bool(new.delay and new.delay > 0)
            return Submitted(Job(
                id=new.id, name=new.name,
                status=JobStatus.SCHEDULED if delayed else JobStatus.QUEUED,
                payload=new.payload, max_retries=new.max_retries, created_at=created,
                last_updated_at=created, context=new.context, priority=new.priority,
                due_at=created + (new.delay or 0.0) if delayed else None,
                principal=new.principal, trace=new.trace, version=1), created=True)
        if kind == SUBMIT_SAME:
            other = reply[1].decode()
            job = decode_job(other, reply[2:8])
            if job is None:
                raise StoreError(f"job {other} vanished")
            return Submitted(job, created=False)
        if kind == SUBMIT_CONFLICT:
            return IdempotencyConflict(new.idempotency_key or new.id, reply[1].decode())
        if kind == SUBMIT_FULL:
            return QueueFull(f"the queue holds {max_queued} jobs")
        raise StoreError(f"unknown submit answer {kind!r}")

    async def get(self, job_id: str) -> Job | None:
        return decode_job(job_id, await self._run("get", [job_id], self._part(job_id)))

    async def claim(self, owner: str, limit: int, lease_ttl: float) -> list[Claimed]:
        await self._check_layout()
        if self.partitions == 1:
            found, next_due = await self._claim_from(self._parts[0], owner, limit, lease_ttl)
            self._next_due = next_due
            return found
        # One partition after another, until the credit is used: a claim that fails
        # halfway leaves leases the dispatcher does not know of, which it finds and
        # releases after any failed claim (leases_of covers every partition).
        found = []
        for k in self._claims.order(trio.current_time()):
            asked = limit - len(found)
            if asked <= 0:
                break
            got, next_due = await self._claim_from(self._parts[k], owner, asked, lease_ttl)
            self._claims.claimed(k, asked, len(got), next_due, trio.current_time())
            found += got
        self._next_due = self._claims.next_due()
        return found

    async def _claim_from(self, part: _Part, owner: str, limit: int,
                          lease_ttl: float) -> tuple[list[Claimed], float | None]:
        claimed, next_due_ms = await self._run("claim", [owner, limit, int(lease_ttl * 1000)],
                                               part)
        found: list[Claimed] = []
        for raw_id, record, data, error, *progress in claimed:
            job_id = raw_id.decode()
            job = decode_job(job_id, (record, data, None, error, None, *progress))
            assert job is not None
            found.append(Claimed(job, Lease(job_id, job.token, owner)))
        in_ms = int(next_due_ms)
        return found, None if in_ms < 0 else trio.current_time() + in_ms / 1000

    async def wait_for_work(self, timeout: float,
                            idle: IdleOffer | None = None) -> list[Claimed]:
        if self._next_due is not None:
            timeout = min(timeout, self._next_due - trio.current_time())
        if timeout < 0.001:  # BLPOP reads 0 as "forever"
            await trio.lowlevel.checkpoint()
            return []
        if self.partitions > 1:
            # No push dispatch: a submit sees one partition, and an idle instance's offer
            # would have to be split over all of them. Claims take the jobs instead.
            await self._wait_for_wake(timeout)
            return []
        if idle is None or idle.free <= 0:
            await self.control.blocking("BLPOP", self.keys.wake, timeout=timeout)
            return []
        # Push dispatch: register as idle and block on our inbox (and the wake list), in
        # one write; a submit then leases a job to us and its pop hands it over, so the
        # job runs with no claim round trip. The registration lasts as long as this pop.
        box = self.keys.inbox(idle.owner)
        register = ("EVAL", _REGISTER, 3, self.keys.idle, box, self.keys.leases, idle.owner,
                    idle.free, int(idle.lease_ttl * 1000), max(1, int(timeout * 1000)))
        try:
            _, popped = await self.control.blocking_after([register], "BLPOP", box,
                                                          self.keys.wake, timeout=timeout)
        except BaseException:
            # Cancelled or cut off: hand back what waits in the inbox. (A job the server
            # popped for us just before the cut is lost with the reply; it stays pushed
            # and unstarted, and comes back uncharged: see lua/recover.lua.)
            await self._unidle(idle.owner)
            raise
        if popped is None or popped[0] != box.encode():
            return []
        job_id, job = decode_pushed(popped[1])
        self.pushed += 1
        return [Claimed(job, Lease(job_id, job.token, idle.owner))]

    async def _wait_for_wake(self, timeout: float) -> None:
        """Block on every partition's wake-up list; the one that fires is claimed from
        first. On one server that is one BLPOP of them all; on a cluster, where they live
        on several nodes (and BLPOP may not cross slots), one BLPOP each, the first to
        return ending the others.

        Ending a BLPOP closes its connection, and a token the server had popped for it by
        then is lost with the reply: so once one fires, the partitions whose BLPOPs were
        ended count as woken too (a claim looks there), not only the one that fired. A
        lost token otherwise left its partition's work unseen here until the idle
        backstop came round to it (P idle waits; a fleet test at P=6 saw it)."""
        woken: set[int] = set()
        if self._waits is None:
            popped = await self.control.blocking(
                "BLPOP", *(part.keys.wake for part in self._parts), timeout=timeout)
            if popped is not None:
                woken |= {part.index for part in self._parts
                          if part.keys.wake.encode() == popped[0]}
        else:
            waits = self._waits
            assert waits is not None
            ended: set[int] = set()  # BLPOPs that returned, popped or timed out

            async with trio.open_nursery() as nursery:
                async def pop(part: _Part) -> None:
                    popped = await waits.blocking("BLPOP", part.keys.wake, timeout=timeout)
                    ended.add(part.index)
                    if popped is not None:
                        woken.add(part.index)
                        nursery.cancel_scope.cancel()

                for part in self._parts:
                    nursery.start_soon(pop, part)
            if woken:
                woken |= {part.index for part in self._parts} - ended
        self._claims.waited(woken, trio.current_time())

    async def _unidle(self, owner: str) -> None:
        with trio.CancelScope(shield=True,
                              deadline=trio.current_time() + self.control.settings.read_timeout):
            try:
                await self._run("unidle", [owner])
            except Exception as exc:  # the registration lapses and recovery takes the rest
                log.debug("ending the idle registration of %s failed: %s", owner, exc)

    async def heartbeat(
        self, owner: str, leases: Sequence[Lease], lease_ttl: float,
        progress: Mapping[str, bytes] | None = None,
    ) -> HeartbeatReply:
        reports = progress or {}
        calls = []
        for part, some in self._by_partition(leases, lambda lease: lease.job_id):
            args: list[str | bytes | int | float] = [owner, int(lease_ttl * 1000), len(some)]
            for lease in some:
                args += [lease.job_id, lease.token, reports.get(lease.job_id, b"")]
            calls.append((part, args))
        lost: set[str] = set()
        cancel: set[str] = set()
        for gone, asked in await self._run_each("heartbeat", calls):
            lost.update(i.decode() for i in gone)
            cancel.update(i.decode() for i in asked)
        return HeartbeatReply(lost=frozenset(lost), cancel_requested=frozenset(cancel))

    def _by_partition(self, items: Sequence[_T], job_id: Callable[[_T], str],
                      ) -> list[tuple[_Part, list[_T]]]:
        """``items`` grouped by their job's partition, in order within each; at least one
        group (partition 0's, maybe empty) so that a script still runs for none."""
        if self.partitions == 1:
            return [(self._parts[0], list(items))]
        groups: dict[int, list[_T]] = {}
        for item in items:
            groups.setdefault(partition_of(job_id(item), self.partitions), []).append(item)
        return [(self._parts[k], some) for k, some in groups.items()] or [(self._parts[0], [])]

    async def leases_of(self, owner: str) -> list[Lease]:
        found = []
        for flat in await self._run_each("owned", [(part, [owner]) for part in self._parts]):
            found += [Lease(flat[i].decode(), int(flat[i + 1]), owner)
                      for i in range(0, len(flat), 2)]
        return found

    async def _largest_value(self) -> int:
        """The server's ``proto-max-bulk-len``: Redis drops the connection of a request with
        a larger value, which would look like an outage. Read once; where ``CONFIG`` is not
        allowed (managed Redis), Redis' default."""
        if self._bulk_limit is None:
            try:
                reply = await self.control.execute("CONFIG", "GET", "proto-max-bulk-len")
                self._bulk_limit = int(reply[1])
            except StoreUnavailable:
                raise
            except (StoreError, IndexError, ValueError):
                self._bulk_limit = _DEFAULT_BULK_LIMIT
        return self._bulk_limit

    async def finish(self, outcomes: Sequence[Outcome]) -> list[bool]:
        limit = await self._largest_value()
        for o in outcomes:
            if isinstance(o, Complete) and len(o.result) > limit:
                raise StoreError(f"job {o.lease.job_id}: its result ({len(o.result)} bytes) "
                                 f"is over the server's proto-max-bulk-len ({limit})")
        retry_soonest: float | None = None
        calls = []
        groups = self._by_partition(outcomes, lambda o: o.lease.job_id)
        for part, some in groups:
            args: list[str | bytes | int | float] = [self._retention_ms, part.done, len(some)]
            for o in some:
                args += self._outcome_args(o)
                if isinstance(o, Fail) and o.retry_delay is not None:
                    retry_soonest = (o.retry_delay if retry_soonest is None
                                     else min(retry_soonest, o.retry_delay))
            calls.append((part, args))
        shortfall: ReplicationTimeout | None = None
        try:
            flags = await self._run_each("finish", calls, wait=self._wait)
        except ReplicationTimeout as exc:
            flags, shortfall = exc.reply, exc
            self._shortfalls += 1
        by_outcome = {id(o): bool(a) for (_, some), replies in zip(groups, flags, strict=True)
                      for o, a in zip(some, replies, strict=True)}
        applied = [by_outcome[id(o)] for o in outcomes]
        self._fenced += applied.count(False)
        if retry_soonest is not None:
            due = trio.current_time() + retry_soonest
            self._next_due = due if self._next_due is None else min(self._next_due, due)
            if self.partitions > 1:
                for part, _ in groups:  # a retry of ours may fall due there then
                    self._claims.due(part.index, due)
        if shortfall is not None:  # applied on the primary all the same: say which
            raise ReplicationTimeout(str(shortfall), acknowledged=shortfall.acknowledged,
                                     reply=applied) from shortfall
        return applied

    @staticmethod
    def _outcome_args(o: Outcome) -> list[str | bytes | int | float]:
        lease = o.lease
        head: list[str | bytes | int | float] = [lease.job_id, lease.token, lease.owner]
        report = o.progress or b""
        if isinstance(o, Complete):
            return [FINISH_COMPLETE, *head, o.result, 0, "", report]
        if isinstance(o, Fail):
            body = orjson.dumps(o.error)
            fields = _history_fields(o.error)
            if o.retry_delay is None:
                return [FINISH_FAIL, *head, body, 0, fields, report]
            return [FINISH_RETRY, *head, body, round(o.retry_delay * 1000), fields, report]
        if isinstance(o, Release):
            kind = FINISH_RELEASE if o.ran else FINISH_RELEASE_UNRUN
            return [kind, *head, "", 0, "", report]
        assert isinstance(o, AckCancel)
        return [FINISH_ACK_CANCEL, *head, "", 0, "", report]

    async def cancel(self, job_id: str) -> Job | None:
        part = self._part(job_id)
        snapshot = await self._run("cancel", [job_id, self._retention_ms, part.cancel,
                                              part.done], part)
        return None if snapshot is None else decode_job(job_id, snapshot)

    # ---- the admin API (AdminStore; the queries are in _redis_admin.py) -------------------

    async def list_jobs(self, query: JobQuery) -> JobPage:
        return admin.merge_pages([await admin.list_partition(self._runner(part), query)
                                  for part in self._parts], query.limit)

    def _runner(self, part: _Part) -> admin.Run:
        async def run(name: str, args: Sequence[str | bytes | int | float]) -> Any:
            return await self._run(name, args, part)
        return run

    async def inspect(self, job_id: str) -> Inspected | None:
        return await admin.inspect(self._runner(self._part(job_id)), job_id)

    async def retry(self, job_id: str, *, by: str | None = None) -> Retried:
        applied, *snapshot = await self._run("retry", [job_id, orjson.dumps(by)],
                                             self._part(job_id))
        job = decode_job(job_id, snapshot) if snapshot else None
        return Retried(job, bool(applied) and job is not None)

    async def cancel_audited(self, job_id: str, *, by: str | None = None) -> Job | None:
        part = self._part(job_id)
        snapshot = await self._run("cancel", [job_id, self._retention_ms, part.cancel,
                                              part.done, orjson.dumps(by)], part)
        return None if snapshot is None else decode_job(job_id, snapshot)

    async def stats(self) -> QueueStats:
        parts = [(await admin.stats_partition(self._runner(part)))[1] for part in self._parts]
        return parts[0] if len(parts) == 1 else admin.merge_stats(parts)

    async def announce(self, info: InstanceInfo, ttl: float) -> None:
        await admin.announce(self.client, self.keys, info, ttl)

    async def instances(self) -> list[Instance]:
        return await admin.instances(self.client, self.keys)

    async def wait_for_terminal(self, job_id: str, timeout: float) -> Job | None:
        if timeout <= 0:
            return await self.get(job_id)
        waiters = self._waiters.setdefault(job_id, set())
        waiter = _Waiter()
        waiters.add(waiter)
        try:
            # Registered before the read, so an end between the two still wakes us.
            snapshot = await self._run("watch", [job_id, int((timeout + 5) * 1000)],
                                       self._part(job_id))
            job = decode_job(job_id, snapshot)
            deadline = trio.current_time() + timeout
            while job is not None and not job.is_terminal:
                remaining = deadline - trio.current_time()
                if remaining <= 0:
                    # An end whose event we missed (say, the link was cut) shows here.
                    return await self.get(job_id)
                wait = remaining if self._subscribed else min(remaining, _POLL_WITHOUT_EVENTS)
                with trio.move_on_after(wait):
                    await waiter.event.wait()
                if waiter.ended is not None:
                    # The end came with the job's new state: no read needed. (The data
                    # part never changes, so the watch reply's copy is current.)
                    record, error, result, history, progress = waiter.ended
                    return decode_job(job_id, (record, snapshot[1], result, error, history,
                                               progress))
                if waiter.event.is_set() or not self._subscribed:
                    waiters.discard(waiter)
                    waiter = _Waiter()
                    waiters.add(waiter)
                    job = await self.get(job_id)
            return job
        finally:
            waiters.discard(waiter)
            if not waiters:
                self._waiters.pop(job_id, None)

    @asynccontextmanager
    async def watch(self, job_id: str) -> AsyncIterator[JobWatch]:
        watch = self.feeds.open(job_id)
        try:
            # Registered (WATCH) before the read, so no change can slip between the two.
            snapshot = await self._run("watch", [job_id, int(_STREAM_REGISTRATION * 1000)],
                                       self._part(job_id))
            watch.current = decode_job(job_id, snapshot)
            if watch.current is not None:
                watch.offer(watch.current)
            yield watch
        finally:
            self.feeds.close(watch)

    async def watch_events(self, on_cancel: Callable[[str], None]) -> None:
        """Deliver cancel requests, job ends and (to event streams) job changes as they
        happen: one pub/sub subscription for the instance, resubscribing after a cut link.
        Runs until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._feed_watches)
            await self._subscribe(on_cancel)

    async def _subscribe(self, on_cancel: Callable[[str], None]) -> None:
        failures = 0
        channels = self._channels
        while True:
            try:
                async with self.client.subscribe(
                        *channels, sharded=self.client.clustered) as subscription:
                    self._subscribed = True
                    if failures:
                        log.info("event subscription restored")
                    failures = 0
                    self._wake_all_waiters()  # ends may have passed while we were away
                    self._mark_stale(self.feeds.job_ids())
                    async for channel, data in subscription:
                        self._events_seen += 1
                        kind = channels.get(channel)
                        if kind == "cancel":
                            on_cancel(data.decode())
                        elif kind == "changes":
                            self._mark_stale((data.decode(),))
                        else:
                            self._job_ended(data)
            except StoreUnavailable as exc:
                failures += 1
                log.log(logging.WARNING if failures == 1 else logging.DEBUG,
                        "event subscription lost (%s); resubscribing", exc)
            finally:
                self._subscribed = False
            await trio.sleep(backoff_delay(failures, 5.0))

    def _mark_stale(self, job_ids: Any) -> None:
        for job_id in job_ids:
            if self.feeds.watched(job_id):
                self._stale.add(job_id)
        if self._stale:
            self._stale_event.set()

    async def _feed_watches(self) -> None:
        """The fan-out: reads each job whose change was announced once, however many
        streams here follow it and however many changes came meanwhile, and hands the
        state to its watches. Also renews the streams' registrations, which reads only
        versions: a job is read in full again only if it changed unseen (a lost message)."""
        failures = 0
        refreshed = trio.current_time()
        while True:
            interval = _STREAM_REFRESH if self._subscribed else _POLL_WITHOUT_EVENTS
            if not self._stale:
                self._stale_event = trio.Event()
                with trio.move_on_at(refreshed + interval):
                    await self._stale_event.wait()
            batch: list[str] = []
            try:
                if trio.current_time() >= refreshed + interval:
                    refreshed = trio.current_time()
                    await self._renew_watches(list(self.feeds.job_ids()))
                batch = [self._stale.pop() for _ in range(min(len(self._stale), _FEED_READS))]
                if batch:
                    await self._read_for_watches(batch)
                failures = 0
            except StoreError as exc:
                # Not only StoreUnavailable: a refused script (OOM) must not take the
                # instance's one subscription down with it; the jobs are read again.
                self._stale.update(batch)
                failures += 1
                log.log(logging.WARNING if failures == 1 else logging.DEBUG,
                        "reading jobs for event streams failed (%s); retrying", exc)
                await trio.sleep(backoff_delay(failures, 5.0))

    async def _renew_watches(self, job_ids: list[str]) -> None:
        ttl = str(int(_STREAM_REGISTRATION * 1000))
        chunks = [(part, some[start:start + _RENEWALS])
                  for part, some in self._by_partition(job_ids, str)
                  for start in range(0, len(some), _RENEWALS)]
        for part, chunk in chunks:
            versions = await self._run("renew_watch", [ttl, *chunk], part)
            self._watch_renewals += len(chunk)
            for job_id, version in zip(chunk, versions, strict=True):
                if version < 0:
                    self.feeds.end_job(job_id)  # gone (retention, eviction): nothing to follow
                elif version > self.feeds.known_version(job_id):
                    self._stale.add(job_id)

    async def _read_for_watches(self, job_ids: list[str]) -> None:
        ttl = str(int(_STREAM_REGISTRATION * 1000))
        replies = await self.client.evalsha_many(
            [(self._scripts["watch"], self._part(job_id).key_list, [job_id, ttl])
             for job_id in job_ids])
        self._feed_reads += len(job_ids)
        for job_id, reply in zip(job_ids, replies, strict=True):
            if isinstance(reply, Exception):
                log.warning("job %s: reading it for its event streams failed: %s", job_id,
                            reply, extra={"job_id": job_id})
                continue  # the next renewal sees its version, and reads it then
            try:
                job = decode_job(job_id, reply)
            except ValueError as exc:
                log.error("job %s: its record cannot be read (%s); its event streams end",
                          job_id, exc, extra={"job_id": job_id})
                job = None
            if job is None:
                self.feeds.end_job(job_id)
            else:
                self.feeds.publish(job)

    def _job_ended(self, message: bytes) -> None:
        """Framed (``frame`` in lua/_lib.lua): the id alone, or from finish the id, record,
        error, result, history and progress, so the long-poll answers without a read."""
        parts = decode_frames(message)
        ended: tuple[bytes, bytes | None, bytes | None, bytes | None, bytes | None] | None = None
        if len(parts) == 6:
            _, record, error, result, history, progress = parts
            if record:
                ended = (record, error or None, result or None, history or None,
                         progress or None)
        assert parts[0] is not None
        self._mark_stale((parts[0].decode(),))
        for waiter in self._waiters.get(parts[0].decode(), ()):
            waiter.ended = ended
            waiter.event.set()

    def _wake_all_waiters(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.event.set()

    async def recover(self, *, limit: int) -> RecoveryReport:
        """Partitions are swept one after another, from one further on each time, while
        every kind of work (reclaims, promotions, purges) is under ``limit`` in all."""
        total = [0, 0, 0, 0]
        dues: list[int] = []
        start, self._sweep_from = self._sweep_from, (self._sweep_from + 1) % self.partitions
        for i in range(self.partitions):
            left = limit - max(total)
            if left <= 0:
                break
            part = self._parts[(start + i) % self.partitions]
            *counts, next_in_ms = await self._run("recover", [
                left, self._retention_ms, part.done, _RECLAIM_ERROR, _EXPIRED_ERROR,
                _RECLAIM_MESSAGE], part)
            total = [a + int(b) for a, b in zip(total, counts, strict=True)]
            if int(counts[0]) or int(counts[2]):  # jobs reclaimed or promoted: queued there
                self._claims.woken(part.index)
            if int(next_in_ms) >= 0:
                dues.append(int(next_in_ms))
        reclaimed, failed, promoted, purged = total
        return RecoveryReport(reclaimed=reclaimed, expired_failed=failed, promoted=promoted,
                              purged=purged, next_in=min(dues) / 1000 if dues else None)

    async def counts(self) -> Mapping[str, int]:
        replies = await self.client.pipeline([
            ("ZCARD", key) for part in self._parts
            for key in (part.keys.ready, part.keys.scheduled, part.keys.leases)])
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return {status: sum(int(n) for n in replies[i::3])
                for i, status in enumerate(("Queued", "Scheduled", "InProgress"))}

    async def _check_layout(self) -> None:
        """A fleet's instances must agree on the partitions: a job's partition follows
        from the count. A queue records its count (when more than one); an instance of
        another count is refused while the queue holds any job in the layout it has, and
        may take an empty queue over. (To change the count of a live queue, start the new
        fleet on a new queue name and let the old fleet drain the old one.)"""
        if self._layout_checked:
            return
        key = layout_key(self.queue)
        recorded = await self.client.execute("GET", key)
        had = 1 if recorded is None else int(recorded)
        if had != self.partitions:
            old = [_Part.of(tag, k) for k, tag in enumerate(tags(self.queue, had))]
            sizes = await self.client.pipeline([("HLEN", part.keys.rec) for part in old])
            for reply in sizes:
                if isinstance(reply, Exception):
                    raise reply
            if any(int(n) for n in sizes):
                raise ConfigurationError(
                    f"queue {self.queue!r} is spread over {had} partition(s) and holds "
                    f"{sum(int(n) for n in sizes)} job(s); this instance was started with "
                    f"partitions={self.partitions}. Every instance of a queue must use the "
                    "same count: to change it, start the new fleet on a new queue name and "
                    "let the old one drain (see docs/pages/redis-internals.md, Partitions)")
            log.info("queue %r: taking the empty queue over from %d partition(s) to %d",
                     self.queue, had, self.partitions)
        if self.partitions == 1:
            if recorded is not None:
                await self.client.execute("DEL", key)
        elif recorded is None or had != self.partitions:
            await self.client.execute("SET", key, self.partitions)
        self._layout_checked = True

    async def ping(self) -> None:
        """Also checks, once, that this instance's partition count fits the queue's: the
        CLI pings before it starts anything, so a wrong count stops it there."""
        await self.control.execute("PING")
        await self._check_layout()

    def describe(self) -> str:
        # A client that routes has no one address of its own: it may describe itself.
        describe = getattr(self.client, "describe", None)
        where = describe() if callable(describe) else self.client.settings.address
        return f"the Redis store at {where} (queue {self.queue!r})"

    async def aclose(self) -> None:
        if self._waits is not None:
            await self._waits.aclose()
        if self._owns_control:
            await self.control.aclose()
        if self._owns_client:
            await self.client.aclose()
        await trio.lowlevel.checkpoint()

    def statistics(self) -> Mapping[str, Any]:
        return {
            "queue": self.queue,
            "partitions": self.partitions,
            "fenced_writes": self._fenced,
            "replication_shortfalls": self._shortfalls,
            "pushed_jobs": self.pushed,
            "subscribed": self._subscribed,
            "events_seen": self._events_seen,
            "long_polls": sum(len(waiters) for waiters in self._waiters.values()),
            "event_streams": len(self.feeds),
            "event_stream_reads": self._feed_reads,
            "event_stream_renewals": self._watch_renewals,
            "client": dataclasses.asdict(self.client.statistics()),
            "control": dataclasses.asdict(self.control.statistics()),
        }
