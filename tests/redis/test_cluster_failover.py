"""Failover under load (issue 11): ``kill -9`` the primary serving the queue while two
instances take submits over HTTP and run jobs.

Two in-process apps (Hypercorn on loopback ports, workers on) share one queue on a private
Redis Cluster, each through a ``ClusterClient`` of its own. A client streams submits to
both, each with an ``Idempotency-Key``, and sends a ``503`` again with the same key. Mid
stream the primary serving the queue's slot is killed; its replica is promoted (the
fixture's ``cluster-node-timeout`` is 1 s); the instances find the new primary by
themselves; the killed node comes back as the new primary's replica (``WAIT 1`` needs one).

What must hold for every job that got a ``202``:

- it ends ``Completed``, readable, its result written by the run that completed;
- its handler ran to completion exactly once: a run may be cut by the failover (its lease
  lost, the handler cancelled) and the job run again, but every run before the last was cut,
  and the last one completed;
- no key made two jobs (a replay answers with the first job), the queue holds exactly one job
  per key, and nothing is left queued or running.

Without ``replicas_ack`` Redis replicates asynchronously: a ``202`` may be sent for a job
the replica never got, and the promoted replica has never heard of it. That variant may
fail (``xfail``, not strict): it is what ``replicas_ack`` fixes. On loopback the replica is
rarely more than a moment behind, so it mostly passes; the second test takes the timing out:
the replica is stopped and its link dropped before the kill, and every submit and finish
the store acknowledged meanwhile is gone (strict ``xfail`` without ``replicas_ack``).
"""

from __future__ import annotations

import inspect
import itertools
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import trio
from quart_trio import QuartTrio

from asyncendpoints_trio import (
    AsyncContext,
    AsyncEndpoints,
    EndpointsConfig,
    Job,
    JobStatus,
    NewJob,
    StoreError,
)
from asyncendpoints_trio.redis import ClusterClient, ReplicaWait, Script
from asyncendpoints_trio.stores._admin import JobQuery
from asyncendpoints_trio.stores._partitions import partition_of
from asyncendpoints_trio.stores._protocol import Complete, Submitted
from asyncendpoints_trio.stores._redis import RedisStore
from tests._redis_cluster import RedisCluster, command, wait_for

from .._runtime_kit import new
from ..conftest import serving
from .test_cluster_client import fast_cluster

pytestmark = pytest.mark.slow

# What the store is made with in the variant that must lose nothing (issue 11: a 202 only
# once a replica has the job, a queue over six slots). Until ``RedisStore`` takes these
# keywords, that variant is skipped; the other runs with none.
STORE_OPTIONS: dict[str, Any] = {"partitions": 6, "replicas_ack": 1, "replicas_timeout": 1.0}
UNACKED_OPTIONS: dict[str, Any] = {"partitions": 6}

JOBS = (40, 40, 40)  # submitted before the kill, during the gap, after the promotion
WORK = 0.2  # seconds per run
LEASE_TTL = 4.0  # longer than the failover (2-3 s here): most running jobs keep their lease
HEARTBEAT = 0.5


def make_store(url: str, queue: str, options: dict[str, Any]) -> RedisStore:
    """The one place a store is made: the instances' and the test's own."""
    return RedisStore(fast_cluster(url), queue=queue, owns_client=True, **options)


def describe(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items()) or "no replicas_ack"


def _unsupported(options: dict[str, Any]) -> list[str]:
    accepted = inspect.signature(RedisStore).parameters
    return [name for name in options if name not in accepted]


def _variants() -> Iterator[Any]:
    missing = _unsupported(STORE_OPTIONS)
    yield pytest.param(STORE_OPTIONS, id="replicas_ack", marks=pytest.mark.skipif(
        bool(missing), reason=f"RedisStore does not take {', '.join(missing)} yet"))
    yield pytest.param(UNACKED_OPTIONS, id="async_replication", marks=pytest.mark.xfail(
        strict=False, reason="without replicas_ack a 202 may go out before the replica has "
        "the job: the promoted replica never heard of it (what replicas_ack fixes)"))


# -- the fleet --------------------------------------------------------------------------------

