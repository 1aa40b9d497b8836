"""Random operations over every Lua script on a real redis-server, checked after each step.

A seeded driver submits (with repeated and conflicting idempotency keys), claims as two
owners, renews and finishes with current and stale tokens, cancels, and sweeps, while short
leases expire in real time. After every step the whole key space is read back and checked:

- each job sits in exactly the index its status says (Queued: the ready set, Scheduled: the
  retry set, InProgress: the lease set, terminal: the retention set), and nowhere else;
- a job's token never goes down, and each claim adds one;
- every status change is an edge of TRANSITIONS;
- a write with a stale token or another owner's lease is refused, one with the current
  lease is applied;
- every idempotency key points at a job that exists, and the wake list holds at most one;
- the admin index: each job has exactly one member in the name set (its name, status,
  creation time and id), its record keeps its name, the per-status counts are the set's,
  and the set holds no member of a job that is gone; operators retry
  Failed and Canceled jobs and cancel with an audit entry, which the job keeps;
- push dispatch: owners register as idle (for a moment or for long), pop their inboxes
  (or lose a pop, as a cut link does), stop waiting; every inbox entry is a pushed,
  unstarted lease of that owner with the job's current token, in one inbox once; and a
  pushed job that goes back to the queue unstarted is never charged an attempt.

``REDIS_RANDOM_SEED=n`` replays a seed; a failure names its seed and step.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from asyncendpoints_trio import TRANSITIONS, JobStatus, NewJob, Submitted
from asyncendpoints_trio.redis import RedisClient
from asyncendpoints_trio.stores._protocol import (
    AckCancel,
    Complete,
    Fail,
    Lease,
    Release,
)
from asyncendpoints_trio.stores._redis import _REGISTER, RedisStore
from asyncendpoints_trio.stores._redis_layout import decode_pushed

from .conftest import fast_settings

TTL = 0.3
STEPS = 400
OWNERS = ("a", "b")
ERROR = {"code": "HandlerError", "message": "boom", "exception": None}
SEEDS = [int(os.environ["REDIS_RANDOM_SEED"])] if os.environ.get("REDIS_RANDOM_SEED") \
    else [1, 2, 3]


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    client = RedisClient(fast_settings(redis_url))
    store = RedisStore(client, queue=f"rnd-{uuid.uuid4().hex[:8]}", retention=0.5,
                       owns_client=True)
    yield store
    keys = await client.execute("KEYS", f"ae:{{{store.queue}}}:*")
    if keys:
        await client.execute("DEL", *keys)
    await store.aclose()


_INDEX = {JobStatus.QUEUED: "ready", JobStatus.SCHEDULED: "scheduled",
          JobStatus.IN_PROGRESS: "leases"}
_CODE = {"Queued": "Q", "Scheduled": "S", "InProgress": "I", "Completed": "C", "Failed": "F",
         "Canceled": "X"}


async def layout(store: RedisStore) -> dict[str, Any]:
    keys = store.keys
    replies = await store.client.pipeline([
        ("HGETALL", keys.rec), ("ZRANGE", keys.ready, 0, -1), ("ZRANGE", keys.scheduled, 0, -1),
        ("ZRANGE", keys.leases, 0, -1), ("ZRANGE", keys.expiry, 0, -1), ("HGETALL", keys.idem),
        ("LLEN", keys.wake), ("HKEYS", keys.data), ("HGETALL", keys.idle),
        *[("LRANGE", keys.inbox(owner), 0, -1) for owner in OWNERS],
        ("ZRANGE", keys.by_name, 0, -1), ("HGETALL", keys.counts), ("HKEYS", keys.audit)])
    rec, ready, scheduled, leases, expiry, idem, wake, data, idle = replies[:9]
    by_name, counts, audit = replies[9 + len(OWNERS):12 + len(OWNERS)]
    records = {rec[i].decode(): rec[i + 1].decode() for i in range(0, len(rec), 2)}
    inboxes = {owner: [decode_pushed(e) for e in entries]
               for owner, entries in zip(OWNERS, replies[9:9 + len(OWNERS)], strict=True)}
    return {
        "idle": {idle[i].decode(): idle[i + 1].decode() for i in range(0, len(idle), 2)},
        "inboxes": {owner: [(job_id, job.token) for job_id, job in entries]
                    for owner, entries in inboxes.items()},
        "records": records,
        "ready": [x.decode() for x in ready], "scheduled": {x.decode() for x in scheduled},
        "leases": {x.decode() for x in leases}, "expiry": {x.decode() for x in expiry},
        "idem": {idem[i].decode(): idem[i + 1].decode() for i in range(0, len(idem), 2)},
        "wake": wake, "data": {x.decode() for x in data},
        "by_name": [m.decode() for m in by_name],
        "counts": {counts[i].decode(): int(counts[i + 1]) for i in range(0, len(counts), 2)},
        "audit": {x.decode() for x in audit},
    }


class Driver:
    def __init__(self, store: RedisStore, seed: int) -> None:
        self.store = store
        self.rng = random.Random(seed)
        self.seed = seed
        self.step = 0
        self.leases: dict[str, Lease] = {}  # the current lease of each job we believe held
        self.stale: list[Lease] = []
        self.tokens: dict[str, int] = {}
        self.statuses: dict[str, JobStatus] = {}
        self.keys: list[str] = []
        self.submitted: list[str] = []
        self.pushes = 0
        self.op = ""
        self.unstarted: dict[str, int] = {}  # pushed, unstarted jobs -> their retry count
        self.inboxes: dict[str, set[str]] = {owner: set() for owner in OWNERS}
        self.retried = 0

    def fail(self, message: str) -> None:
        raise AssertionError(f"seed {self.seed} step {self.step}: {message}")

    async def run(self) -> None:
        ops = [self.submit] * 4 + [self.claim] * 3 + [self.renew, self.finish, self.finish,
                                                      self.finish, self.stale_write,
                                                      self.cancel, self.recover,
                                                      self.owned, self.wait,
                                                      self.idle, self.idle, self.pop,
                                                      self.lose_pop, self.unidle,
                                                      self.claim_all, self.claim_all,
                                                      self.retry, self.cancel_audited]
        for self.step in range(STEPS):
            op = self.rng.choice(ops)
            self.op = op.__name__
            await op()
            await self.check()

    async def submit(self) -> None:
        batch: list[NewJob] = []
        for _ in range(self.rng.randint(1, 4)):
            key = None
            if self.rng.random() < 0.4:
                if self.keys and self.rng.random() < 0.5:
                    key = self.rng.choice(self.keys)
                else:
                    key = f"k{len(self.keys)}"
                    self.keys.append(key)
            payload = self.rng.choice([b'"x"', b'"y"'])
            batch.append(NewJob(id=str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                                name="W", payload=payload, max_retries=self.rng.randint(0, 2),
                                idempotency_key=key, fingerprint=payload.decode()))
        answers = await self.store.submit(batch, max_queued=self.rng.choice([None, 50]))
        for answer in answers:
            if isinstance(answer, Submitted) and answer.created:
                self.submitted.append(answer.job.id)

    async def claim_all(self) -> None:
        """Empty the line, so that submits that follow may push."""
        await self.claim(50)

    async def claim(self, limit: int = 0) -> None:
        owner = self.rng.choice(OWNERS)
        pushed = self.inboxes[owner]  # leased already: a claim takes them as they are
        for c in await self.store.claim(owner, limit or self.rng.randint(1, 3), TTL):
            before = self.tokens.get(c.job.id, 0)
            if c.lease.token != (before if c.job.id in pushed else before + 1):
                self.fail(f"claim of {c.job.id} gave token {c.lease.token} after {before}")
            old = self.leases.get(c.job.id)
            if old is not None:
                self.stale.append(old)
            self.leases[c.job.id] = c.lease

    def _pick(self) -> Lease | None:
        if not self.leases:
            return None
        return self.leases[self.rng.choice(sorted(self.leases))]

    async def renew(self) -> None:
        chosen = [lease for lease in self.leases.values() if self.rng.random() < 0.5]
        by_owner: dict[str, list[Lease]] = {}
        for lease in chosen:
            by_owner.setdefault(lease.owner, []).append(lease)
        for owner, leases in sorted(by_owner.items()):
            if self.rng.random() < 0.2:  # renewed by an instance that does not hold them
                owner = "a" if owner == "b" else "b"
            before = await layout(self.store)
            reply = await self.store.heartbeat(owner, leases, TTL)
            for lease in leases:
                record = before["records"].get(lease.job_id, "")
                fields = record.split("|")
                current = record.startswith("InProgress|") and \
                    fields[1] == str(lease.token) and fields[9] == owner
                if current == (lease.job_id in reply.lost):
                    self.fail(f"renewal of {lease} answered lost={lease.job_id in reply.lost} "
                              f"for record {record!r}")

    async def finish(self) -> None:
        lease = self._pick()
        if lease is None:
            return
        outcome = self.rng.choice([
            Complete(lease, b'"done"'), Fail(lease, ERROR, None),
            Fail(lease, ERROR, self.rng.choice([0.0, 0.05, 0.2])), Release(lease),
            AckCancel(lease)])
        await self._write(outcome)
        if self.rng.random() < 0.3:  # the same write again: fenced now
            [again] = await self.store.finish([outcome])
            if again:
                self.fail(f"the same outcome for {lease} applied twice")
        self.leases.pop(lease.job_id, None)

    async def stale_write(self) -> None:
        if self.stale:
            lease = self.rng.choice(self.stale)
            await self._write(self.rng.choice([Complete(lease, b'"late"'), Release(lease)]))
        lease = self._pick()
        if lease is not None:  # the right token, another owner: refused too
            other = Lease(lease.job_id, lease.token, "a" if lease.owner == "b" else "b")
            await self._write(Complete(other, b'"impostor"'))

    async def _write(self, outcome: Any) -> None:
        before = await layout(self.store)
        lease = outcome.lease
        record = before["records"].get(lease.job_id, "")
        fields = record.split("|")
        current = (record.startswith("InProgress|") and fields[1] == str(lease.token)
                   and (not lease.owner or fields[9] == lease.owner))
        [applied] = await self.store.finish([outcome])
        if applied != current:
            self.fail(f"{type(outcome).__name__} for {lease} applied={applied}, "
                      f"record {record!r}")

    async def cancel(self) -> None:
        if self.submitted:
            await self.store.cancel(self.rng.choice(self.submitted))

    async def retry(self) -> None:
        if not self.submitted:
            return
        job_id = self.rng.choice(self.submitted)
        before = await self.store.get(job_id)
        retried = await self.store.retry(job_id, by=self.rng.choice([None, "op"]))
        retryable = before is not None and before.status in (JobStatus.FAILED,
                                                             JobStatus.CANCELED)
        if retried.applied != retryable:
            self.fail(f"retry of {job_id} ({before and before.status}) "
                      f"applied={retried.applied}")
        if retried.applied:
            job = retried.job
            assert job is not None
            if job.status is not JobStatus.QUEUED or job.retry_count or \
                    job.audit[-1].action != "retry":
                self.fail(f"retried {job_id} reads {job}")
            self.retried += 1

    async def cancel_audited(self) -> None:
        if self.submitted:
            job = await self.store.cancel_audited(self.rng.choice(self.submitted), by="op")
            if job is not None and job.audit and job.audit[-1].action not in ("cancel",
                                                                              "retry"):
                self.fail(f"audit of {job.id}: {job.audit}")

    async def recover(self) -> None:
        await self.store.recover(limit=self.rng.randint(1, 50))

    async def owned(self) -> None:
        owner = self.rng.choice(OWNERS)
        found = await self.store.leases_of(owner)
        now = await layout(self.store)
        for lease in found:
            fields = now["records"][lease.job_id].split("|")
            if fields[0] != "InProgress" or fields[9] != owner or \
                    fields[1] != str(lease.token):
                self.fail(f"leases_of({owner}) gave {lease}, record {fields}")

    async def idle(self) -> None:
        """What an idle wait registers before its BLPOP (the pops are separate steps)."""
        owner = self.rng.choice(OWNERS)
        wait_ms = self.rng.choice([50, 300, 5000])
        await self.store.client.execute(
            "EVAL", _REGISTER, 3, self.store.keys.idle, self.store.keys.inbox(owner),
            self.store.keys.leases, owner,
            self.rng.randint(1, 3), int(TTL * 1000), wait_ms)

    async def pop(self) -> None:
        owner = self.rng.choice(OWNERS)
        entry = await self.store.client.execute("LPOP", self.store.keys.inbox(owner))
        if entry is None:
            return
        job_id, job = decode_pushed(entry)
        if job.token != self.tokens.get(job_id) or job.owner != owner:
            self.fail(f"{owner} popped {job_id} with token {job.token} owner {job.owner}, "
                      f"last seen token {self.tokens.get(job_id)}")
        earlier = self.leases.get(job_id)
        if earlier is not None:
            self.stale.append(earlier)
        self.leases[job_id] = Lease(job_id, job.token, owner)

    async def lose_pop(self) -> None:
        """The server popped it, the reply never arrived: only recovery brings it back."""
        await self.store.client.execute("LPOP", self.store.keys.inbox(self.rng.choice(OWNERS)))

    async def unidle(self) -> None:
        await self.store._unidle(self.rng.choice(OWNERS))

    async def wait(self) -> None:
        await trio.sleep(self.rng.choice([0.01, 0.1, TTL]))  # time passes: leases expire

    def _promoted_and_claimed(self, old: JobStatus, status: JobStatus) -> bool:
        """A claim promotes due retries before it takes jobs: one call, two edges."""
        return (self.op in ("claim", "claim_all") and old is JobStatus.SCHEDULED
                and status is JobStatus.IN_PROGRESS
                and JobStatus.QUEUED in TRANSITIONS[old]
                and status in TRANSITIONS[JobStatus.QUEUED])

    async def check(self) -> None:
        now = await layout(self.store)
        if now["wake"] > 1:
            self.fail(f"wake list holds {now['wake']}")
        if len(now["ready"]) != len(set(now["ready"])):
            self.fail("a job is in the ready queue twice")
        ready = set(now["ready"])
        for job_id, record in now["records"].items():
            fields = record.split("|")
            status, token = JobStatus(fields[0]), int(fields[1])
            placed = {name for name, members in (("ready", ready),
                      ("scheduled", now["scheduled"]), ("leases", now["leases"]),
                      ("expiry", now["expiry"])) if job_id in members}
            wanted = {_INDEX.get(status, "expiry")}
            if placed != wanted:
                self.fail(f"job {job_id} is {status} but sits in {sorted(placed)}")
            if job_id not in now["data"]:
                self.fail(f"job {job_id} has a record but no data")
            if token < self.tokens.get(job_id, 0):
                self.fail(f"job {job_id}: token went down to {token}")
            old = self.statuses.get(job_id)
            if old is not None and old != status and status not in TRANSITIONS[old] \
                    and not self._promoted_and_claimed(old, status):
                self.fail(f"job {job_id}: {old} -> {status} is not a transition")
            self.tokens[job_id] = token
            self.statuses[job_id] = status
            if status is not JobStatus.IN_PROGRESS:
                lease = self.leases.get(job_id)
                if lease is not None:
                    self.stale.append(self.leases.pop(job_id))
        in_inboxes: set[str] = set()
        for owner, entries in now["inboxes"].items():
            for job_id, token in entries:
                fields = now["records"].get(job_id, "").split("|")
                if fields[0] != "InProgress" or fields[9] != owner or \
                        fields[1] != str(token) or fields[4] != "P":
                    self.fail(f"inbox of {owner} holds {job_id} (token {token}), "
                              f"record {fields}")
                if job_id in in_inboxes:
                    self.fail(f"job {job_id} is in an inbox twice")
                in_inboxes.add(job_id)
            self.inboxes[owner] = {job_id for job_id, _ in entries}
        for owner, registration in now["idle"].items():
            _, free, _ = registration.split("|")
            if int(free) <= 0:
                self.fail(f"{owner} is registered idle for {free} jobs")
        unstarted = {}
        for job_id, record in now["records"].items():
            fields = record.split("|")
            retries = int(fields[2])
            was = self.unstarted.get(job_id)
            if was is not None and fields[0] == "Queued" and retries != was:
                self.fail(f"job {job_id} went back unstarted, charged: {was} -> {retries}")
            if fields[4] == "P":
                unstarted[job_id] = retries
                if was is None:
                    self.pushes += 1
        self.unstarted = unstarted
        for key, value in now["idem"].items():
            if value.split("|", 1)[0] not in now["records"]:
                self.fail(f"idempotency key {key} points at a job that is gone")
        for index in ("scheduled", "leases", "expiry"):
            orphans = now[index] - now["records"].keys()
            if orphans:
                self.fail(f"{index} holds ids without a record: {sorted(orphans)[:3]}")
        self.check_admin_indexes(now)

    def check_admin_indexes(self, now: dict[str, Any]) -> None:
        wanted_names: set[str] = set()
        wanted_counts: dict[str, int] = {}
        for job_id, record in now["records"].items():
            fields = record.split("|", 13)
            status, created = fields[0], fields[5]
            if fields[13].split("\0", 1)[0] != "W":
                self.fail(f"the record of {job_id} keeps no name: {record!r}")
            key = f"{int(created):016d}|{job_id}"
            wanted_names.add(f"W\0{_CODE[status]}\0{key}")
            wanted_counts[status] = wanted_counts.get(status, 0) + 1
        if len(now["by_name"]) != len(set(now["by_name"])) or \
                set(now["by_name"]) != wanted_names:
            self.fail(f"name index: extra {sorted(set(now['by_name']) - wanted_names)[:3]}, "
                      f"missing {sorted(wanted_names - set(now['by_name']))[:3]}")
        counts = {status: n for status, n in now["counts"].items() if n}
        if counts != wanted_counts:
            self.fail(f"counts {counts}, the index holds {wanted_counts}")
        orphans = set(now["audit"]) - now["records"].keys()
        if orphans:
            self.fail(f"audit holds ids without a record: {sorted(orphans)[:3]}")


@pytest.mark.parametrize("seed", SEEDS)
async def test_random_operations_keep_the_layout_whole(store: RedisStore, seed: int) -> None:
    driver = Driver(store, seed)
    with trio.fail_after(120):
        await driver.run()
    assert len(driver.submitted) > 50 and driver.stale  # it did exercise the scripts
    assert driver.pushes > 0  # and push dispatch
    assert driver.retried > 0  # and operators' retries
