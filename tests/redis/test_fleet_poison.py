"""A poison job: its handler kills its process (``SIGKILL``) before any heartbeat.

Pushed to an idle worker, its first run cannot be told from a pop whose reply was lost with
a dying instance, so it comes back uncharged (docs/pages/failure-modes.md); only new jobs are
pushed, so every later run comes from a claim and is charged. It uses up its attempts and
ends ``Failed``, never looping."""

from __future__ import annotations

import uuid

import pytest
import trio

from asyncendpoints_trio import JobStatus, NewJob
from tests._redis_server import RedisServer

from .test_fleet import (  # server: the fixture, a private redis-server
    HEARTBEAT,
    TTL,
    fleet,
    instance,
    ready,
    registered_idle,
    server,
    terminal,
)

__all__ = ["server"]

pytestmark = pytest.mark.slow


async def test_a_handler_that_kills_its_process_uses_up_its_attempts(
        server: RedisServer) -> None:
    async with fleet(server) as (stack, log, store):
        first = await stack.enter_async_context(instance("worker", server))  # type: ignore
        await ready(first)
        with trio.fail_after(10):
            await registered_idle(store)  # the job is pushed to it, not claimed
        [submitted] = await store.submit([NewJob(
            id=str(uuid.uuid4()), name="Crash", payload=b"0", max_retries=1)])
        job_id = submitted.job.id
        for runs in range(3):  # each run takes its worker down; the next starts after it
            with trio.fail_after(TTL + HEARTBEAT + 20):
                await log.wait_until(lambda s, n=runs: len(s) > n)
            nxt = await stack.enter_async_context(instance("worker", server))  # type: ignore
            await ready(nxt)
        done = await terminal(store, job_id, TTL * 3 + 20)
        assert done.status is JobStatus.FAILED  # type: ignore[attr-defined]
        assert done.retry_count == 1  # type: ignore[attr-defined]
        # The pushed run left no line (uncharged); the two claimed runs did.
        assert [a.outcome for a in done.attempts] == [  # type: ignore[attr-defined]
            "LeaseExpired", "LeaseExpired"]
        assert [e.job_id for e in log.started] == [job_id] * 3  # and no fourth
        assert len({e.pid for e in log.started}) == 3