@dataclass
class Runs:
    """Every run of every job, in order: "running", then "completed" or "cut"."""

    by_job: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    started: trio.Event = field(default_factory=trio.Event)  # a first run began

    def running(self) -> int:
        return sum(runs[-1] == "running" for runs in self.by_job.values())

    def outline(self, job_id: str) -> list[str]:
        return self.by_job.get(job_id, [])


def make_app(name: str, url: str, queue: str, runs: Runs, options: dict[str, Any]
             ) -> tuple[QuartTrio, AsyncEndpoints, RedisStore]:
    app = QuartTrio(f"{__name__}.{name}")
    store = make_store(url, queue, options)
    config = EndpointsConfig(queue=queue, concurrency=4, prefetch=2, lease_ttl=LEASE_TTL,
                             heartbeat_interval=HEARTBEAT, recovery_interval=0.5,
                             restart_backoff_max=0.5, shutdown_grace=1, instance_id=name)
    endpoints = AsyncEndpoints(app, store=store, config=config)

    @endpoints.handler("Work")
    async def work(ctx: AsyncContext[float]) -> dict[str, Any]:
        mine = runs.by_job[ctx.job_id]
        run = len(mine)
        mine.append("running")
        runs.started.set()
        try:
            await trio.sleep(ctx.request)  # the job's work: its duration is the point
        except BaseException:
            mine[run] = "cut"
            raise
        mine[run] = "completed"
        return {"run": run, "instance": name}

    endpoints.map_async_post("Work", "/work")
    endpoints.map_job_details()
    return app, endpoints, store


@asynccontextmanager
async def two_instances(url: str, queue: str, runs: Runs, options: dict[str, Any]
                        ) -> AsyncIterator[list[tuple[httpx.AsyncClient, RedisStore]]]:
    async with AsyncExitStack() as stack:
        found = []
        for name in ("a", "b"):
            app, _, store = make_app(name, url, queue, runs, options)
            stack.push_async_callback(store.aclose)  # passed in: the app does not close it
            base = await stack.enter_async_context(serving(app, graceful_timeout=2))
            http = await stack.enter_async_context(httpx.AsyncClient(base_url=base,
                                                                     timeout=15))
            found.append((http, store))
        yield found


@dataclass
class Submits:
    """The test client: one key per job, a ``503`` sent again with the same key."""

    instances: list[httpx.AsyncClient]
    accepted: dict[str, str] = field(default_factory=dict)  # key -> job id
    refused: int = 0  # 503 answers, each sent again
    answers: int = 0
    by_instance: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    changed: trio.Event = field(default_factory=trio.Event)  # set at every answer

    async def submit(self, key: str, number: int, *, deadline: float) -> None:
        for attempt in itertools.count():
            which = (number + attempt) % len(self.instances)  # a retry tries the other
            response = await self.instances[which].post(
                "/work", json=WORK, headers={"Idempotency-Key": key})
            self.answers += 1
            self.changed.set()
            self.changed = trio.Event()
            if response.status_code == 202:
                self.accepted[key] = response.json()["id"]
                self.by_instance[which] += 1
                return
            assert response.status_code == 503, (response.status_code, response.text)
            assert int(response.headers["retry-after"]) >= 1
            self.refused += 1
            assert trio.current_time() < deadline, f"{key} refused until the deadline"
            await trio.sleep(0.05)  # paces the retries (a 503 comes back at once)

    async def stream(self, keys: list[str], first: int, deadline: float,
                     parallel: int = 4) -> None:
        """Submit ``keys``, ``parallel`` at a time."""
        todo = iter(enumerate(keys, first))

        async def one_lane() -> None:
            for number, key in todo:
                await self.submit(key, number, deadline=deadline)

        async with trio.open_nursery() as nursery:
            for _ in range(parallel):
                nursery.start_soon(one_lane)

    async def wait_accepted(self, count: int) -> None:
        while len(self.accepted) < count:
            await self.changed.wait()


# -- the failover -----------------------------------------------------------------------------

def queue_primary(cluster: RedisCluster, queue: str) -> int:
    """The primary holding most of the queue's keys: with one partition, the one serving
    the slot of ``{queue}``; over several partitions, the busiest of theirs."""
    held = {port: len(command(port, "KEYS", f"*{{{queue}*")) for port in cluster.primaries()}
    busiest = max(held, key=lambda port: held[port])
    return busiest if held[busiest] else cluster.owner_of(f"{{{queue}}}")


