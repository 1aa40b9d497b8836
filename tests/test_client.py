"""The Python client (asyncendpoints_trio.client) against a real Hypercorn on loopback: under
Trio, under asyncio and from sync code; typed errors for problems and for failed jobs; the
retries of a submit that meets a stopped Redis make exactly one job."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
import trio
from quart import Response, request
from quart_trio import QuartTrio

from asyncendpoints_trio import (
    AsyncContext,
    AsyncEndpoints,
    EndpointsConfig,
    NonRetryableError,
    Problem,
    RetryPolicy,
    SubmitContext,
    job_to_json,
)
from asyncendpoints_trio.client import (
    AsyncClient,
    Client,
    ClientProblemError,
    JobCanceled,
    JobFailed,
    ProblemError,
    Retry,
    ServerProblemError,
    SSEDecoder,
    UnexpectedResponse,
    WaitTimeout,
)
from asyncendpoints_trio.client import _async as async_module
from asyncendpoints_trio.client._core import (
    STREAM_IDLE_TIMEOUT,
    parse_retry_after,
    reconnect_delay,
    stream_timeout,
)

from ._redis_server import RedisServer, redis_server_binary
from .conftest import serving
from .faultproxy import FaultProxy
from .test_http import Order, Receipt


@dataclass
class Kit:
    app: QuartTrio
    endpoints: AsyncEndpoints
    gate: trio.Event
    ran: list[str]
    busy_answers: list[int]  # how many 503s /busy has left to give
    seen_event_ids: list[str | None]
    hold: trio.Event  # /held-orders submits wait on it in their pre-queue hook
    holding: trio.Event  # set once a submit waits there


def make_kit(config: EndpointsConfig | None = None) -> Kit:
    app = QuartTrio(__name__)
    endpoints = AsyncEndpoints(app, config=config or EndpointsConfig(shutdown_grace=1))
    kit = Kit(app, endpoints, trio.Event(), [], [0], [], trio.Event(), trio.Event())

    @endpoints.handler("Order", retry=RetryPolicy(max_retries=0))
    async def order(ctx: AsyncContext[Order]) -> Receipt:
        kit.ran.append(ctx.job_id)
        return Receipt(ctx.request.item, ctx.request.quantity * 3)

    @endpoints.handler("Fail", retry=RetryPolicy(max_retries=0))
    async def fail(ctx: AsyncContext[Any]) -> None:
        raise NonRetryableError("out of stock")

    @endpoints.handler("Gate")
    async def gated(ctx: AsyncContext[Any]) -> str:
        await kit.gate.wait()
        return "opened"

    @endpoints.handler("Quiet")
    async def quiet(ctx: AsyncContext[Any]) -> str:
        # The job's own behaviour, not a synchronisation: it stays silent a while (longer
        # than the tests' small read timeouts) before it finishes.
        await trio.sleep(1.5)
        return "quiet"

    @endpoints.handler("Halfway")
    async def halfway(ctx: AsyncContext[Any]) -> str:
        await ctx.report_progress({"done": 1, "total": 2})
        await kit.gate.wait()
        return "done"

    def busy(ctx: SubmitContext[Order]) -> Any:
        if kit.busy_answers[0] > 0:
            kit.busy_answers[0] -= 1
            raise Problem(503, detail="busy", code="Busy", headers={"Retry-After": "7"})
        return None

    async def held(ctx: SubmitContext[Order]) -> Any:
        kit.holding.set()
        await kit.hold.wait()
        return None

    @app.route("/instant", methods=["POST"])
    async def instant() -> Response:
        # What a Prefer: wait submit answers for a fast job: 200 and the final job.
        body = {"id": "00000000-0000-4000-8000-000000000001", "status": "Completed",
                "result": 42}
        return Response(orjson.dumps(body), status=200, content_type="application/json",
                        headers={"Location": "/jobs/00000000-0000-4000-8000-000000000001"})

    @app.route("/html-error", methods=["POST"])
    async def html_error() -> Response:
        return Response("<h1>Bad Gateway</h1>", status=502, content_type="text/html")

    @app.route("/plain-jobs/<uuid:job_id>", methods=["GET"])
    async def plain(job_id: Any) -> Response:
        # A job route as a service without event streams has it: JSON, whatever the Accept.
        wait = float(request.args.get("wait", "0"))
        key = str(job_id)
        job = await (endpoints.store.wait_for_terminal(key, wait) if wait
                     else endpoints.store.get(key))
        assert job is not None
        return Response(job_to_json(job), content_type="application/json")

    @app.route("/sse/<uuid:job_id>", methods=["GET"])
    async def sse(job_id: Any) -> Any:
        # A stand-in event stream: the current job, then (on the reconnect it asks for by
        # closing early) the final one.
        key = str(job_id)
        if "text/event-stream" not in request.headers.get("accept", ""):
            job = await endpoints.store.get(key)
            assert job is not None
            return Response(job_to_json(job), content_type="application/json")
        last = request.headers.get("last-event-id")
        kit.seen_event_ids.append(last)

        async def events() -> AsyncIterator[bytes]:
            yield b": keep-alive\n\n"
            if last is None:
                job = await endpoints.store.get(key)
                assert job is not None
                yield b"retry: 250\nid: 1\nevent: status\ndata: " + job_to_json(job) + \
                    b"\n\n"
                return  # closed before the terminal event
            final = await endpoints.store.wait_for_terminal(key, 10)
            assert final is not None
            yield b"id: 2\nevent: status\ndata: " + job_to_json(final) + b"\n\n"

        return events(), 200, {"content-type": "text/event-stream"}

    endpoints.map_async_post("Order", "/orders")
    endpoints.map_async_post("Order", "/busy-orders", hook=busy)
    endpoints.map_async_post("Order", "/held-orders", hook=held)
    endpoints.map_async_post("Fail", "/fail")
    endpoints.map_async_post("Gate", "/gate")
    endpoints.map_async_post("Halfway", "/halfway")
    endpoints.map_async_post("Quiet", "/quiet")
    endpoints.map_job_details("/jobs/<uuid:job_id>")
    return kit


@asynccontextmanager
async def client_of(kit: Kit, **options: Any) -> AsyncIterator[tuple[AsyncClient, str]]:
    async with serving(kit.app) as url, AsyncClient(url, timeout=10, **options) as client:
        yield client, url


def job_gets(kit: Kit) -> list[str]:
    """Each GET of a job the server sees from now on: ``stream`` (it asked for an event
    stream) or ``json`` (a read or a long-poll)."""
    gets: list[str] = []

    @kit.app.before_request
    async def count() -> None:
        if request.method == "GET":
            wants = "text/event-stream" in request.headers.get("accept", "")
            gets.append("stream" if wants else "json")

    return gets


def recorded_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The client's retry delays, recorded; each really waits a moment only."""
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)
        await trio.sleep(0.01)

    monkeypatch.setattr(async_module, "_sleep", sleep)
    return delays


