"""Several real instances (OS processes) on one real Redis: crash, zombie, restarts.

Each instance is our CLI (``serve`` or ``worker``). The tests that leave Redis running run
twice: on a private redis-server (the default queue, one partition) and on the session's
Redis Cluster (3 primaries, a replica each) with a queue of their own over six partitions
(``--partitions 6`` on every instance). Handlers announce their starts on a Redis channel of
a plain redis-server (the test's own on the cluster: a channel there would need a cluster
client), so the tests wait for events, never sleep.
"""

from __future__ import annotations

import re
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
import trio

from asyncendpoints_trio import JobStatus, NewJob, StoreUnavailable
from asyncendpoints_trio.redis import ClusterClient, RedisClient
from asyncendpoints_trio.stores._partitions import partition_of, tags
from asyncendpoints_trio.stores._redis import RedisStore
from tests._processes import Service, cli_process
from tests._redis_server import RedisServer

pytestmark = pytest.mark.slow

APP = "tests.apps.fleet_app:app"
TTL = 2.0
HEARTBEAT = 0.5
P = 6  # partitions of the cluster variant's queue: two per primary


@dataclass(frozen=True)
class Backend:
    """Where a fleet keeps its queue, and where its handlers announce their starts."""

    url: str  # every instance's --redis-url, and the test's own store's
    events_url: str  # FLEET_EVENTS_URL: always a plain redis-server
    queue: str = "default"
    partitions: int = 1

    def cli_args(self) -> list[str]:
        if self.partitions == 1:
            return []  # the default queue, as an instance is started most often
        return ["--queue", self.queue, "--partitions", str(self.partitions)]


def on_server(server: Backend | RedisServer) -> Backend:
    """A private redis-server holds the queue (the default one) and hears the starts."""
    if isinstance(server, Backend):
        return server
    return Backend(server.url, server.url)


ONE_SERVER = "one-server"
CLUSTER = f"cluster-P{P}"


def on_the_cluster(mark: pytest.MarkDecorator) -> pytest.MarkDecorator:
    """For a test whose cluster variant is marked (skipped, expected to fail)."""
    return pytest.mark.parametrize("backend", [ONE_SERVER, pytest.param(CLUSTER, marks=mark)],
                                   indirect=True)


@pytest.fixture(params=[ONE_SERVER, CLUSTER])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == ONE_SERVER:
        with RedisServer(aof=True) as server:
            yield on_server(server)
        return
    cluster_url: str = request.getfixturevalue("cluster_url")
    with RedisServer() as events:
        backend = Backend(cluster_url, events.url, f"fleet-{uuid.uuid4().hex[:10]}", P)
        try:
            yield backend
        finally:
            await drop_queue(backend)


async def drop_queue(backend: Backend) -> None:
    """The test queue's keys on the shared cluster, every partition's, on its own node."""
    async with ClusterClient.from_url(backend.url, connect_timeout=2, read_timeout=5) as client:
        with trio.fail_after(20):
            for tag in tags(backend.queue, backend.partitions):
                node = await client.node_for(f"ae:{{{tag}}}:")
                keys = await node.execute("KEYS", f"ae:{{{tag}}}:*")
                if keys:
                    await node.execute("DEL", *keys)


@dataclass
class Started:
    job_id: str
    pid: int
    at: float  # trio time the test heard of it


@dataclass
class EventLog:
    started: list[Started] = field(default_factory=list)
    _changed: trio.Event = field(default_factory=trio.Event)

    async def listen(self, url: str, *, task_status: trio.TaskStatus[None]) -> None:
        async with RedisClient.from_url(url) as redis:
            while True:  # tests restart the server: subscribe again when it comes back
                try:
                    async with redis.subscribe("fleet:events") as sub:
                        task_status.started()
                        task_status = trio.TASK_STATUS_IGNORED
                        async for _, data in sub:
                            self._record(data)
                except StoreUnavailable:
                    await trio.sleep(0.1)  # a reconnect pause, not synchronisation

    def _record(self, data: bytes) -> None:
        what, job_id, pid = data.decode().split()
        if what == "started":
            self.started.append(Started(job_id, int(pid), trio.current_time()))
            self._changed.set()
            self._changed = trio.Event()

    async def wait_until(self, ready: Callable[[list[Started]], bool]) -> None:
        while not ready(self.started):
            await self._changed.wait()


