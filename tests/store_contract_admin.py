"""The admin part of the store contract (``AdminStore``): listing, retry, audited cancel,
statistics, presence. Mixed into both stores' contract classes beside ``StoreContract``."""

from __future__ import annotations

import random
from typing import Any

import trio

from asyncendpoints_trio import JobStatus
from asyncendpoints_trio.stores._admin import (
    AdminStore,
    InstanceInfo,
    JobPage,
    JobQuery,
    PagePosition,
)
from asyncendpoints_trio.stores._protocol import Complete, Fail

from .store_contract import ERROR, OWNER, TTL, new_job, submit_one

_S = JobStatus
NO_JOB = "00000000-0000-4000-8000-000000000000"


async def _all_pages(store: AdminStore, query: JobQuery) -> list[list[str]]:
    pages: list[list[str]] = []
    while True:
        page = await store.list_jobs(query)
        pages.append([j.id for j in page.jobs])
        if page.next is None:
            return pages
        query = JobQuery(query.statuses, query.name, query.limit, page.next)


def _newest_first(page: JobPage) -> bool:
    positions = [PagePosition.of(j) for j in page.jobs]
    return positions == sorted(positions, reverse=True) and len(set(positions)) == len(positions)


class AdminContract:
    async def _mixed(self, store: Any) -> dict[str, list[str]]:
        """Jobs of two names in four statuses; returns ids by 'name/status'."""
        made: dict[str, list[str]] = {}
        for round_ in range(3):
            batch = [new_job("A" if i % 2 else "B", str(i + 10 * round_).encode())
                     for i in range(6)]
            await store.submit(batch)
        claims = await store.claim(OWNER, 8, 5.0)
        await store.finish([Complete(c.lease, b"1") for c in claims[:3]]
                           + [Fail(c.lease, ERROR, None) for c in claims[3:5]])
        for status in JobStatus:
            page = await store.list_jobs(JobQuery(frozenset({status}), limit=200))
            for job in page.jobs:
                made.setdefault(f"{job.name}/{job.status.value}", []).append(job.id)
        return made

    async def test_list_filters_newest_first(self, store: Any, clock: object) -> None:
        made = await self._mixed(store)
        everything = await store.list_jobs(JobQuery(limit=200))
        assert len(everything.jobs) == 18 and everything.next is None
        assert _newest_first(everything)
        for key, ids in made.items():
            name, status = key.split("/")
            page = await store.list_jobs(JobQuery(frozenset({_S(status)}), name, limit=200))
            assert sorted(j.id for j in page.jobs) == sorted(ids), key
            assert _newest_first(page)
        by_name = await store.list_jobs(JobQuery(name="A", limit=200))
        assert {j.name for j in by_name.jobs} == {"A"} and len(by_name.jobs) == 9
        two = await store.list_jobs(JobQuery(frozenset({_S.COMPLETED, _S.FAILED}), limit=200))
        assert {j.status for j in two.jobs} == {_S.COMPLETED, _S.FAILED}
        assert len(two.jobs) == 5 and _newest_first(two)
        assert (await store.list_jobs(JobQuery(name="Nobody"))).jobs == []

    async def test_pages_follow_cursors_to_the_end(self, store: Any, clock: object) -> None:
        await self._mixed(store)
        for statuses, name in ((frozenset(), None), (frozenset({_S.QUEUED}), None),
                               (frozenset(), "B"), (frozenset({_S.QUEUED, _S.FAILED}), "A")):
            whole = await store.list_jobs(JobQuery(statuses, name, limit=200))
            pages = await _all_pages(store, JobQuery(statuses, name, limit=4))
            assert [i for p in pages for i in p] == [j.id for j in whole.jobs]
            assert all(len(p) == 4 for p in pages[:-1])

    async def test_paging_stays_correct_while_jobs_move(self, store: Any, clock: object
                                                        ) -> None:
        rng = random.Random(7)
        news = [new_job("A" if i % 3 else "B", str(i).encode()) for i in range(40)]
        for start in range(0, 40, 5):
            await store.submit(news[start:start + 5])
        wanted = frozenset({_S.QUEUED, _S.IN_PROGRESS})
        query = JobQuery(wanted, limit=6)
        seen: list[str] = []
        left: set[str] = set()  # jobs that left the filter at some point
        while True:
            page = await store.list_jobs(query)
            assert _newest_first(page)
            seen += [j.id for j in page.jobs]
            # Between pages, jobs move: claimed (stays in the filter), finished (leaves).
            for c in await store.claim(OWNER, rng.randint(1, 6), 5.0):
                if rng.random() < 0.5:
                    await store.finish([Complete(c.lease, b"1")])
                    left.add(c.job.id)
            if page.next is None:
                break
            query = JobQuery(wanted, limit=6, after=page.next)
        assert len(seen) == len(set(seen)), "a job was shown twice"
        stayed = {n.id for n in news} - left
        assert stayed <= set(seen), "a job that matched all along was skipped"

    async def test_retry_puts_a_failed_job_back_with_a_fresh_budget(
        self, store: Any, clock: object
    ) -> None:
        done = await submit_one(store, new_job(max_retries=1))
        job_id = done.job.id
        for _ in range(2):
            [c] = await store.claim(OWNER, 1, TTL)
            await store.finish([Fail(c.lease, ERROR, 0.0 if c.job.retry_count == 0 else None)])
            await trio.sleep(0.02)
            await store.recover(limit=10)
        failed = await store.get(job_id)
        assert failed.status is _S.FAILED and failed.retry_count == 1
        assert (await store.retry(NO_JOB)).job is None
        retried = await store.retry(job_id, by="alice")
        assert retried.applied and retried.job is not None
        job = retried.job
        assert job.status is _S.QUEUED and job.retry_count == 0 and job.error is None
        assert job.completed_at is None and job.owner is None
        assert [(e.action, e.by) for e in job.audit] == [("retry", "alice")]
        assert len(job.attempts) == 2  # the runs before stay in its history
        again = await store.get(job_id)
        assert again.audit == job.audit and again.status is _S.QUEUED
        assert not (await store.retry(job_id)).applied  # Queued: not retryable
        [c] = await store.claim(OWNER, 1, TTL)
        assert c.job.id == job_id and c.job.token == 3
        await store.finish([Complete(c.lease, b'"ok"')])
        finished = await store.get(job_id)
        assert finished.status is _S.COMPLETED and finished.result == b'"ok"'
        assert not (await store.retry(job_id)).applied  # Completed: not retryable
        assert (await store.list_jobs(JobQuery(frozenset({_S.COMPLETED})))).jobs[0].id == job_id

    async def test_a_retried_job_is_not_purged_by_its_old_retention(
        self, store: Any, clock: object
    ) -> None:
        done = await submit_one(store)
        await store.cancel(done.job.id)
        retention = store.retention
        await trio.sleep(retention * 0.6)
        assert (await store.retry(done.job.id)).applied
        await trio.sleep(retention * 0.6)  # past the canceled job's purge time
        await store.recover(limit=100)
        job = await store.get(done.job.id)
        assert job is not None and job.status is _S.QUEUED
        assert [j.id for j in (await store.list_jobs(JobQuery())).jobs] == [done.job.id]

    async def test_cancel_audited(self, store: Any, clock: object) -> None:
        ids = {(await submit_one(store)).job.id for _ in range(2)}
        [c] = await store.claim(OWNER, 1, TTL)
        [waiting] = ids - {c.job.id}  # still queued, whichever line it waits in
        canceled = await store.cancel_audited(waiting, by="bob")
        assert canceled.status is _S.CANCELED
        assert [(e.action, e.by) for e in canceled.audit] == [("cancel", "bob")]
        asked = await store.cancel_audited(c.job.id, by=None)
        assert asked.status is _S.IN_PROGRESS and asked.cancel_requested
        assert [(e.action, e.by) for e in asked.audit] == [("cancel", None)]
        twice = await store.cancel_audited(c.job.id, by="carol")  # nothing changes
        assert len(twice.audit) == 1
        assert await store.cancel_audited(NO_JOB) is None

    async def test_inspect_shows_the_lease(self, store: Any, clock: object) -> None:
        ids = {(await submit_one(store)).job.id for _ in range(2)}
        [c] = await store.claim(OWNER, 1, 5.0)
        [waiting] = ids - {c.job.id}
        seen = await store.inspect(c.job.id)
        assert seen.job.owner == OWNER and seen.lease_expires_at is not None
        assert 3.0 < seen.lease_expires_at - seen.job.started_at < 7.0
        assert (await store.inspect(waiting)).lease_expires_at is None
        assert await store.inspect(NO_JOB) is None

    async def test_stats_count_statuses_names_and_rates(self, store: Any, clock: object
                                                        ) -> None:
        await self._mixed(store)
        stats = await store.stats()
        assert stats.by_status == {"Queued": 10, "Scheduled": 0, "InProgress": 3,
                                   "Completed": 3, "Failed": 2, "Canceled": 0}
        assert set(stats.by_name) == {"A", "B"}
        for status in JobStatus:
            assert sum(c[status.value] for c in stats.by_name.values()) == \
                stats.by_status[status.value]
        assert sum(stats.by_name["A"].values()) == 9
        assert len(stats.buckets) == 15 and stats.bucket_seconds == 60
        last = stats.buckets[-1]
        earlier = stats.buckets[-2]  # the minute may have turned during the test
        assert last.submitted + earlier.submitted == 18
        assert last.completed + earlier.completed == 3
        assert last.failed + earlier.failed == 2
        assert [b.at for b in stats.buckets] == sorted(b.at for b in stats.buckets)

    async def test_purged_jobs_leave_the_list_and_counts(self, store: Any, clock: object
                                                         ) -> None:
        gone = await submit_one(store, new_job("Gone"))
        await store.cancel(gone.job.id)
        kept = await submit_one(store, new_job("Kept"))
        await trio.sleep(store.retention + 0.3)
        await store.recover(limit=100)
        assert [j.id for j in (await store.list_jobs(JobQuery())).jobs] == [kept.job.id]
        assert (await store.list_jobs(JobQuery(name="Gone"))).jobs == []
        stats = await store.stats()
        assert stats.by_status["Canceled"] == 0
        assert sum(stats.by_name.get("Gone", {}).values()) == 0

    async def test_presence_appears_and_expires(self, store: Any, clock: object) -> None:
        info = InstanceInfo("inst-1", "host-a", 123, 1_700_000_000.0, 4, 2)
        await store.announce(info, 0.5)
        await store.announce(InstanceInfo("inst-0", "host-b", 9, 1_700_000_000.0, 1), 5.0)
        live = await store.instances()
        assert [i.info.id for i in live] == ["inst-0", "inst-1"]
        assert live[1].info == info
        assert 0.3 < live[1].expires_at - live[1].last_heartbeat < 0.7
        await trio.sleep(0.7)
        assert [i.info.id for i in await store.instances()] == ["inst-0"]
        await store.announce(info, 0.5)  # back
        assert [i.info.id for i in await store.instances()] == ["inst-0", "inst-1"]