# -- Trio ---------------------------------------------------------------------------------


async def test_submit_wait_result_under_trio() -> None:
    kit = make_kit()
    async with client_of(kit) as (client, url):
        job = await client.submit("/orders", json={"item": "tea", "quantity": 2})
        assert job.status == "Queued" and job.job["name"] == "Order"
        assert job.location == f"{url}/jobs/{job.id}"
        assert job.idempotency_key
        with trio.fail_after(10):
            final = await job.wait(timeout=5)
            assert final["status"] == "Completed" and job.done
            assert await job.result() == {"item": "tea", "total": 6}
            # The key is the job's: the same key again is the same job, not another.
            again = await client.submit("/orders", json={"item": "tea", "quantity": 2},
                                        idempotency_key=job.idempotency_key)
            other = await client.submit("/orders", json={"item": "tea", "quantity": 2})
            assert await other.result(timeout=5) == {"item": "tea", "total": 6}
            # A handle made from a Location reads the job.
            found = await client.job(f"/jobs/{job.id}")
    assert again.id == job.id and again.status == "Completed"
    assert other.id != job.id
    assert found.id == job.id and found.job["result"] == {"item": "tea", "total": 6}
    assert kit.ran == [job.id, other.id]


async def test_a_failed_job_raises_job_failed_with_its_error() -> None:
    kit = make_kit()
    async with client_of(kit) as (client, _):
        job = await client.submit("/fail")
        with trio.fail_after(10), pytest.raises(JobFailed) as failed:
            await job.result(timeout=5)
    assert failed.value.code == "HandlerError" and failed.value.message == "out of stock"
    assert failed.value.error["exception"]["type"] == "asyncendpoints_trio.NonRetryableError"
    assert failed.value.job["status"] == "Failed" and failed.value.job_id == job.id