@dataclass
class Failover:
    victim: int
    replica: int
    killed_at: float = 0.0
    promoted_at: float = 0.0
    promoted: trio.Event = field(default_factory=trio.Event)
    replicated: trio.Event = field(default_factory=trio.Event)

    async def run(self, cluster: RedisCluster) -> None:
        """Kill the primary, wait for its replica's promotion, bring it back as a replica."""
        await trio.to_thread.run_sync(cluster.kill, self.victim)
        self.killed_at = trio.current_time()
        await trio.to_thread.run_sync(cluster.wait_promoted, self.replica)
        self.promoted_at = trio.current_time()
        self.promoted.set()
        await trio.to_thread.run_sync(cluster.restart, self.victim)

        def replica_online() -> bool:
            return "state=online" in command(self.replica, "INFO", "replication").decode()
        await trio.to_thread.run_sync(wait_for, replica_online, "the old primary's resync")
        self.replicated.set()


def _refreshes(store: RedisStore) -> int:
    assert isinstance(store.client, ClusterClient)
    return store.client.statistics().map_refreshes


async def all_jobs(store: RedisStore) -> list[Job]:
    jobs: list[Job] = []
    query = JobQuery(limit=200)
    while True:
        page = await store.list_jobs(query)
        jobs += page.jobs
        if page.next is None:
            return jobs
        query = JobQuery(limit=200, after=page.next)


async def final_state(store: RedisStore, job_id: str, within: float) -> Job | None:
    """The job once terminal; None if the store does not know it (lost)."""
    with trio.fail_after(within):
        while True:
            job = await store.wait_for_terminal(job_id, within)
            if job is None or job.is_terminal:
                return job


def check_runs(job_id: str, runs: list[str], job: Job) -> None:
    """Completed once: every run before the last was cut, the last one completed, and the
    stored result is that run's."""
    assert runs and runs[-1] == "completed" and all(r == "cut" for r in runs[:-1]), \
        (job_id, runs)
    assert job.result is not None
    assert f'"run":{len(runs) - 1}'.encode() in job.result, (job_id, runs, job.result)


@pytest.mark.parametrize("options", list(_variants()))
async def test_acknowledged_jobs_survive_a_primary_killed_under_load(
        private_cluster: RedisCluster, options: dict[str, Any]) -> None:
    cluster = private_cluster
    url = cluster.url
    queue = f"fo-{uuid.uuid4().hex[:8]}"
    runs = Runs()
    keys = [f"{queue}-{i}" for i in range(sum(JOBS))]
    before, during, after = (keys[:JOBS[0]], keys[JOBS[0]:JOBS[0] + JOBS[1]],
                             keys[JOBS[0] + JOBS[1]:])
    async with two_instances(url, queue, runs, options) as instances, \
            AsyncExitStack() as stack:
        observer = make_store(url, queue, options)
        stack.push_async_callback(observer.aclose)
        submits = Submits([http for http, _ in instances])
        deadline = trio.current_time() + 30
        with trio.fail_after(40):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(submits.stream, before + during, 0, deadline)
                # Mid stream, some jobs accepted and some running: kill the queue's primary.
                await submits.wait_accepted(JOBS[0])
                await runs.started.wait()
                running_at_kill = runs.running()
                accepted_at_kill = len(submits.accepted)
                victim = await trio.to_thread.run_sync(queue_primary, cluster, queue)
                failover = Failover(victim, cluster.replica_of(victim))
                nursery.start_soon(failover.run, cluster)
                await failover.promoted.wait()
                refreshes_at_promotion = [_refreshes(store) for _, store in instances]
                # After the promotion (and while the old primary resyncs): more submits.
                nursery.start_soon(submits.stream, after, len(before) + len(during),
                                   deadline)
            await failover.replicated.wait()
            lost: list[str] = []
            jobs: dict[str, Job] = {}
            for key in keys:
                job_id = submits.accepted[key]
                job = await final_state(observer, job_id, 20)
                if job is None:
                    lost.append(job_id)
                else:
                    jobs[job_id] = job
            # A replay of every key answers with its job: no key made a second one.
            for number, key in enumerate(keys):
                http = submits.instances[(number + 1) % 2]
                response = await http.post("/work", json=WORK, headers={"Idempotency-Key": key})
                assert response.status_code in (200, 202), response.text
                assert response.json()["id"] == submits.accepted[key], key
            stored = await all_jobs(observer)
            counts = await observer.counts()
        clients = [store.client for _, store in instances]
        assert all(isinstance(client, ClusterClient) for client in clients)
        stats = [client.statistics() for client in clients]
        owners = [(await client.node_for(f"{{{queue}}}")).settings.port  # type: ignore[attr-defined]
                  for client in clients]
    reruns = sum(len(runs.outline(i)) > 1 for i in jobs)
    gap = failover.promoted_at - failover.killed_at
    print(f"\nfailover under load ({describe(options)}): killed with {accepted_at_kill} "
          f"jobs accepted, {running_at_kill} running; kill -9 to promotion {gap:.2f}s; "
          f"{len(keys)} keys, {submits.refused} answers 503 sent again; "
          f"{len(lost)} of {len(keys)} 202'd jobs lost; {reruns} jobs run again after a "
          "cut run; "
          f"map refreshes per instance {refreshes_at_promotion} at the promotion, "
          f"{[s.map_refreshes for s in stats]} at the end")
    assert running_at_kill > 0  # the kill came mid-run
    assert not lost, f"{len(lost)} jobs answered 202 are unknown after the failover: {lost[:5]}"
    for job_id, job in jobs.items():
        assert job.status is JobStatus.COMPLETED, job
        check_runs(job_id, runs.outline(job_id), job)
    assert set(runs.by_job) == set(jobs), "a handler ran for a job nobody was answered"
    assert sorted(j.id for j in stored) == sorted(jobs), "one job per key, no other"
    assert all(j.status is JobStatus.COMPLETED for j in stored)
    assert counts == {"Queued": 0, "Scheduled": 0, "InProgress": 0}
    # The instances followed the promotion by themselves: the same clients, the new map.
    assert owners == [failover.replica, failover.replica]
    assert all(s.map_refreshes >= 2 for s in stats), stats
    assert submits.by_instance[0] > 0 and submits.by_instance[1] > 0


