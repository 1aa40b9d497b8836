"""The store contract for progress reports and job versions (the ids of a job's events),
and for watching a job's changes. Mixed into each store's contract tests beside
``StoreContract``, so both stores are held to the same promises."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from asyncendpoints_trio import JobStatus
from asyncendpoints_trio.stores._protocol import AckCancel, Complete, Fail, JobStore, Lease

from .store_contract import ERROR, OWNER, TTL, new_job, submit_one


@asynccontextmanager
async def events_running(store: JobStore) -> AsyncIterator[None]:
    """What the runtime's store-events actor does: run the store's event feed."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.watch_events, lambda _job_id: None)
        yield
        nursery.cancel_scope.cancel()


class ProgressContract:
    async def test_progress_rides_on_a_renewal_fenced_by_the_lease(
        self, store: JobStore, clock: object
    ) -> None:
        submitted = await submit_one(store)
        assert submitted.job.progress is None
        [claimed] = await store.claim(OWNER, 1, TTL)
        assert claimed.job.progress is None
        reply = await store.heartbeat(OWNER, [claimed.lease], TTL,
                                      {claimed.job.id: b'{"done":4,"total":10}'})
        assert not reply.lost
        job = await store.get(claimed.job.id)
        assert job is not None and job.progress == b'{"done":4,"total":10}'
        assert job.last_updated_at == claimed.job.last_updated_at  # no status change
        # A renewal that does not hold the lease writes no progress either.
        stale = Lease(claimed.job.id, claimed.lease.token - 1, OWNER)
        reply = await store.heartbeat(OWNER, [stale], TTL, {claimed.job.id: b"0.9"})
        assert reply.lost == {claimed.job.id}
        reply = await store.heartbeat("someone-else", [claimed.lease], TTL,
                                      {claimed.job.id: b"0.9"})
        assert reply.lost == {claimed.job.id}
        again = await store.get(claimed.job.id)
        assert again is not None and again.progress == b'{"done":4,"total":10}'
        assert again.version == job.version

    async def test_progress_is_kept_across_attempts_and_replaced_only_by_a_report(
        self, store: JobStore, clock: object
    ) -> None:
        await submit_one(store, new_job(max_retries=3))
        [first] = await store.claim(OWNER, 1, TTL)
        await store.heartbeat(OWNER, [first.lease], TTL, {first.job.id: b"0.25"})
        # A reclaim keeps it ...
        await trio.sleep(TTL * 1.5)
        assert (await store.recover(limit=10)).reclaimed == 1
        [second] = await store.claim("instance-b", 1, TTL)
        assert second.job.progress == b"0.25"
        # ... so do a renewal without a report and a retry ...
        await store.heartbeat("instance-b", [second.lease], TTL)
        assert await store.finish([Fail(second.lease, ERROR, 0.01)]) == [True]
        scheduled = await store.get(first.job.id)
        assert scheduled is not None and scheduled.status is JobStatus.SCHEDULED
        assert scheduled.progress == b"0.25"
        await trio.sleep(0.1)
        await store.recover(limit=10)
        [third] = await store.claim(OWNER, 1, TTL)
        assert third.job.progress == b"0.25"
        # ... and the outcome may carry the last report, written with it.
        assert await store.finish([Complete(third.lease, b"1", progress=b"1.0")]) == [True]
        done = await store.get(first.job.id)
        assert done is not None and done.status is JobStatus.COMPLETED
        assert done.progress == b"1.0"

    async def test_every_change_grows_the_version(self, store: JobStore, clock: object) -> None:
        submitted = await submit_one(store)
        seen = [submitted.job.version]
        got = await store.get(submitted.job.id)
        assert got is not None and got.version == submitted.job.version  # a read changes none
        [claimed] = await store.claim(OWNER, 1, TTL)
        seen.append(claimed.job.version)
        await store.heartbeat(OWNER, [claimed.lease], TTL)  # a plain renewal is no change
        renewed = await store.get(claimed.job.id)
        assert renewed is not None and renewed.version == claimed.job.version
        await store.heartbeat(OWNER, [claimed.lease], TTL, {claimed.job.id: b"0.5"})
        reported = await store.get(claimed.job.id)
        assert reported is not None
        seen.append(reported.version)
        requested = await store.cancel(claimed.job.id)
        assert requested is not None and requested.cancel_requested
        seen.append(requested.version)
        await store.finish([AckCancel(claimed.lease)])
        done = await store.get(claimed.job.id)
        assert done is not None and done.status is JobStatus.CANCELED
        seen.append(done.version)
        assert seen == sorted(set(seen)), seen
        assert seen[0] >= 1

    async def test_a_watch_sees_the_job_then_each_change_to_its_end(
        self, store: JobStore, clock: object
    ) -> None:
        submitted = await submit_one(store)
        job_id = submitted.job.id
        async with events_running(store):
            async with store.watch(str(uuid.uuid4())) as nobody:
                assert nobody.current is None
            async with store.watch(job_id) as watch:
                assert watch.current is not None
                assert watch.current.status is JobStatus.QUEUED
                version = watch.current.version
                with trio.fail_after(5):
                    [claimed] = await store.claim(OWNER, 1, TTL)
                    job = await watch.changed(version)
                    assert job.status is JobStatus.IN_PROGRESS
                    await store.heartbeat(OWNER, [claimed.lease], TTL, {job_id: b"0.5"})
                    job = await watch.changed(job.version)
                    assert job.progress == b"0.5" and job.status is JobStatus.IN_PROGRESS
                    await store.finish([Complete(claimed.lease, b"3", progress=b"1.0")])
                    job = await watch.changed(job.version)
                    while not job.is_terminal:  # a store may show a change more than once
                        job = await watch.changed(job.version)
                assert job.status is JobStatus.COMPLETED and job.result == b"3"
                assert job.progress == b"1.0"

    async def test_a_slow_watch_skips_to_the_latest_state(
        self, store: JobStore, clock: object
    ) -> None:
        submitted = await submit_one(store)
        async with events_running(store), store.watch(submitted.job.id) as watch:
            assert watch.current is not None
            [claimed] = await store.claim(OWNER, 1, TTL)
            for i in range(50):
                await store.heartbeat(OWNER, [claimed.lease], TTL,
                                      {claimed.job.id: f"{i / 100}".encode()})
            with trio.fail_after(5):
                job = await watch.changed(watch.current.version)
                while job.progress != b"0.49":
                    job = await watch.changed(job.version)
            # Whatever it skipped, the watch holds one state, the latest.
            assert watch.latest is job