async def test_cancel_then_result_raises_job_canceled() -> None:
    kit = make_kit()
    async with client_of(kit) as (client, _):
        job = await client.submit("/gate")
        with trio.fail_after(10):
            answer = await job.cancel()
            assert answer["status"] in ("Canceled", "InProgress")
            with pytest.raises(JobCanceled) as canceled:
                await job.result(timeout=5)
            # A final job cannot be canceled: the service's 409, typed.
            with pytest.raises(ClientProblemError) as finished:
                await job.cancel()
    assert canceled.value.job["status"] == "Canceled"
    assert finished.value.status == 409 and finished.value.code == "JobFinished"
    assert finished.value.extensions == {"jobStatus": "Canceled"}


async def test_wait_times_out_with_the_job_as_it_stands() -> None:
    kit = make_kit()
    async with client_of(kit, poll_wait=0.2) as (client, _):
        job = await client.submit("/gate")
        with trio.fail_after(10), pytest.raises(WaitTimeout) as timed_out:
            await job.wait(timeout=0.3)
        kit.gate.set()
        with trio.fail_after(10):
            assert await job.result(timeout=5) == "opened"
    assert timed_out.value.job["status"] in ("Queued", "InProgress")
    assert isinstance(timed_out.value, TimeoutError)


async def test_problem_answers_raise_typed_errors() -> None:
    kit = make_kit()
    async with client_of(kit) as (client, _):
        with pytest.raises(ClientProblemError) as invalid:
            await client.submit("/orders", json={"item": "tea", "quantity": "lots"})
        with pytest.raises(ClientProblemError) as unsupported:
            await client.submit("/orders", content=b"tea", headers={"content-type": "text/plain"})
        with pytest.raises(ClientProblemError) as missing:
            await client.job("/jobs/00000000-0000-4000-8000-000000000000")
        with pytest.raises(UnexpectedResponse) as html:
            await client.submit("/html-error")
    assert invalid.value.status == 422 and invalid.value.code == "ValidationFailed"
    assert invalid.value.title == "Unprocessable Entity" and invalid.value.type == "about:blank"
    assert invalid.value.detail == "the request has 1 invalid field(s)"
    assert invalid.value.extensions["errors"][0]["field"] == "quantity"
    assert unsupported.value.status == 415 and unsupported.value.code == "UnsupportedMediaType"
    assert missing.value.status == 404 and missing.value.code == "JobNotFound"
    assert isinstance(missing.value, ProblemError)
    assert html.value.status == 502


async def test_a_200_submit_answer_is_a_finished_job() -> None:
    kit = make_kit()
    async with client_of(kit) as (client, _):
        job = await client.submit("/instant")
        # No request is needed to learn the result: the answer had it.
        assert job.done and await job.result(timeout=0) == 42


async def test_events_from_long_polls_where_the_service_streams_none() -> None:
    kit = make_kit()
    async with client_of(kit, events_poll=0.2) as (client, _):
        submitted = await client.submit("/gate")
        job = await client.job(f"/plain-jobs/{submitted.id}")
        statuses: list[str] = []
        with trio.fail_after(10):
            async with aclosing(job.events()) as events:
                async for event in events:
                    statuses.append(event.status)
                    if event.status == "InProgress" or len(statuses) == 1:
                        kit.gate.set()
    # The first event is the state the job was in; each later one a change.
    assert statuses[0] in ("Queued", "InProgress") and statuses[-1] == "Completed"
    assert all(a != b for a, b in itertools.pairwise(statuses))
    assert client._streams_offered is False  # asked once, then long-polled


