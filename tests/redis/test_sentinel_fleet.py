"""A fleet on a Sentinel group: two worker processes run jobs while the primary is killed.

The instances are our CLI with ``--redis-url redis+sentinel://...``; the test submits and
reads through a ``RedisStore`` on a ``SentinelClient`` of its own. Handlers announce their
starts on a separate plain redis-server (the ``test_fleet`` event log), which the failover
does not touch.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio

from asyncendpoints_trio import Job, JobStatus, StoreUnavailable
from asyncendpoints_trio.redis import ReplicaWait, Script, SentinelClient, SentinelStatistics
from asyncendpoints_trio.stores._redis import RedisStore
from tests._processes import Service, cli_process
from tests._redis_sentinel import Failover, SentinelGroupServers
from tests._redis_server import RedisServer
from tests.redis.test_fleet import APP, EventLog, ready, terminal, work

pytestmark = pytest.mark.slow

# Longer than the failover (about 1-2 s here), so that the leases of the jobs running at the
# kill outlive it: their instances renew them on the new primary.
TTL = 6.0
HEARTBEAT = 0.5
_MARK = Script("return redis.call('INCR', KEYS[1])")


@asynccontextmanager
async def worker(group: SentinelGroupServers, events: RedisServer
                 ) -> AsyncIterator[Service]:
    args = ["worker", APP, "--redis-url", group.url + "?connect_timeout=1&read_timeout=2",
            "--lease-ttl", str(TTL), "--heartbeat", str(HEARTBEAT), "--log-level", "INFO"]
    async with cli_process(args, env={"FLEET_EVENTS_URL": events.url}, ready=None) as service:
        yield service


def assert_runs_never_overlapped(job: Job) -> None:
    runs = sorted(job.attempts, key=lambda attempt: attempt.number)
    for earlier, later in itertools.pairwise(runs):
        assert later.started_at is not None and later.started_at >= earlier.ended_at, job


async def run_fleet(group: SentinelGroupServers, events: RedisServer, log: EventLog,
                    stack: AsyncExitStack) -> tuple[Failover, float, SentinelStatistics, list[Job]]:
    store = RedisStore(SentinelClient.from_url(group.url, connect_timeout=1, read_timeout=2),
                       owns_client=True)
    stack.push_async_callback(store.aclose)
    a = await stack.enter_async_context(worker(group, events))
    b = await stack.enter_async_context(worker(group, events))
    await ready(a)
    await ready(b)

    before = [s.job.id for s in await store.submit([work(0.5) for _ in range(16)])]
    # Replication is asynchronous: a write made after the submits, acknowledged by the
    # replica, confirms that the submits reached it too (one stream, in order).
    await store.client.evalsha(_MARK, ["fleet:mark"], wait=ReplicaWait(1, 5.0))
    with trio.fail_after(20):
        await log.wait_until(lambda s: len({e.job_id for e in s}) >= 2)
    counts = await store.counts()
    assert counts["InProgress"] > 0  # mid-run
    failover = await trio.to_thread.run_sync(group.kill_primary)
    killed_seen = trio.current_time()
    with trio.fail_after(15):
        while True:  # the test's own client follows the promotion by itself
            try:
                await store.ping()
                break
            except StoreUnavailable:
                await trio.sleep(0.05)  # a failed call returns at once: pace it
    after = [s.job.id for s in await store.submit([work(0.05) for _ in range(16)])]
    jobs = [await terminal(store, job_id, 40) for job_id in before + after]
    took = trio.current_time() - killed_seen
    for service in (a, b):  # both instances followed the promotion
        assert f"127.0.0.1:{failover.new}" in service.text, service.text
    stats = store.client.statistics()
    assert isinstance(stats, SentinelStatistics)
    return failover, took, stats, jobs  # type: ignore[return-value]


async def test_the_fleet_follows_a_failover(doomed_sentinels: SentinelGroupServers) -> None:
    group = doomed_sentinels
    log = EventLog()
    with RedisServer() as events:
        async with trio.open_nursery() as nursery:
            await nursery.start(log.listen, events.url)
            try:
                async with AsyncExitStack() as stack:  # closed before the listener is
                    failover, took, stats, jobs = await run_fleet(group, events, log, stack)
            finally:
                nursery.cancel_scope.cancel()
    print(f"\nfleet on Sentinel: kill -9 to +switch-master {failover.seconds:.2f}s; every "
          f"job ended {took:.1f}s after it; {sum(len(j.attempts) > 1 for j in jobs)} of "
          f"{len(jobs)} jobs ran more than once")  # type: ignore[attr-defined]
    assert stats.primary == f"127.0.0.1:{failover.new}"
    assert [j.status for j in jobs] == [JobStatus.COMPLETED] * len(jobs)  # type: ignore[attr-defined]
    for job in jobs:
        assert isinstance(job, Job)
        assert_runs_never_overlapped(job)