@asynccontextmanager
async def fleet(where: Backend | RedisServer) -> AsyncIterator[
        tuple[AsyncExitStack, EventLog, RedisStore]]:
    """Event listener outermost, then the store and whatever instances the test starts:
    they close in reverse order, instances first."""
    backend = on_server(where)
    log = EventLog()
    async with trio.open_nursery() as nursery:
        await nursery.start(log.listen, backend.events_url)
        try:
            async with AsyncExitStack() as stack:
                store = await stack.enter_async_context(fleet_store(backend))
                yield stack, log, store
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def fleet_store(where: Backend | RedisServer) -> AsyncIterator[RedisStore]:
    backend = on_server(where)
    store = RedisStore.from_url(backend.url, connect_timeout=1, read_timeout=2,
                                queue=backend.queue, partitions=backend.partitions)
    try:
        yield store
    finally:
        await store.aclose()


def instance(kind: str, where: Backend | RedisServer,
             *extra: str) -> AbstractAsyncContextManager[Service]:
    backend = on_server(where)
    args = [kind, APP, "--redis-url", backend.url, "--lease-ttl", str(TTL), "--heartbeat",
            str(HEARTBEAT), "--log-level", "INFO", *backend.cli_args()]
    if kind == "serve":
        args += ["--bind", "127.0.0.1:0"]
    return cli_process([*args, *extra], env={"FLEET_EVENTS_URL": backend.events_url},
                       ready=None if kind == "worker" else b"Running on")


async def ready(service: Service) -> None:
    with trio.fail_after(30):
        await service.wait_for_output(b"started:")


def work(seconds: float, key: str | None = None) -> NewJob:
    return NewJob(id=str(uuid.uuid4()), name="Work", payload=str(seconds).encode(),
                  max_retries=3, idempotency_key=key, fingerprint=str(seconds))


async def terminal(store: RedisStore, job_id: str, within: float = 30.0) -> object:
    with trio.fail_after(within):
        while True:
            job = await store.wait_for_terminal(job_id, within)
            assert job is not None
            if job.is_terminal:
                return job


@pytest.fixture
def server() -> object:
    with RedisServer(aof=True) as server:
        yield server


async def test_crashed_instance_jobs_complete_on_a_survivor(backend: Backend) -> None:
    async with fleet(backend) as (stack, log, store):
        doomed = await stack.enter_async_context(instance("worker", backend))
        await ready(doomed)
        ids = [a.job.id for a in await store.submit([work(30.0) for _ in range(4)])]
        with trio.fail_after(20):
            await log.wait_until(lambda s: len({e.job_id for e in s}) == 4)
        survivor = await stack.enter_async_context(instance("worker", backend))
        await ready(survivor)
        for e in log.started:
            assert e.pid == doomed.process.pid
        # A pushed job counts as started once a heartbeat says so (cn 'P' until then): only
        # then is its run charged when its lease is reclaimed. Wait for that, not for time.
        with trio.fail_after(10):
            await started_on_server(store, ids)
        # The doomed instance holds all four, mid-run. Kill it without a chance to clean up.
        doomed.process.kill()
        killed_at = trio.current_time()
        with trio.fail_after(TTL + HEARTBEAT + 10):
            await log.wait_until(lambda s: len(s) == 8)
        latencies = [e.at - killed_at for e in log.started[4:]]
        assert {e.pid for e in log.started[4:]} == {survivor.process.pid}
        print(f"\nreclaim latency after kill -9: max {max(latencies):.2f}s, "
              f"min {min(latencies):.2f}s (lease TTL {TTL}s, heartbeat {HEARTBEAT}s)")
        # The wait above bounds the reclaim; its latency is printed, never judged: a loaded
        # CI machine stretches it (this assertion failed about one run in six at 1.5 s).
        for job_id in ids:
            await store.cancel(job_id)  # the 30 s jobs have made their point
        for job_id in ids:
            job = await terminal(store, job_id)
            assert job.status is JobStatus.CANCELED  # type: ignore[attr-defined]
            assert job.retry_count == 1  # type: ignore[attr-defined]
    assert "started:" in survivor.text


async def started_on_server(store: RedisStore, ids: list[str]) -> None:
    # Polls the server (each poll a round trip per partition; the caller bounds the wait): a
    # pushed job's record keeps the 'P' mark (its fifth field) until a heartbeat reports its
    # start. A claimed job (always, at P > 1) never has it.
    while any(record is None or record.split(b"|")[4] == b"P"
              for records in await records_of(store, ids) for record in records):
        pass


async def records_of(store: RedisStore, ids: list[str]) -> list[list[bytes | None]]:
    """The jobs' records, one HMGET per partition (each in its own slot)."""
    by_part: dict[int, list[str]] = {}
    for job_id in ids:
        by_part.setdefault(partition_of(job_id, store.partitions), []).append(job_id)
    return [await store.client.execute("HMGET", store._part(some[0]).keys.rec, *some)
            for some in by_part.values()]