async def test_the_services_own_event_stream_gives_status_and_progress() -> None:
    kit = make_kit()
    async with client_of(kit) as (client, _):
        job = await client.submit("/halfway")
        seen: list[tuple[str, str, Any]] = []
        with trio.fail_after(10):
            async with aclosing(job.events()) as events:
                async for event in events:
                    seen.append((event.kind, event.status, event.progress))
                    if event.progress is not None:
                        kit.gate.set()
            final = await job.wait(timeout=5)
    assert client._streams_offered is True  # the job route streamed
    assert ("progress", "InProgress", {"done": 1, "total": 2}) in seen \
        or ("status", "InProgress", {"done": 1, "total": 2}) in seen
    assert seen[-1][1] == "Completed" and final["result"] == "done"
    assert final["progress"] == {"done": 1, "total": 2}  # kept past the end


async def test_an_event_stream_is_followed_and_resumed_with_last_event_id() -> None:
    kit = make_kit()
    async with client_of(kit) as (client, _):
        job = await client.submit("/gate")
        handle = await client.job(f"/sse/{job.id}")
        with trio.fail_after(10):
            async with aclosing(handle.events()) as events:
                seen = []
                async for event in events:
                    seen.append((event.status, event.event_id))
                    kit.gate.set()
    assert seen[0][1] == "1" and seen[-1] == ("Completed", "2")
    assert kit.seen_event_ids == [None, "1"]
    assert client._streams_offered is True


async def test_a_stream_reconnects_after_the_retry_the_stream_asked_for(
        monkeypatch: pytest.MonkeyPatch) -> None:
    delays = recorded_sleeps(monkeypatch)
    kit = make_kit()
    async with client_of(kit) as (client, _):
        job = await client.submit("/gate")
        handle = await client.job(f"/sse/{job.id}")
        statuses = []
        with trio.fail_after(10):
            async with aclosing(handle.events()) as events:
                async for event in events:
                    statuses.append(event.status)
                    kit.gate.set()
    assert statuses[-1] == "Completed" and kit.seen_event_ids == [None, "1"]
    assert delays == [0.25]  # the stream's "retry: 250", in milliseconds


async def test_a_quiet_job_stays_on_one_stream_past_a_short_read_timeout() -> None:
    # The httpx client's read timeout (0.5 s) is shorter than the time the job is silent
    # (1.5 s) and than the service's keep-alive interval (1 s): a stream is quiet on
    # purpose, so it is neither cut nor given up for long-polls.
    kit = make_kit(EndpointsConfig(shutdown_grace=1, sse_keepalive=1.0))
    gets = job_gets(kit)
    async with serving(kit.app) as url, AsyncClient(
            url, timeout=httpx.Timeout(5, read=0.5), retry=Retry(attempts=2)) as client:
        job = await client.submit("/quiet")
        with trio.fail_after(10):
            final = await job.wait(timeout=8)
        assert final["status"] == "Completed" and final["result"] == "quiet"
        assert client._streams_offered is True
        assert gets == ["stream"]  # one stream, never reopened, no long-poll
        gets.clear()
        job = await client.submit("/quiet")
        with trio.fail_after(10):
            async with aclosing(job.events()) as events:
                seen = [event.status async for event in events]
    assert seen[-1] == "Completed" and gets == ["stream"]


async def test_503_is_retried_as_retry_after_says_within_the_cap(
        monkeypatch: pytest.MonkeyPatch) -> None:
    delays = recorded_sleeps(monkeypatch)
    kit = make_kit()
    async with client_of(kit, retry=Retry(attempts=5, max_delay=10.0, total=30)) as (client, _):
        kit.busy_answers[0] = 2
        with trio.fail_after(10):
            job = await client.submit("/busy-orders", json={"item": "tea", "quantity": 1})
            assert await job.result(timeout=5) == {"item": "tea", "total": 3}
        # Each retry waited as long as the 503's Retry-After: 7 asked, never less.
        assert delays == [7.0, 7.0]

        async def submit_with(retry: Retry) -> ServerProblemError:
            with pytest.raises(ServerProblemError) as busy:
                await AsyncClient(http=client.http, retry=retry).submit(
                    "/busy-orders", json={"item": "tea", "quantity": 1})
            return busy.value

        # A Retry-After longer than this client waits (max_delay), or past its total
        # budget: no retry at all, the 503 itself is raised.
        kit.busy_answers[0] = 1
        busy = await submit_with(Retry(max_delay=5))
        kit.busy_answers[0] = 1
        await submit_with(Retry(total=5))
        # And attempts run out: two tries, then the 503.
        kit.busy_answers[0] = 3
        await submit_with(Retry(attempts=2))
    assert busy.status == 503 and busy.code == "Busy" and busy.retry_after == "7"
    assert delays == [7.0, 7.0, 7.0]
    assert kit.busy_answers == [1]


