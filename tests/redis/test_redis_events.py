"""Progress and event streams across instances on one real redis-server.

Two in-process apps on two ports share a queue: ``workers`` runs the handlers, ``api``
runs none (``run_workers=False``), as a fleet splits them. What a handler on one reports
must reach a client of the other, through the job JSON and through the event stream.
"""

from __future__ import annotations

import gc
import resource
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
from quart_trio import QuartTrio

from asyncendpoints_trio import AsyncContext, AsyncEndpoints, EndpointsConfig, JobStatus
from asyncendpoints_trio.redis import RedisClient
from tests._redis_server import RedisServer

from .._sse import Event, SseStream, open_stream
from ..conftest import serving


class Gate:
    def __init__(self) -> None:
        self.started = trio.Event()
        self.release = trio.Event()
        self.looped = trio.Event()
        self.reports = 0  # a tight loop of this many reports, when set
        self.loop_seconds = 0.0


def make_app(redis_url: str, queue: str, gate: Gate, *, workers: bool,
             **options: Any) -> tuple[QuartTrio, AsyncEndpoints]:
    app = QuartTrio(__name__)
    options = {"lease_ttl": 2.0, "heartbeat_interval": 0.2, **options}
    config = EndpointsConfig(redis_url=redis_url, queue=queue, run_workers=workers,
                             shutdown_grace=1, **options)
    endpoints = AsyncEndpoints(app, config=config)

    @endpoints.handler("Report")
    async def report(ctx: AsyncContext[dict[str, Any]]) -> dict[str, str]:
        gate.started.set()
        if gate.reports:
            began = trio.current_time()
            for i in range(gate.reports):
                await ctx.report_progress(i / gate.reports)
            gate.loop_seconds = trio.current_time() - began
            gate.looped.set()
        else:
            await ctx.report_progress({"done": 1, "total": 3})
        await gate.release.wait()
        return {"by": "workers"}

    endpoints.map_async_post("Report", "/report")
    endpoints.map_job_details()
    return app, endpoints


@asynccontextmanager
async def fleet(redis_url: str, gate: Gate, **options: Any
                ) -> AsyncIterator[tuple[str, str, AsyncEndpoints, AsyncEndpoints]]:
    queue = f"ev-{uuid.uuid4().hex[:8]}"
    workers_app, workers = make_app(redis_url, queue, gate, workers=True, **options)
    api_app, api = make_app(redis_url, queue, gate, workers=False, **options)
    async with serving(workers_app) as workers_url, serving(api_app) as api_url:
        yield workers_url, api_url, workers, api


async def _next(stream: SseStream) -> Event:
    event = await stream.next()
    assert event is not None, "the stream closed"
    return event


async def test_progress_reported_on_one_instance_streams_from_another(redis_url: str) -> None:
    gate = Gate()
    async with fleet(redis_url, gate) as (workers_url, api_url, _workers, api), \
            httpx.AsyncClient(base_url=api_url) as client:
        submitted = await client.post("/report", json={})
        assert submitted.status_code == 202
        url = f"{api_url}{submitted.headers['location']}"
        with trio.fail_after(15):
            async with open_stream(url) as stream:
                assert stream.status == 200
                seen = [await _next(stream)]
                while seen[-1].event != "progress":
                    seen.append(await _next(stream))
                assert seen[-1].data["progress"] == {"done": 1, "total": 3}
                assert seen[-1].data["status"] == "InProgress"
                polled = (await client.get(url)).json()
                assert polled["progress"] == {"done": 1, "total": 3}
                # The same event ids on the other instance: a stream resumes anywhere.
                last = seen[-1].id
                elsewhere = f"{workers_url}{submitted.headers['location']}"
                async with open_stream(elsewhere, {"Last-Event-ID": str(last)}) as resumed:
                    gate.release.set()
                    there = await resumed.rest()
                seen += await stream.rest()
    assert seen[-1].event == "terminal" and seen[-1].data["status"] == "Completed"
    assert seen[-1].data["progress"] == {"done": 1, "total": 3}
    assert there[-1].event == "terminal" and there[-1].id == seen[-1].id
    assert all(e.id is not None and e.id > (last or 0) for e in there)
    assert api.runtime is not None and not api.config.run_workers


async def test_a_tight_loop_of_reports_costs_a_handful_of_writes(
    private_server: RedisServer,
) -> None:
    gate = Gate()
    gate.reports = 10_000
    async with fleet(private_server.url, gate, heartbeat_interval=0.02) as \
            (_, api_url, workers, _api), \
            httpx.AsyncClient(base_url=api_url) as client, \
            RedisClient.from_url(private_server.url) as redis:
        location = (await client.post("/report", json={})).headers["location"]
        job_id = location.rsplit("/", 1)[1]
        with trio.fail_after(15):
            await gate.started.wait()
            before = await _command_calls(redis)
            claimed = await workers.store.get(job_id)
            await gate.looped.wait()
            after = await _command_calls(redis)
            looped = await workers.store.get(job_id)
            gate.release.set()
            done = (await client.get(location, params={"wait": 10})).json()
            final = await workers.store.get(job_id)
    assert claimed is not None and looped is not None and final is not None
    # Every write of the job grows its version: the loop's reports were written by the
    # renewals that fell in it (one per heartbeat_interval, 0.02 s), the last one with the
    # outcome, which is the one write that follows.
    writes = final.version - claimed.version
    scripts = after.get("evalsha", 0) - before.get("evalsha", 0)
    print(f"\n10,000 reports in {gate.loop_seconds:.3f}s: {looped.version - claimed.version} "
          f"progress writes during the loop, {writes} writes in all with the outcome; "
          f"{scripts} scripts run during the loop")
    assert writes <= 2 + gate.loop_seconds / 0.02, writes
    assert scripts <= 10 + 3 * gate.loop_seconds / 0.02, (before, after)
    assert done["status"] == "Completed" and done["progress"] == 0.9999


