"""``AsyncEndpoints.submit`` and ``wait``: queueing from Python beside the app, no HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass
from typing import Any

import pydantic
import pytest
import trio
from quart_trio import QuartTrio

from asyncendpoints_trio import (
    AsyncContext,
    AsyncEndpoints,
    EndpointsConfig,
    IdempotencyConflict,
    JobStatus,
    NotAccepting,
    RetryPolicy,
)

from ._processes import ROOT
from .conftest import client_for, serving


@dataclass
class DataRequest:
    data: str
    times: int = 1


def make_app(config: EndpointsConfig | None = None) -> tuple[QuartTrio, AsyncEndpoints]:
    app = QuartTrio(__name__)
    endpoints = AsyncEndpoints(app, config=config or EndpointsConfig(shutdown_grace=1))
    hold = trio.Event()

    @endpoints.handler("ProcessData", retry=RetryPolicy(max_retries=1))
    async def process(ctx: AsyncContext[DataRequest]) -> str:
        return ctx.request.data * ctx.request.times

    @endpoints.handler("Block")
    async def block(ctx: AsyncContext[Any]) -> None:
        await hold.wait()

    endpoints.map_async_post("ProcessData", "/process")
    endpoints.map_job_details()
    return app, endpoints


async def test_submit_then_wait_returns_the_final_job() -> None:
    app, endpoints = make_app()
    async with serving(app):
        job = await endpoints.submit("ProcessData", DataRequest("ab", times=2), priority=3)
        assert job.status is JobStatus.QUEUED and job.name == "ProcessData"
        assert job.priority == 3 and job.max_retries == 1
        # A plain dict is validated into the request type, as an HTTP body would be.
        other = await endpoints.submit("ProcessData", {"data": "x"})
        with trio.fail_after(10):
            done = await endpoints.wait(job.id, 10)
            done_other = await endpoints.wait(other.id, 10)
    assert done is not None and done.status is JobStatus.COMPLETED
    assert json.loads(done.result or b"null") == "abab"
    assert done_other is not None and json.loads(done_other.result or b"null") == "x"


async def test_the_stored_payload_is_what_the_http_route_would_store() -> None:
    app, endpoints = make_app(EndpointsConfig(shutdown_grace=1, run_workers=False))
    async with client_for(app) as client:
        job = await endpoints.submit("ProcessData", DataRequest("a"))
        over_http = await client.get(f"/jobs/{job.id}")
    assert json.loads(job.payload) == {"data": "a", "times": 1}
    assert over_http.status_code == 200 and over_http.json()["id"] == job.id


async def test_a_value_the_request_type_refuses_raises_and_stores_nothing() -> None:
    app, endpoints = make_app(EndpointsConfig(shutdown_grace=1, run_workers=False))
    async with serving(app):
        with pytest.raises(pydantic.ValidationError):
            await endpoints.submit("ProcessData", {"data": 5, "times": "many"})
        for bad in ({"priority": 10}, {"priority": True}, {"delay": -1.0},
                    {"delay": float("nan")}, {"job_id": "not-a-uuid"},
                    {"idempotency_key": ""}, {"idempotency_key": "k" * 256}):
            with pytest.raises(ValueError, match="must be"):
                await endpoints.submit("ProcessData", DataRequest("a"), **bad)
    assert endpoints.store.statistics()["jobs"] == 0


async def test_idempotency_keys_and_chosen_ids() -> None:
    app, endpoints = make_app(EndpointsConfig(shutdown_grace=1, run_workers=False))
    async with client_for(app) as client:
        first = await endpoints.submit("ProcessData", DataRequest("a"), idempotency_key="k")
        again = await endpoints.submit("ProcessData", {"data": "a", "times": 1},
                                       idempotency_key="k")
        assert again.id == first.id
        with pytest.raises(IdempotencyConflict) as raised:
            await endpoints.submit("ProcessData", DataRequest("b"), idempotency_key="k")
        assert raised.value.job_id == first.id
        # The same key over HTTP is another key: in-process keys are apart from routes'.
        http = await client.post("/process", json={"data": "a"}, headers={"Idempotency-Key": "k"})
        assert http.status_code == 202 and http.json()["id"] != first.id
        chosen = str(uuid.uuid4())
        mine = await endpoints.submit("ProcessData", DataRequest("c"), job_id=chosen.upper())
        assert mine.id == chosen
        assert (await endpoints.submit("ProcessData", DataRequest("c"), job_id=chosen)).id \
            == chosen
        with pytest.raises(IdempotencyConflict):
            await endpoints.submit("ProcessData", DataRequest("d"), job_id=chosen)
    assert endpoints.store.statistics()["jobs"] == 3


async def test_delay_schedules_the_job() -> None:
    app, endpoints = make_app(EndpointsConfig(shutdown_grace=1, run_workers=False))
    async with serving(app):
        job = await endpoints.submit("ProcessData", DataRequest("a"), delay=60)
    assert job.status is JobStatus.SCHEDULED and job.due_at is not None


async def test_wait_returns_the_current_state_at_timeout_and_none_for_no_job() -> None:
    app, endpoints = make_app()
    async with serving(app):
        job = await endpoints.submit("Block")
        now = await endpoints.wait(job.id, 0)
        assert now is not None and not now.is_terminal
        with trio.fail_after(10):
            later = await endpoints.wait(job.id, 0.05)
        assert later is not None and not later.is_terminal
        assert await endpoints.wait(str(uuid.uuid4()), 0) is None
        with pytest.raises(ValueError, match="timeout must be"):
            await endpoints.wait(job.id, -1)


async def test_submit_before_the_app_serves_is_not_accepting() -> None:
    _, endpoints = make_app()
    with pytest.raises(NotAccepting):
        await endpoints.submit("ProcessData", DataRequest("a"))


_TRACED = textwrap.dedent('''
    import json, trio
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from tests.test_inprocess import DataRequest, make_app
    from tests.conftest import serving

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    async def main():
        app, endpoints = make_app()
        async with serving(app):
            with trace.get_tracer("cron").start_as_current_span("cron tick"):
                job = await endpoints.submit("ProcessData", DataRequest("a"))
            with trio.fail_after(10):
                while not (await endpoints.wait(job.id, 5)).is_terminal:
                    pass
        spans = [{"name": s.name, "id": s.context.span_id, "trace": s.context.trace_id,
                  "parent": s.parent.span_id if s.parent else None,
                  "attributes": dict(s.attributes or {})} for s in exporter.get_finished_spans()]
        print(json.dumps({"job": job.id, "spans": spans}))

    trio.run(main)
''')


def test_an_in_process_submit_opens_the_send_span() -> None:
    # A process of its own: an SDK installed here would stay for the rest of the suite.
    run = subprocess.run([sys.executable, "-c", _TRACED], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    spans = {s["name"]: s for s in report["spans"]}
    cron, send, process = spans["cron tick"], spans["send ProcessData"], \
        spans["process ProcessData"]
    assert send["parent"] == cron["id"] and process["parent"] == send["id"]
    assert cron["trace"] == send["trace"] == process["trace"]
    assert send["attributes"]["messaging.message.id"] == report["job"]