async def test_a_submit_whose_key_is_still_in_flight_is_retried_into_the_same_job(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The draft's 409 "still being processed" comes with Retry-After: the client's own
    # earlier try may be the one in flight, so the client tries again, and the try after
    # the first request was answered is its replay.
    kit = make_kit()
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)
        kit.hold.set()  # the first request is answered while the second waits to retry
        await trio.lowlevel.checkpoint()

    monkeypatch.setattr(async_module, "_sleep", sleep)
    body = {"item": "tea", "quantity": 1}
    async with client_of(kit) as (client, _):
        first: list[Any] = []

        async def submit_first() -> None:
            first.append(await client.submit("/held-orders", json=body, idempotency_key="k"))

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(submit_first)
                await kit.holding.wait()
                second = await client.submit("/held-orders", json=body, idempotency_key="k")
    assert delays and delays[0] == 1.0  # the 409's Retry-After
    assert second.id == first[0].id
    assert len(kit.ran) <= 1


async def test_an_idempotency_key_among_the_headers_is_the_key() -> None:
    kit = make_kit()
    async with client_of(kit) as (client, _):
        first = await client.submit("/orders", json={"item": "tea", "quantity": 1},
                                    headers={"idempotency-key": "mine"})
        second = await client.submit("/orders", json={"item": "tea", "quantity": 1},
                                     idempotency_key="mine")
    assert first.idempotency_key == second.idempotency_key == "mine"
    assert first.id == second.id


async def test_connection_errors_are_retried_then_raised(
        monkeypatch: pytest.MonkeyPatch) -> None:
    delays = recorded_sleeps(monkeypatch)
    # A port nobody listens on: every try is refused.
    kit = make_kit()
    async with serving(kit.app) as url:
        pass
    async with AsyncClient(url, retry=Retry(attempts=3, backoff=0.5)) as client:
        with pytest.raises(httpx.ConnectError):
            await client.submit("/orders", json={"item": "tea", "quantity": 1})
    assert delays == [0.5, 1.0]


async def test_a_submit_whose_answer_was_lost_is_retried_as_the_same_job(
        monkeypatch: pytest.MonkeyPatch) -> None:
    delays = recorded_sleeps(monkeypatch)
    kit = make_kit()
    async with serving(kit.app) as url, trio.open_nursery() as nursery:
        port = int(url.rsplit(":", 1)[1])
        proxy = FaultProxy(("127.0.0.1", port))
        await nursery.start(proxy.run)
        # The service stores the job, then its answer is cut before a byte of it arrives:
        # the client cannot tell this from a request that never got there.
        proxy.cut_reply_after(0)
        async with AsyncClient(f"http://127.0.0.1:{proxy.port}", timeout=10) as client:
            with trio.fail_after(10):
                job = await client.submit("/orders", json={"item": "tea", "quantity": 2})
                assert await job.result(timeout=5) == {"item": "tea", "total": 6}
        assert proxy.statistics().cut == 1
        nursery.cancel_scope.cancel()
    assert len(delays) == 1
    # The retry carried the same Idempotency-Key: the stored job, not a second one.
    assert kit.ran == [job.id]


