"""Progress and the job's event stream (SSE) over a real Hypercorn, on the memory store."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
from quart_trio import QuartTrio

from asyncendpoints_trio import AsyncContext, AsyncEndpoints, EndpointsConfig, MemoryStore

from ._sse import Event, SseStream, open_stream
from .conftest import client_for

STREAM = {"accept": "text/event-stream"}


class Gates:
    """The test's hold on a running handler: it reports what it is told, then ends."""

    def __init__(self) -> None:
        self.started = trio.Event()
        self.reports: trio.MemorySendChannel[Any]
        self.reports, self._receive = trio.open_memory_channel[Any](100)

    async def run(self, ctx: AsyncContext[Any]) -> dict[str, str]:
        self.started.set()
        async for value in self._receive:
            if value == "done":
                return {"job": ctx.job_id}
            await ctx.report_progress(value)
        raise AssertionError("no done")


def make_app(config: EndpointsConfig | None = None, owners: bool = False
             ) -> tuple[QuartTrio, AsyncEndpoints, Gates]:
    app = QuartTrio(__name__)
    endpoints = AsyncEndpoints(
        app, config=config or EndpointsConfig(shutdown_grace=1, heartbeat_interval=0.05,
                                              lease_ttl=5),
        store=MemoryStore(), owner_of=(lambda a: a.headers.get("x-tenant")) if owners else None)
    gates = Gates()
    endpoints.register("Gated", gates.run)

    @endpoints.handler("Bad")
    async def bad(ctx: AsyncContext[Any]) -> dict[str, str]:
        problems = {}
        for value in (1.5, -0.1, float("nan"), True, "half", [1], {"x": "y" * 5000}, 2,
                      10**400):  # an int too large for a float: still a ValueError
            try:
                await ctx.report_progress(value)
            except (TypeError, ValueError) as exc:
                problems[repr(value)[:20]] = type(exc).__name__
        return problems

    endpoints.map_async_post("Gated", "/gated")
    endpoints.map_async_post("Bad", "/bad")
    endpoints.map_job_details("/jobs/<uuid:job_id>")
    return app, endpoints, gates


async def test_progress_shows_in_the_job_json_and_the_stream_ends_with_the_terminal_event(
) -> None:
    app, endpoints, gates = make_app()
    async with client_for(app) as client:
        submitted = await client.post("/gated", json={})
        url = f"{client.base_url}{submitted.headers['location']}"
        assert submitted.json()["progress"] is None
        with trio.fail_after(10):
            async with open_stream(url) as stream:
                assert stream.status == 200
                assert stream.headers["content-type"] == "text/event-stream"
                assert stream.headers["cache-control"] == "no-cache"
                assert stream.headers["x-accel-buffering"] == "no"
                first = await stream.next()
                assert first is not None
                assert first.event == "status" and first.retry == 1000
                assert first.data["status"] in ("Queued", "InProgress")
                assert first.data["progress"] is None
                seen = [first]
                while seen[-1].data["status"] != "InProgress":
                    seen.append(await _next(stream))
                await gates.reports.send({"done": 4, "total": 10})
                progress = await _next(stream)
                assert progress.event == "progress"
                assert progress.data["progress"] == {"done": 4, "total": 10}
                polled = (await client.get(url)).json()
                assert polled["progress"] == {"done": 4, "total": 10}
                # The last report before return is written with the outcome.
                await gates.reports.send(0.75)
                await gates.reports.send("done")
                rest = await stream.rest()
                seen += [progress, *rest]
    terminal = rest[-1]
    assert terminal.event == "terminal" and terminal.data["status"] == "Completed"
    assert terminal.data["progress"] == 0.75
    assert terminal.data["result"] == {"job": submitted.json()["id"]}
    ids = [event.id for event in seen]
    assert all(isinstance(i, int) for i in ids) and ids == sorted(set(ids)), ids  # type: ignore[type-var]
    assert endpoints.store.statistics()["watches"] == 0


async def _next(stream: SseStream) -> Event:
    event = await stream.next()
    assert event is not None, "the stream closed"
    return event


async def test_bad_progress_values_raise_in_the_handler() -> None:
    app, _, _ = make_app()
    async with client_for(app) as client:
        location = (await client.post("/bad", json={})).headers["location"]
        with trio.fail_after(10):
            done = (await client.get(location, params={"wait": 5})).json()
    assert done["status"] == "Completed" and done["progress"] is None
    assert done["result"] == {"1.5": "ValueError", "-0.1": "ValueError", "nan": "ValueError",
                              "True": "TypeError", "'half'": "TypeError", "[1]": "TypeError",
                              "{'x': 'yyyyyyyyyyyyy": "ValueError", "2": "ValueError",
                              "1" + "0" * 19: "ValueError"}


