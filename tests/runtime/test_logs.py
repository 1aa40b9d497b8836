"""What the runtime logs about jobs: one line each, at the level the event deserves."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing

from asyncendpoints_trio import AsyncContext, EndpointsConfig, RetryPolicy

from .._runtime_kit import new, registry, running, wait_terminal


class Flaky(Exception):
    pass


async def test_job_lines_and_their_levels(autojump_clock: trio.testing.MockClock,
                                          caplog: pytest.LogCaptureFixture) -> None:
    async def ok(ctx: AsyncContext[Any]) -> int:
        return 1

    async def flaky(ctx: AsyncContext[Any]) -> None:
        raise Flaky("the disk is full")

    caplog.set_level(logging.DEBUG, logger="asyncendpoints_trio")
    policy = RetryPolicy(max_retries=1, base_delay=2.0, jitter=0.0)
    async with running(registry(Ok=ok, Flaky=(flaky, {"retry": policy})),
                       EndpointsConfig(shutdown_grace=0)) as rt:
        ok_id = (await rt.submit(new("Ok"))).job.id
        await wait_terminal(rt, ok_id)
        flaky_id = (await rt.submit(new("Flaky", max_retries=1))).job.id
        await wait_terminal(rt, flaky_id)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records
             if r.name == "asyncendpoints_trio.worker"]
    completed = [m for level, m in lines if level == logging.DEBUG and ok_id in m]
    assert completed == [f"job {ok_id} (Ok) attempt 1 completed"]
    retried = [m for level, m in lines if level == logging.WARNING and flaky_id in m]
    assert len(retried) == 1
    assert "(Flaky) attempt 1 failed with tests.runtime.test_logs.Flaky: the disk is full" \
        in retried[0] and "retry 1 of 1 in 2.0s" in retried[0]
    final = [r for r in caplog.records if r.levelno == logging.ERROR and flaky_id in
             r.getMessage()]
    assert len(final) == 1 and "after 2 attempts (no retries left)" in final[0].getMessage()
    assert final[0].exc_info is not None  # the whole chain stays in the logs
    stopped = [r.getMessage() for r in caplog.records if "stopped" in r.getMessage()]
    assert stopped[-1].endswith("its drain handed 0 jobs back to the queue")


async def test_job_lines_carry_the_jobs_fields_and_json_writes_them(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    import json

    from asyncendpoints_trio._logging import JsonFormatter

    async def flaky(ctx: AsyncContext[Any]) -> None:
        raise Flaky("once")

    caplog.set_level(logging.DEBUG, logger="asyncendpoints_trio")
    policy = RetryPolicy(max_retries=0)
    async with running(registry(Flaky=(flaky, {"retry": policy}))) as rt:
        job_id = (await rt.submit(new("Flaky", max_retries=0))).job.id
        await wait_terminal(rt, job_id)
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    line = json.loads(JsonFormatter().format(record))
    assert (line["job_id"], line["job_name"], line["attempt"]) == (job_id, "Flaky", 1)
    assert line["level"] == "ERROR" and line["logger"] == "asyncendpoints_trio.worker"
    assert line["exception"]["type"] == "Flaky" and "raise Flaky" in line["exception"][
        "traceback"]