async def registered_idle(store: RedisStore) -> None:
    # Polls the server, which has no event for it; each poll is a round trip, and the
    # caller bounds the wait.
    while not await store.client.execute("HLEN", store.keys.idle):
        pass


@on_the_cluster(pytest.mark.skip(
    reason="push dispatch is off at P > 1 (claims only); the claim path's side is "
    "test_jobs_claimed_by_a_worker_killed_at_once_are_charged_once"))
async def test_a_job_pushed_to_a_killed_idle_worker_runs_once_uncharged(
        backend: Backend) -> None:
    async with fleet(backend) as (stack, log, store):
        doomed = await stack.enter_async_context(instance("worker", backend))
        await ready(doomed)
        with trio.fail_after(10):
            await registered_idle(store)  # blocked on its inbox, taking pushes
        doomed.process.kill()
        [submitted] = await store.submit([work(0.05)])
        job_id = submitted.job.id
        pushed = await store.get(job_id)
        # Leased straight to the dead instance by the submit: nobody claimed it.
        assert pushed is not None and pushed.status is JobStatus.IN_PROGRESS
        assert pushed.owner is not None and pushed.token == 1
        survivor = await stack.enter_async_context(instance("worker", backend))
        await ready(survivor)
        done = await terminal(store, job_id, TTL + 20)
        assert done.status is JobStatus.COMPLETED  # type: ignore[attr-defined]
        assert done.retry_count == 0  # type: ignore[attr-defined]  # not charged
        assert done.token == 2  # type: ignore[attr-defined]  # claimed once more, by the survivor
        assert f'"pid":{survivor.process.pid}'.encode() in done.result  # type: ignore
        with trio.fail_after(10):  # its announcement may trail its end
            await log.wait_until(lambda s: len(s) >= 1)
        assert [(e.job_id, e.pid) for e in log.started] == [(job_id, survivor.process.pid)]


async def test_jobs_claimed_by_a_worker_killed_at_once_are_charged_once(
        backend: Backend) -> None:
    """The claim path's side of the push test above: jobs waiting when a worker starts
    are claimed by it (no push: it was not idle when they came), and it dies the moment
    the store says it holds them all, its handlers started or not. A claim is a start:
    each job is reclaimed charged, once, and runs on the survivor."""
    async with fleet(backend) as (stack, log, store):
        ids = [a.job.id for a in await store.submit([work(30.0) for _ in range(4)])]
        doomed = await stack.enter_async_context(instance("worker", backend))
        with trio.fail_after(30):
            while True:  # each poll a round trip per job; no event says "claimed"
                jobs = [await store.get(job_id) for job_id in ids]
                if all(j is not None and j.status is JobStatus.IN_PROGRESS for j in jobs):
                    break
        doomed.process.kill()
        assert {j.owner for j in jobs if j is not None} == {jobs[0].owner}  # one worker
        assert [j.token for j in jobs if j is not None] == [1] * 4
        survivor = await stack.enter_async_context(instance("worker", backend))
        with trio.fail_after(TTL + HEARTBEAT + 20):
            await log.wait_until(lambda s: {e.job_id for e in s
                                            if e.pid == survivor.process.pid} == set(ids))
        assert {e.pid for e in log.started} <= {doomed.process.pid, survivor.process.pid}
        for job_id in ids:
            await store.cancel(job_id)  # the 30 s jobs have made their point
        for job_id in ids:
            job = await terminal(store, job_id)
            assert job.status is JobStatus.CANCELED
            assert job.retry_count == 1  # charged once: the dead worker's claim
            assert job.token == 2  # claimed once more, by the survivor


async def test_no_job_lost_when_an_instance_dies_under_load(backend: Backend) -> None:
    async with fleet(backend) as (stack, _, store):
        a = await stack.enter_async_context(instance("worker", backend))
        b = await stack.enter_async_context(instance("worker", backend))
        await ready(a)
        await ready(b)
        ids: list[str] = []
        for _ in range(10):
            ids += [s.job.id for s in await store.submit([work(0.05) for _ in range(20)])]
        a.process.kill()
        ids += [s.job.id for s in await store.submit([work(0.01) for _ in range(50)])]
        statuses = [(await terminal(store, i, 60)).status for i in ids]  # type: ignore[attr-defined]
    assert statuses == [JobStatus.COMPLETED] * len(ids)