async def test_a_stream_resumes_from_its_last_event_id() -> None:
    app, _, gates = make_app()
    async with client_for(app) as client:
        url = f"{client.base_url}{(await client.post('/gated', json={})).headers['location']}"
        with trio.fail_after(10):
            await gates.started.wait()
            async with open_stream(url) as stream:
                first = await _next(stream)
                while first.data["status"] != "InProgress":
                    first = await _next(stream)
                await gates.reports.send(0.1)
                while first.data["progress"] != 0.1:
                    first = await _next(stream)
            assert first.id is not None and first.event == "progress"
            # Nothing changed since: no event at once; the next one is the next change.
            async with open_stream(url, {"Last-Event-ID": str(first.id)}) as stream:
                await gates.reports.send(0.2)
                after = await _next(stream)
                assert after.event == "progress" and after.data["progress"] == 0.2
                assert after.id is not None and after.id > first.id
            # Changed since: the current state at once.
            async with open_stream(url, {"Last-Event-ID": str(first.id)}) as stream:
                current = await _next(stream)
                assert current.id == after.id and current.data["progress"] == 0.2
                await gates.reports.send("done")
                terminal = (await stream.rest())[-1]
            assert terminal.event == "terminal"
            # A finished job always gets its terminal event, even resumed from it.
            async with open_stream(url, {"Last-Event-ID": str(terminal.id)}) as stream:
                replay = await stream.rest()
    assert [(e.event, e.id) for e in replay] == [("terminal", terminal.id)]


async def test_keep_alive_comments_on_a_quiet_stream() -> None:
    app, _, gates = make_app(EndpointsConfig(sse_keepalive=0.05, shutdown_grace=1))
    async with client_for(app) as client:
        url = f"{client.base_url}{(await client.post('/gated', json={})).headers['location']}"
        with trio.fail_after(10):
            async with open_stream(url) as stream:
                comments = [await stream.comment() for _ in range(3)]
            await gates.reports.send("done")
    assert set(comments) == {"keep-alive"}


async def test_bad_last_event_id_strangers_and_plain_json() -> None:
    app, _, gates = make_app(owners=True)
    async with client_for(app) as client:
        mine = {"x-tenant": "a"}
        location = (await client.post("/gated", json={}, headers=mine)).headers["location"]
        bad = await client.get(location, headers={**STREAM, **mine, "last-event-id": "x"})
        assert bad.status_code == 400
        assert bad.headers["content-type"] == "application/problem+json"
        assert bad.json()["code"] == "BadLastEventId"
        stranger = await client.get(location, headers={**STREAM, "x-tenant": "b"})
        assert stranger.status_code == 404 and stranger.json()["code"] == "JobNotFound"
        plain = await client.get(location, headers={"accept": "application/json", **mine})
        assert plain.headers["content-type"] == "application/json"
        either = await client.get(location, headers={"accept": "*/*", **mine})
        assert either.headers["content-type"] == "application/json"
        await gates.reports.send("done")


async def test_a_client_leaving_mid_stream_ends_it_at_once_without_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, endpoints, gates = make_app()
    caplog.set_level(logging.WARNING)
    async with client_for(app) as client:
        url = f"{client.base_url}{(await client.post('/gated', json={})).headers['location']}"
        with trio.fail_after(10):
            for _ in range(20):
                async with open_stream(url) as stream:
                    await _next(stream)
                    assert endpoints.store.statistics()["watches"] >= 1
                # The client closed its connection: the server's stream must go too.
                await endpoints.store.feeds.wait_for_count(0)
            await gates.reports.send("done")
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors == [], [r.getMessage() for r in errors]


async def test_ending_the_streams_for_a_shutdown_closes_them_without_a_terminal_event(
) -> None:
    app, endpoints, gates = make_app()
    async with client_for(app) as client:
        url = f"{client.base_url}{(await client.post('/gated', json={})).headers['location']}"
        with trio.fail_after(10):
            async with open_stream(url) as stream:
                first = await _next(stream)
                endpoints.end_event_streams()
                assert await stream.rest() == []  # closed, not finished: no terminal event
            # One opened while the server shuts down shows the job once, then closes.
            async with open_stream(url, {"Last-Event-ID": str(first.id)}) as late:
                assert await late.rest() == []
            async with open_stream(url) as late:
                [only] = await late.rest()
            assert only.event == "status" and only.data["status"] in ("Queued", "InProgress")
            await gates.reports.send("done")