# -- the motivating failure, made certain ----------------------------------------------------

_MARK = Script("return redis.call('INCR', KEYS[1])")


def _lagging_variants() -> Iterator[Any]:
    missing = _unsupported(STORE_OPTIONS)
    yield pytest.param(STORE_OPTIONS, id="replicas_ack", marks=pytest.mark.skipif(
        bool(missing), reason=f"RedisStore does not take {', '.join(missing)} yet"))
    # Strict: here the loss is certain, so a pass would mean the scenario no longer shows it.
    yield pytest.param(UNACKED_OPTIONS, id="async_replication", marks=pytest.mark.xfail(
        strict=True, reason="without replicas_ack, submits and "
        "finishes answered while the replica lags are gone after the failover (what "
        "replicas_ack fixes)"))


async def _accepted(store: RedisStore, jobs: list[NewJob]) -> dict[str, str]:
    """Idempotency key -> job id, for the jobs the store accepted (a ``202``); the others
    were refused (a ``503``: a store failure, or a ``ReplicationTimeout``). Keyed by key,
    not by the id sent: at P > 1 the store draws a keyed job's id in the key's partition."""
    try:
        answers = await store.submit(jobs)
    except StoreError:
        return {}
    return {job.idempotency_key: a.job.id for job, a in zip(jobs, answers, strict=True)
            if isinstance(a, Submitted) and job.idempotency_key is not None}


async def _finished(store: RedisStore, outcomes: list[Complete]) -> list[str] | None:
    """The job ids whose finish the store acknowledged, or ``None`` where it gave no
    answer to rely on (an error, or replicas that fell short: applied on the primary, not
    acknowledged). An instance sends those again; an answer ``False`` then is final (the
    lease is gone, or the first send had completed the job)."""
    try:
        applied = await store.finish(outcomes)
    except StoreError:
        return None
    return [o.lease.job_id for o, ok in zip(outcomes, applied, strict=True) if ok]