async def test_zombie_writes_are_refused(backend: Backend) -> None:
    async with fleet(backend) as (stack, log, store):
        zombie = await stack.enter_async_context(instance("worker", backend))
        await ready(zombie)
        [submitted] = await store.submit([work(TTL * 2)])
        job_id = submitted.job.id
        with trio.fail_after(20):
            await log.wait_until(lambda s: len(s) == 1)
        zombie.process.send_signal(signal.SIGSTOP)
        peer = await stack.enter_async_context(instance("worker", backend))
        await ready(peer)
        done = await terminal(store, job_id, 30)
        assert done.result is not None  # type: ignore[attr-defined]
        assert f'"pid":{peer.process.pid}'.encode() in done.result  # type: ignore[attr-defined]
        zombie.process.send_signal(signal.SIGCONT)
        with trio.fail_after(20):
            # Woken, it learns that the lease is gone: from its own deadline, which passed
            # while it was stopped, or from its next renewal or write.
            await zombie.wait_for_output(re.compile(rb"refused|stopping its handler"))
        after = await store.get(job_id)
        assert after is not None and after.result == done.result  # type: ignore[attr-defined]
        assert after.status is JobStatus.COMPLETED


async def test_long_job_is_not_reclaimed_while_its_instance_lives(backend: Backend) -> None:
    async with fleet(backend) as (stack, log, store):
        a = await stack.enter_async_context(instance("worker", backend))
        b = await stack.enter_async_context(instance("worker", backend))
        await ready(a)
        await ready(b)
        [submitted] = await store.submit([work(TTL * 3)])
        job = await terminal(store, submitted.job.id, 30)
        assert job.status is JobStatus.COMPLETED  # type: ignore[attr-defined]
        assert job.retry_count == 0  # type: ignore[attr-defined]
        assert len(log.started) == 1  # one run, never a second


async def test_redis_restart_mid_run(server: RedisServer) -> None:
    async with fleet(server) as (stack, _, store):
        a = await stack.enter_async_context(instance("serve", server))
        await ready(a)
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=a.url))
        before = [(await client.post("/work", json=0.5)).json()["id"] for _ in range(5)]
        server.restart()  # AOF on: what was acknowledged survives
        with trio.fail_after(30):
            while True:  # the instance's own backoff decides when it is back
                response = await client.post("/work", json=0.01)
                if response.status_code == 202:
                    break
                assert response.status_code == 503
                await client.get(f"/jobs/{before[0]}", params={"wait": 0.2})
        after = [(await client.post("/work", json=0.01)).json()["id"] for _ in range(5)]
        for job_id in before + after:
            job = await terminal(store, job_id, 30)
            assert job.status is JobStatus.COMPLETED  # type: ignore[attr-defined]


async def test_redis_down_answers_503_and_writes_nothing_half(server: RedisServer) -> None:
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(instance("serve", server, "--no-workers"))
        await ready(a)
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=a.url))
        accepted = [(await client.post("/work", json=1)).json()["id"] for _ in range(3)]
        server.stop()
        for _ in range(5):
            response = await client.post("/work", json=1)
            assert response.status_code == 503
            assert response.headers["content-type"] == "application/problem+json"
            assert int(response.headers["retry-after"]) >= 1
        server.start()
        async with RedisClient.from_url(server.url) as redis:
            prefix = "ae:{default}:"
            records = await redis.execute("HLEN", prefix + "rec")
            data = await redis.execute("HLEN", prefix + "data")
            queued = await redis.execute("ZRANGE", prefix + "ready", 0, -1)
        assert records == data == len(accepted)
        assert sorted(q.decode() for q in queued) == sorted(accepted)


async def test_idempotent_submits_on_two_instances_make_one_job(backend: Backend) -> None:
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(instance("serve", backend, "--no-workers"))
        b = await stack.enter_async_context(instance("serve", backend, "--no-workers"))
        await ready(a)
        await ready(b)
        clients = [await stack.enter_async_context(httpx.AsyncClient(base_url=s.url))
                   for s in (a, b)]
        ids: list[str] = []
        busy = 0

        async def submit(client: httpx.AsyncClient) -> None:
            nonlocal busy
            response = await client.post("/work", json=1, headers={"Idempotency-Key": "once"})
            if response.status_code == 409:
                # A duplicate of a request its own instance is still processing: the
                # draft's concurrent case. Across instances the store makes it a replay.
                assert response.json()["code"] == "IdempotencyKeyInFlight"
                busy += 1
                return
            assert response.status_code == 202
            ids.append(response.json()["id"])

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(submit, clients[i % 2])
        for client in clients:  # once answered, the key replays on either instance
            await submit(client)
        assert len(ids) + busy == 22 and len(ids) >= 2 and len(set(ids)) == 1