@pytest.mark.skipif(redis_server_binary() is None, reason="redis-server is not installed")
async def test_a_submit_that_meets_a_stopped_redis_succeeds_on_retry_as_one_job(
        monkeypatch: pytest.MonkeyPatch) -> None:
    waiting = trio.Event()
    resume = trio.Event()
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)
        waiting.set()
        await resume.wait()  # until Redis is back

    monkeypatch.setattr(async_module, "_sleep", sleep)
    with RedisServer() as server:
        kit = make_kit(EndpointsConfig(redis_url=server.url, shutdown_grace=1,
                                       restart_backoff_max=0.2))
        async with client_of(kit, retry=Retry(attempts=50, total=60)) as (client, _):
            await trio.to_thread.run_sync(server.stop)
            async with trio.open_nursery() as nursery:
                submitted: list[Any] = []

                async def submit() -> None:
                    submitted.append(await client.submit(
                        "/orders", json={"item": "tea", "quantity": 2},
                        idempotency_key="only-once"))

                nursery.start_soon(submit)
                with trio.fail_after(20):
                    await waiting.wait()
                await trio.to_thread.run_sync(server.start)  # the same port
                monkeypatch.setattr(async_module, "_sleep", trio.sleep)
                resume.set()
            job = submitted[0]
            with trio.fail_after(20):
                assert await job.result(timeout=15) == {"item": "tea", "total": 6}
                replay = await client.submit("/orders", json={"item": "tea", "quantity": 2},
                                             idempotency_key="only-once")
                counts = await kit.endpoints.store.counts()
    assert delays and delays[0] == 1.0  # the 503's Retry-After
    assert replay.id == job.id
    assert kit.ran == [job.id]
    assert counts == {"Queued": 0, "Scheduled": 0, "InProgress": 0}


# -- asyncio and sync -----------------------------------------------------------------------


def run_asyncio(main: Callable[[], Any]) -> Any:
    return asyncio.run(main())


async def test_the_async_client_under_asyncio() -> None:
    kit = make_kit()
    async with serving(kit.app) as url:

        async def main() -> tuple[Any, str, str]:
            async with AsyncClient(url, timeout=10) as client:
                job = await client.submit("/orders", json={"item": "tea", "quantity": 2})
                result = await job.result(timeout=5)
                failing = await client.submit("/fail")
                try:
                    await failing.result(timeout=5)
                except JobFailed as exc:
                    failed = exc.message or ""
                gated = await client.submit("/gate")
                await gated.cancel()
                try:
                    await gated.result(timeout=5)
                except JobCanceled:
                    canceled = "canceled"
                return result, failed, canceled

        with trio.fail_after(20):
            answers = await trio.to_thread.run_sync(run_asyncio, main)
    assert answers == ({"item": "tea", "total": 6}, "out of stock", "canceled")