@pytest.mark.parametrize("options", list(_lagging_variants()))
async def test_acknowledged_writes_survive_a_failover_to_a_lagging_replica(
        private_cluster: RedisCluster, options: dict[str, Any]) -> None:
    """The replica is cut off (stopped, its link dropped by the primary), the store takes
    submits and finishes, the primary is killed, the replica resumes and is promoted: what
    the store acknowledged meanwhile must be on the new primary. Refused writes are sent
    again after the failover (a submit with its idempotency key, a finish with its lease).

    Without ``replicas_ack`` every one of them is gone, certainly: this is the loss that
    async replication allows, with the timing taken out of it."""
    cluster = private_cluster
    queue = f"lag-{uuid.uuid4().hex[:8]}"
    store = make_store(cluster.url, queue, options)
    try:
        with trio.fail_after(30):
            early = [new("Work", 0.1, key=f"early-{i}") for i in range(4)]
            assert len(await _accepted(store, early)) == 4
            claimed = await store.claim("worker-1", 2, 30.0)
            assert len(claimed) == 2
            victim = await trio.to_thread.run_sync(queue_primary, cluster, queue)
            replica = cluster.replica_of(victim)
            (mark,) = cluster.keys_on(victim, 1, f"{queue}-mark")
            # Whatever the victim wrote so far has reached its replica (one stream, in order).
            await store.client.evalsha(_MARK, [mark], wait=ReplicaWait(1, 5.0))
            window = [new("Work", 0.1, key=f"window-{i}") for i in range(30)]
            victim_parts = {part.index for part in store._parts
                            if cluster.owner_of(part.keys.rec) == victim}
            on_victim = {key for job in window if (key := job.idempotency_key) is not None
                         and partition_of(key, store.partitions) in victim_parts}
            cluster.server(replica).pause()
            try:
                command(victim, "CLIENT", "KILL", "TYPE", "replica")
                accepted = await _accepted(store, window)
                if options.get("replicas_ack"):
                    # Sent again while the replica still lags: every job is found
                    # stored, and the answers are the first send's (the victim's jobs
                    # still refused, no second job for any key).
                    assert await _accepted(store, window) == accepted
                # One finish per job, as instances that each hold one would send them: a
                # shortfall on the victim refuses a whole call, and the other's must count.
                outcomes = [Complete(c.lease, b'"done"') for c in claimed]
                answers = [await _finished(store, [o]) for o in outcomes]
                await trio.to_thread.run_sync(cluster.kill, victim)
            finally:
                cluster.server(replica).resume()
            await trio.to_thread.run_sync(cluster.wait_promoted, replica)
            await trio.to_thread.run_sync(cluster.restart, victim)  # a replica for WAIT 1
            # The refused ones again, until accepted (the outage is over, bounded by the
            # fail_after above): a submit with the same key, a finish with the same lease.
            refused = [job for job in window if job.idempotency_key not in accepted]
            retried: dict[str, str] = {}
            while refused:
                retried |= await _accepted(store, refused)
                refused = [job for job in refused if job.idempotency_key not in retried]
                await trio.sleep(0.05)  # paces the retries (a refusal comes back at once)
            finished = [job_id for done in answers if done is not None for job_id in done]
            unanswered = [o for o, done in zip(outcomes, answers, strict=True) if done is None]
            while unanswered:
                if await _finished(store, unanswered) is not None:
                    break  # answered: applied, or refused as the first send's (final)
                await trio.sleep(0.05)
            lost = [key for key, job_id in accepted.items() if await store.get(job_id) is None]
            reverted = [job_id for job_id in finished
                        if (job := await store.get(job_id)) is None or
                        job.status is not JobStatus.COMPLETED]
            # Every key of the window made one job, stored, whichever send was answered.
            made = {key: await store.get(job_id) for key, job_id in (accepted | retried).items()}
    finally:
        await store.aclose()
    print(f"\nlagging replica ({describe(options)}): {len(accepted)} of {len(window)} "
          "submits accepted in the window, "
          f"{len(lost)} of them lost; {len(finished)} of {len(outcomes)} finishes "
          "acknowledged, "
          f"{len(reverted)} of them undone")
    assert not lost, f"{len(lost)} accepted submits are unknown after the failover"
    assert not reverted, f"{len(reverted)} applied finishes were undone by the failover"
    assert set(made) == {job.idempotency_key for job in window}
    assert all(job is not None for job in made.values()), "a key's job is gone"
    if options.get("replicas_ack"):
        # Refused: the jobs of the partitions on the victim alone; the other nodes'
        # replicas answered, and a shortfall on one node is that node's jobs' alone.
        assert set(accepted) == {job.idempotency_key for job in window} - on_victim