async def _command_calls(redis: RedisClient) -> dict[str, int]:
    text = (await redis.execute("INFO", "commandstats")).decode()
    calls = {}
    for line in text.splitlines():
        if line.startswith("cmdstat_"):
            name, _, stats = line[len("cmdstat_"):].partition(":")
            calls[name] = int(stats.split(",")[0].split("=")[1])
    return calls


@pytest.mark.slow
async def test_two_thousand_streams_on_one_instance(private_server: RedisServer) -> None:
    streams, jobs = 2000, 500
    gate = Gate()
    # Long leases: one process serves both instances and 2,000 clients on a shared
    # machine, and renewals must not fall behind while it is busy.
    async with fleet(private_server.url, gate, concurrency=jobs, max_queued=None,
                     lease_ttl=60.0, heartbeat_interval=10.0) as \
            (_, api_url, _workers, api), \
            httpx.AsyncClient(base_url=api_url, timeout=30) as client, \
            RedisClient.from_url(private_server.url) as redis:
        locations = []
        for _ in range(jobs):
            locations.append((await client.post("/report", json={})).headers["location"])
        terminal: list[float] = []
        opened = 0
        all_open = trio.Event()
        rss_before = _rss_kib()

        # Connections open 100 at a time, as clients arrive: a burst of 2,000 at once
        # would wait in the listen backlog past Hypercorn's keep-alive timeout.
        arriving = trio.CapacityLimiter(100)

        async def follow(location: str) -> None:
            nonlocal opened
            async with arriving:
                stream_cm = open_stream(f"{api_url}{location}")
                stream = await stream_cm.__aenter__()
                first = await _next(stream)
            try:
                opened += 1
                if opened == streams:
                    all_open.set()
                event = first
                while event.event != "terminal":
                    event = await _next(stream)
                terminal.append(trio.current_time())
                assert await stream.next() is None  # and then the stream closes
            finally:
                await stream_cm.__aexit__(None, None, None)

        began = trio.current_time()
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for i in range(streams):
                    nursery.start_soon(follow, locations[i % jobs])
                await all_open.wait()
                print(f"\n{streams} streams open in {trio.current_time() - began:.2f}s")
                assert api.store.statistics()["event_streams"] == streams
                gc.collect()
                rss_open = _rss_kib()
                channel = f"ae:{{{api.config.queue}}}:changes"
                numsub = await redis.execute("PUBSUB", "NUMSUB", channel)
                finished_at = trio.current_time()
                gate.release.set()
        done = await api.store.get(locations[0].rsplit("/", 1)[1])
    assert len(terminal) == streams
    # A stream holds one snapshot, not a queue: what 2,000 open streams cost, server and
    # client together, is a connection each (about 50 KiB here), far below this bound.
    assert (rss_open - rss_before) / streams < 256, (rss_before, rss_open)
    # One subscription per instance (this process runs two), not one per stream.
    assert int(numsub[1]) == 2, numsub
    assert done is not None and done.status is JobStatus.COMPLETED
    print(f"\n{streams} streams on {jobs} jobs: last terminal event "
          f"{max(terminal) - finished_at:.3f}s after finish (first "
          f"{min(terminal) - finished_at:.3f}s); RSS {rss_before} -> {rss_open} KiB with "
          f"every stream open (server and client in one process)")


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def test_a_quiet_stream_is_renewed_without_rereading_its_job_and_ends_when_it_is_gone(
        redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Renewing a stream's registration reads the job's version only: a quiet stream on a
    # job with a large payload used to read the whole job again at every refresh.
    from asyncendpoints_trio.stores import _redis as redis_store

    monkeypatch.setattr(redis_store, "_STREAM_REFRESH", 0.1)
    gate = Gate()
    async with fleet(redis_url, gate) as (_workers_url, api_url, _workers, api), \
            httpx.AsyncClient(base_url=api_url) as client:
        submitted = await client.post("/report", json={"pad": "x" * 100_000})
        url = f"{api_url}{submitted.headers['location']}"
        store = api.store.inner  # type: ignore[attr-defined]
        with trio.fail_after(15):
            async with open_stream(url) as stream:
                seen = [await _next(stream)]
                while seen[-1].event != "progress":
                    seen.append(await _next(stream))
                reads = store.statistics()["event_stream_reads"]
                renewals: list[int] = []
                five = trio.Event()
                renew = store._renew_watches

                async def counted(job_ids: list[str]) -> None:
                    await renew(job_ids)
                    renewals.append(len(job_ids))
                    if len(renewals) == 5:
                        five.set()

                monkeypatch.setattr(store, "_renew_watches", counted)
                await five.wait()  # five real refreshes, 0.1 s apart
                assert store.statistics()["event_stream_reads"] == reads
                assert store.statistics()["event_stream_renewals"] >= 5
                # The job vanishes under the stream (evicted, flushed): the stream ends
                # at the next renewal instead of sending keep-alives forever.
                job_id = submitted.json()["id"]
                async with RedisClient.from_url(redis_url) as redis:
                    await redis.execute("HDEL", store.keys.rec, job_id)
                rest = await stream.rest()
        gate.release.set()
    assert all(e.event != "terminal" for e in rest)