async def test_cancel_reaches_the_owning_instance(backend: Backend) -> None:
    async with fleet(backend) as (stack, log, _store):
        api = await stack.enter_async_context(instance("serve", backend, "--no-workers"))
        runner = await stack.enter_async_context(instance("worker", backend))
        await ready(api)
        await ready(runner)
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=api.url))
        location = (await client.post("/work", json=60)).headers["location"]
        with trio.fail_after(20):
            await log.wait_until(lambda s: len(s) == 1)
        asked_at = trio.current_time()
        response = await client.delete(location)
        assert response.status_code == 202 and response.json()["cancelRequested"]
        body = (await client.get(location, params={"wait": 10})).json()
        took = trio.current_time() - asked_at
        assert body["status"] == "Canceled"
        print(f"\ncancel reached the other instance and ended the job in {took * 1000:.0f} ms "
              f"(heartbeat {HEARTBEAT}s)")
        assert took < HEARTBEAT + 2.0  # pub/sub: well inside a heartbeat on a quiet machine


@asynccontextmanager
async def command_counter(backend: Backend) -> AsyncIterator[
        Callable[[], Awaitable[tuple[dict[str, int], int]]]]:
    """``count()``: calls per command, as the server counts them (on a cluster, summed over
    its primaries), and the number of nodes asked. Commands run inside Lua scripts count
    too, so this is stricter than counting the instance's round trips. Each node's count
    includes our previous ``INFO`` there, not this one. On one server each count opens a
    connection of its own (as this test always did); on a cluster one client, whose slot
    map is read once, before any count, asks the primaries over its pooled connections."""
    if backend.partitions == 1:
        async def count() -> tuple[dict[str, int], int]:
            async with RedisClient.from_url(backend.url) as redis:
                return parse_commandstats([(await redis.execute("INFO", "commandstats"))])
        yield count
        return
    async with ClusterClient.from_url(backend.url) as cluster:
        nodes = await cluster.primaries()

        async def count_cluster() -> tuple[dict[str, int], int]:
            return parse_commandstats([await node.execute("INFO", "commandstats")
                                       for node in nodes])
        yield count_cluster


def parse_commandstats(infos: list[bytes]) -> tuple[dict[str, int], int]:
    counts: dict[str, int] = {}
    for info in infos:
        for line in info.decode().splitlines():
            if line.startswith("cmdstat_"):
                name = line.split(":", 1)[0].removeprefix("cmdstat_")
                calls = int(line.split("calls=", 1)[1].split(",", 1)[0])
                counts[name] = counts.get(name, 0) + calls
    # A replica's acknowledgements (once a second) are the cluster's cost, not ours.
    counts.pop("replconf", None)
    return counts, len(infos)


async def test_idle_instance_costs_redis_few_commands(backend: Backend) -> None:
    window = 6.0
    async with fleet(backend) as (stack, _, _store), command_counter(backend) as count:
        blpops_before = (await count())[0].get("blpop", 0)  # the shared cluster's are many
        idle = await stack.enter_async_context(instance("serve", backend))
        await ready(idle)
        # Start counting once its dispatcher sleeps on the wake list(s): its start-up (the
        # release of leases a former process of its id held, the first claim) is not idle.
        with trio.fail_after(10):
            while (await count())[0].get("blpop", 0) <= blpops_before:  # noqa: ASYNC110
                await trio.sleep(0.05)
        before, nodes = await count()
        await trio.sleep(window)  # the quantity measured is what happens during idle time
        after, _ = await count()
    delta = {k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)}
    delta["info"] -= nodes  # ours
    executed = sum(delta.values())
    sent = sum(delta.get(k, 0) for k in ("evalsha", "blpop", "ping", "subscribe",
                                         "ssubscribe", "cluster"))
    print(f"\nidle instance over {window:.0f}s: {sent / window:.2f} commands/s sent, "
          f"{executed / window:.2f}/s executed by Redis (scripts' inner calls included): "
          f"{sorted(delta.items())}")
    # Claims do not poll empty partitions (one backstop claim per idle wait, whatever P);
    # what grows with P is the recovery sweep (one script per partition per sweep) and,
    # on a cluster, one BLPOP per partition: 13/s measured at P=6 (20/s before the
    # backstop claim, when every partition was claimed from after each idle wait).
    assert executed / window <= 5.0 + 2.0 * (backend.partitions - 1)