def sync_session(url: str, gate: Callable[[], None]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    with httpx.Client(base_url=url, timeout=10) as http:
        client = Client(http=http, events_poll=0.2)
        job = client.submit("/orders", json={"item": "tea", "quantity": 2})
        found["result"] = job.result(timeout=5)
        try:
            client.submit("/fail").result(timeout=5)
        except JobFailed as exc:
            found["failed"] = exc.code
        try:
            client.submit("/orders", json={})
        except ClientProblemError as exc:
            found["problem"] = (exc.status, exc.code)
        gated = client.submit("/gate")
        statuses = []
        for event in gated.events():
            statuses.append(event.status)
            gate()
        found["statuses"] = statuses
        found["instant"] = client.submit("/instant").result()
        blocked = client.submit("/orders", json={"item": "tea", "quantity": 1},
                                headers={"X-Not-Before": "600"})
        assert blocked.cancel()["status"] == "Canceled"
        try:
            blocked.result(timeout=5)
        except JobCanceled:
            found["canceled"] = True
        later = client.submit("/orders", json={"item": "a", "quantity": 1})
        streamed = client.job(f"/sse/{later.id}")
        found["streamed"] = streamed.result(timeout=5)
    return found


def quiet_session(url: str, gets: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    # A read timeout shorter than the job is silent and than the service's keep-alive.
    with Client(url, timeout=httpx.Timeout(5, read=0.5), retry=Retry(attempts=2)) as client:
        found["waited"] = client.submit("/quiet").wait(timeout=8)["status"]
        found["wait_gets"], gets[:] = list(gets), []
        found["events"] = [event.status for event in client.submit("/quiet").events()]
        found["events_gets"] = list(gets)
        found["streams_offered"] = client._streams_offered
    return found


async def test_the_sync_client() -> None:
    kit = make_kit()
    async with serving(kit.app) as url:
        token = trio.lowlevel.current_trio_token()

        def gate() -> None:
            trio.from_thread.run_sync(kit.gate.set, trio_token=token)

        with trio.fail_after(20):
            found = await trio.to_thread.run_sync(sync_session, url, gate)
    assert found["result"] == {"item": "tea", "total": 6}
    assert found["failed"] == "HandlerError"
    assert found["problem"] == (422, "ValidationFailed")
    assert found["statuses"][-1] == "Completed"
    assert found["instant"] == 42 and found["canceled"] is True
    assert found["streamed"] == {"item": "a", "total": 3}


async def test_the_sync_client_stays_on_one_stream_past_a_short_read_timeout() -> None:
    kit = make_kit(EndpointsConfig(shutdown_grace=1, sse_keepalive=1.0))
    gets = job_gets(kit)
    async with serving(kit.app) as url:
        with trio.fail_after(20):
            found = await trio.to_thread.run_sync(quiet_session, url, gets)
    assert found == {"waited": "Completed", "wait_gets": ["stream"],
                     "events": found["events"], "events_gets": ["stream"],
                     "streams_offered": True}
    assert found["events"][-1] == "Completed"


# -- the event stream decoder -----------------------------------------------------------


def test_the_sse_decoder_follows_the_format() -> None:
    decoder = SSEDecoder()
    lines = [": a comment", "id: 7", "event: progress", "data: {\"a\":", "data: 1}",
             "retry: 1500", "", "", "data:no space", "unknown: field", "", "id", "data: x",
             ""]
    events = [event for line in lines if (event := decoder.feed(line)) is not None]
    assert [(e.event, e.data, e.id, e.retry) for e in events] == [
        ("progress", "{\"a\":\n1}", "7", 1500),
        ("message", "no space", "7", None),
        ("message", "x", "", None),  # an empty id resets the last event id
    ]
    assert json.loads(events[0].data) == {"a": 1}


@pytest.mark.parametrize("value", ["²", "١٢", "1.5", "-1", "+1", " ", "", "1 000", "x"])
def test_the_sse_decoder_ignores_a_retry_that_is_not_ascii_digits(value: str) -> None:
    # "²" and "١٢" are str.isdigit(), yet not digits the format knows (int() refuses "²").
    decoder = SSEDecoder()
    assert decoder.feed("retry: 250") is None
    assert decoder.feed(f"retry: {value}") is None
    event = decoder.feed("data: x") or decoder.feed("")
    assert event is not None and event.retry == 250  # the valid one stands
    assert decoder.reconnection_time == 250


def test_the_sse_decoder_keeps_a_retry_sent_without_an_event() -> None:
    decoder = SSEDecoder()
    for line in ["retry: 3000", ""]:
        assert decoder.feed(line) is None
    assert decoder.reconnection_time == 3000


@pytest.mark.parametrize("value", ["²", "١٢", "1.5", "-1", "", "soon"])
def test_retry_after_that_is_not_ascii_digits_nor_a_date_is_ignored(value: str) -> None:
    assert parse_retry_after(value) is None


def test_retry_after_reads_seconds_and_dates() -> None:
    assert parse_retry_after(" 7 ") == 7.0 and parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a past date: now


def test_a_reconnect_waits_as_the_stream_asked_and_backs_off_on_empty_streams() -> None:
    retry = Retry(backoff=0.25, max_delay=4.0)
    assert reconnect_delay(retry, 1500, 0) == 1.5  # "retry: 1500" is milliseconds
    assert reconnect_delay(retry, 0, 0) == 0.0
    assert reconnect_delay(retry, None, 0) == 0.25  # none asked: the client's backoff
    assert [reconnect_delay(retry, 1000, n) for n in (1, 2, 3)] == [2.0, 4.0, 4.0]
    assert reconnect_delay(retry, 6000, 3) == 6.0  # never sooner than the stream asked


def test_a_streams_timeouts_are_the_clients_with_a_read_timeout_of_its_own() -> None:
    mine = httpx.Timeout(3, read=0.5, pool=7)
    # Longer than any keep-alive interval, and still a bound: a dead connection is reopened.
    assert stream_timeout(mine) == httpx.Timeout(connect=3, read=STREAM_IDLE_TIMEOUT,
                                                 write=3, pool=7)
    assert STREAM_IDLE_TIMEOUT == 60.0
    assert stream_timeout(mine, 2.5).read == 2.5  # a sync wait's time left
    assert stream_timeout(mine, 500).read == STREAM_IDLE_TIMEOUT
