"""``replicas_ack``: a 202 and an outcome wait (``WAIT``) for a replica, on real servers.

A private primary and one replica of it (``--replicaof``), on loopback ports. The replica is
paused with SIGSTOP to make ``WAIT`` fall short: its link stays open, so the primary keeps
counting it as connected, and only its acknowledgements stop. Jobs are read back from the
replica itself, to see what would survive a failover to it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
from quart_trio import QuartTrio

from asyncendpoints_trio import AsyncContext, AsyncEndpoints, EndpointsConfig, JobStatus
from asyncendpoints_trio._errors import ReplicationTimeout
from asyncendpoints_trio._job import Job
from asyncendpoints_trio.redis import RedisClient
from asyncendpoints_trio.stores._partitions import id_in, partition_of, tags
from asyncendpoints_trio.stores._protocol import Claimed, Complete, Lease, NewJob, Submitted
from asyncendpoints_trio.stores._redis import RedisStore
from asyncendpoints_trio.stores._redis_layout import SUBMIT_NEW, SUBMIT_SAME, RedisKeys, decode_job
from tests._processes import cli_process
from tests._redis_replica import PrimaryWithReplica as Pair
from tests._redis_server import RedisServer

from ..conftest import serving

TIMEOUT = 0.5  # replicas_timeout: how long a submit may wait for the paused replica
BOUND = TIMEOUT + 10  # every wait of a test: well past the timeout, never a pass condition


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with Pair() as servers:
        yield servers


@pytest.fixture
def replica(pair: Pair) -> Iterator[RedisServer]:
    """The replica, resumed after the test whatever the test did to it."""
    try:
        yield pair.replica
    finally:
        pair.replica.resume()


def queue_keys(queue: str, partitions: int = 1) -> list[RedisKeys]:
    return [RedisKeys.of(tag) for tag in tags(queue, partitions)]


async def read_from(url: str, queue: str, job_id: str, partitions: int = 1) -> Job | None:
    """The job as the server at ``url`` holds it (plain reads: a replica runs no writes)."""
    keys = queue_keys(queue, partitions)[partition_of(job_id, partitions)]
    async with RedisClient.from_url(url) as redis:
        snapshot = await redis.pipeline([("HGET", key, job_id) for key in (
            keys.rec, keys.data, keys.out, keys.err, keys.hist, keys.prog)])
    return decode_job(job_id, snapshot)


async def caught_up(pair: Pair) -> None:
    """Once this returns, the replica holds every write the primary took before it."""
    async with RedisClient.from_url(pair.primary.url) as redis:
        _, acks = await redis.pipeline([("INCR", "replicas-test:sync"), ("WAIT", 1, 0)])
    assert acks == 1


class Gate:
    def __init__(self) -> None:
        self.started = trio.Event()
        self.release = trio.Event()
        self.runs = 0


def make_app(pair: Pair, gate: Gate, **options: Any) -> tuple[QuartTrio, AsyncEndpoints]:
    app = QuartTrio(__name__)
    config = EndpointsConfig(redis_url=pair.primary.url, queue=f"rp-{uuid.uuid4().hex[:8]}",
                             replicas_timeout=TIMEOUT, shutdown_grace=1, lease_ttl=2.0,
                             heartbeat_interval=0.2, **options)
    endpoints = AsyncEndpoints(app, config=config)

    @endpoints.handler("Gated")
    async def gated(ctx: AsyncContext[dict[str, Any]]) -> dict[str, int]:
        gate.runs += 1
        gate.started.set()
        await gate.release.wait()
        return {"runs": gate.runs}

    endpoints.map_async_post("Gated", "/gated")
    endpoints.map_job_details()
    return app, endpoints


@asynccontextmanager
async def client_of(app: QuartTrio) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=BOUND) as client:
        yield client


async def job_count(endpoints: AsyncEndpoints) -> int:
    config = endpoints.config
    async with RedisClient.from_url(config.redis_url or "") as redis:
        return sum([int(await redis.execute("HLEN", keys.rec))
                    for keys in queue_keys(config.queue, config.partitions)])


async def test_the_202_comes_after_the_replica_has_the_job(pair: Pair) -> None:
    app, endpoints = make_app(pair, Gate(), replicas_ack=1, run_workers=False)
    async with client_of(app) as client:
        with trio.fail_after(BOUND):
            answer = await client.post("/gated", json={})
            assert answer.status_code == 202
            job_id = answer.json()["id"]
            # Read from the replica at once: no wait for replication, the 202 was it.
            on_replica = await read_from(pair.replica.url, endpoints.config.queue, job_id)
    assert on_replica is not None and on_replica.status is JobStatus.QUEUED


async def test_without_replicas_ack_a_paused_replica_goes_unnoticed(
        pair: Pair, replica: RedisServer) -> None:
    """The contrast: asynchronous replication answers 202 for a job the replica lacks."""
    app, endpoints = make_app(pair, Gate(), run_workers=False)
    async with client_of(app) as client:
        replica.pause()
        with trio.fail_after(BOUND):
            answer = await client.post("/gated", json={})
        assert answer.status_code == 202
        job_id = answer.json()["id"]
        replica.resume()
        with trio.fail_after(BOUND):
            await caught_up(pair)
    assert await read_from(pair.replica.url, endpoints.config.queue, job_id) is not None


@pytest.mark.parametrize("partitions", [1, 3])
async def test_a_submit_the_replica_did_not_confirm_is_503_then_the_same_job(
        pair: Pair, replica: RedisServer, partitions: int) -> None:
    app, endpoints = make_app(pair, Gate(), replicas_ack=1, run_workers=False,
                              partitions=partitions)
    headers = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    async with client_of(app) as client:
        replica.pause()
        with trio.fail_after(BOUND):
            began = trio.current_time()
            refused = await client.post("/gated", json={"n": 1}, headers=headers)
            took = trio.current_time() - began
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == str(endpoints.config.retry_after)
        assert refused.headers["Content-Type"].startswith("application/problem+json")
        problem = refused.json()
        assert problem["status"] == 503 and problem["code"] == "ReplicationTimeout"
        assert "Idempotency" in problem["detail"] or "idempotency" in problem["detail"]
        assert took >= TIMEOUT * 0.9  # WAIT ran its course (bounded by BOUND above)
        # Written on the primary all the same: one job, under the key.
        assert await job_count(endpoints) == 1

        # A retry while the replica is still away: the job is found, but it is still not
        # on a replica, so still no 202 (its WAIT must cover the first write, not none).
        with trio.fail_after(BOUND):
            again = await client.post("/gated", json={"n": 1}, headers=headers)
        assert again.status_code == 503 and again.json()["code"] == "ReplicationTimeout"

        replica.resume()
        with trio.fail_after(BOUND):
            accepted = await client.post("/gated", json={"n": 1}, headers=headers)
        assert accepted.status_code == 202, accepted.text
        assert accepted.headers.get("Idempotent-Replayed") == "true"
        job_id = accepted.json()["id"]
        assert await job_count(endpoints) == 1  # the same job, never a second
    on_replica = await read_from(pair.replica.url, endpoints.config.queue, job_id, partitions)
    assert on_replica is not None and on_replica.id == job_id
    stats = endpoints.store.statistics()
    assert stats["replication_shortfalls"] == 2


async def test_an_outcome_the_replica_did_not_confirm_stands(
        pair: Pair, replica: RedisServer) -> None:
    gate = Gate()
    app, endpoints = make_app(pair, gate, replicas_ack=1)
    async with client_of(app) as client:
        with trio.fail_after(BOUND):
            answer = await client.post("/gated", json={})
            assert answer.status_code == 202
            job_id = answer.json()["id"]
            await gate.started.wait()
        replica.pause()
        gate.release.set()
        with trio.fail_after(BOUND):
            ended = await client.get(f"/jobs/{job_id}", params={"wait": BOUND})
        assert ended.json()["status"] == "Completed"
        runtime = endpoints.runtime
        assert runtime is not None
    # Served no more: the drain let the outcome writer finish its batch, WAIT and all.
    outcomes = runtime.statistics().outcomes
    assert outcomes is not None
    assert (outcomes.written, outcomes.unreplicated, outcomes.fenced) == (1, 1, 0)
    assert outcomes.store_errors == 0  # not retried as an outage
    on_primary = await read_from(pair.primary.url, endpoints.config.queue, job_id)
    assert on_primary is not None and on_primary.status is JobStatus.COMPLETED
    assert on_primary.retry_count == 0 and gate.runs == 1
    replica.resume()
    with trio.fail_after(BOUND):
        await caught_up(pair)
    on_replica = await read_from(pair.replica.url, endpoints.config.queue, job_id)
    assert on_replica is not None and on_replica.status is JobStatus.COMPLETED


@pytest.mark.parametrize("partitions", [1, 3])
async def test_finish_reports_what_it_applied_when_the_wait_falls_short(
        pair: Pair, replica: RedisServer, partitions: int) -> None:
    """The store's side of it: ``ReplicationTimeout`` carries the applied flags in the
    outcomes' order, whatever partitions they were written to, a refused (fenced) outcome
    among them still False."""
    queue = f"rp-{uuid.uuid4().hex[:8]}"
    store = RedisStore.from_url(pair.primary.url, queue=queue, replicas_ack=1,
                                replicas_timeout=TIMEOUT, partitions=partitions)
    try:
        with trio.fail_after(BOUND):
            # Two jobs in each partition (with 3): one finish call per partition.
            await store.submit([NewJob(id=id_in(i % partitions, partitions), name="Gated",
                                       payload=b"{}", max_retries=0) for i in range(6)])
            claimed: list[Claimed] = []
            while len(claimed) < 6:
                claimed += await store.claim("me", 6 - len(claimed), 30.0)
            stale = Lease(claimed[2].lease.job_id, claimed[2].lease.token + 1, "me")
            outcomes = [Complete(c.lease, b"1") for c in claimed]
            outcomes.insert(3, Complete(stale, b"2"))
            replica.pause()
            with pytest.raises(ReplicationTimeout) as caught:
                await store.finish(outcomes)
        # The stale one comes after the right one for its job: refused, the job is done.
        assert caught.value.reply == [True, True, True, False, True, True, True]
        assert caught.value.acknowledged == 0
        for c in claimed:
            job = await store.get(c.lease.job_id)
            assert job is not None and job.status is JobStatus.COMPLETED
        assert store.statistics()["fenced_writes"] == 1
        assert store.statistics()["replication_shortfalls"] == 1
        assert len({partition_of(c.lease.job_id, partitions) for c in claimed}) == partitions
    finally:
        await store.aclose()


async def test_the_cli_options_reach_the_store(pair: Pair, replica: RedisServer) -> None:
    args = ["serve", "tests.apps.cli_app:app", "--bind", "127.0.0.1:0", "--no-workers",
            "--redis-url", pair.primary.url, "--queue", f"rp-{uuid.uuid4().hex[:8]}",
            "--replicas-ack", "1", "--replicas-timeout", str(TIMEOUT)]
    async with cli_process(args) as service, \
            httpx.AsyncClient(base_url=service.url, timeout=BOUND) as client:
        with trio.fail_after(BOUND):
            assert (await client.post("/slow", json=0.0)).status_code == 202
        replica.pause()
        with trio.fail_after(BOUND):
            refused = await client.post("/slow", json=0.0)
        assert refused.status_code == 503 and refused.json()["code"] == "ReplicationTimeout"
        assert "Retry-After" in refused.headers


async def test_on_a_cluster_every_shard_written_to_waits_for_its_replica(
        cluster_url: str) -> None:
    """Partitions on three primaries with a replica each: a submit and a finish that touch
    several shards wait on each of them, and pass."""
    store = RedisStore.from_url(cluster_url, queue=f"rp-{uuid.uuid4().hex[:8]}",
                                replicas_ack=1, replicas_timeout=5.0, partitions=6)
    try:
        with trio.fail_after(BOUND):
            answers = await store.submit([
                NewJob(id=id_in(i, 6), name="Gated", payload=b"{}", max_retries=0,
                       idempotency_key=f"k{i}") for i in range(6)])
            assert all(isinstance(a, Submitted) and a.created for a in answers), answers
            again = await store.submit([  # found, not stored: their WAIT is the sync's
                NewJob(id=id_in(i, 6), name="Gated", payload=b"{}", max_retries=0,
                       idempotency_key=f"k{i}") for i in range(6)])
            assert all(isinstance(a, Submitted) and not a.created for a in again), again
            claimed: list[Claimed] = []
            while len(claimed) < 6:
                claimed += await store.claim("me", 6 - len(claimed), 30.0)
            assert await store.finish([Complete(c.lease, b"1") for c in claimed]) == [True] * 6
        assert store.statistics()["replication_shortfalls"] == 0
    finally:
        await store.aclose()


async def test_a_sync_shortfall_names_the_submit_calls_it_stood_for(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A retry's sync writes run only in the partitions whose submit found every job
    stored (here calls 1 and 3 of 4); a shortfall on the node of the second of them is
    call 3's, not call 1's: the positions among the sync calls are mapped back to the
    submit's, so only that call's jobs lose their 202. (The cluster tests cannot make one
    node fall short during a sync alone: a connection that wrote unreplicated jobs falls
    short in the submit's own WAIT first.) No server: the scripts are not run."""
    store = RedisStore(RedisClient.from_url("redis://127.0.0.1:9/0"), partitions=4,
                       replicas_ack=1, owns_client=True)

    async def sync_falls_short_second(name: str, calls: Any, *, wait: Any = None) -> Any:
        assert name == "sync" and [part.index for part, _ in calls] == [1, 3]
        raise ReplicationTimeout("short", acknowledged=0, reply=[1, 1],
                                 unconfirmed=frozenset({1}))

    monkeypatch.setattr(store, "_run_each", sync_falls_short_second)
    calls = [(part, []) for part in store._parts]
    replies = [[[SUBMIT_NEW]], [[SUBMIT_SAME]], [[SUBMIT_NEW], [SUBMIT_SAME]], [[SUBMIT_SAME]]]
    try:
        with trio.fail_after(BOUND):
            shortfall = await store._sync(calls, replies)
    finally:
        await store.aclose()
    assert shortfall is not None and shortfall.unconfirmed == {3}
