"""The admin API over HTTP, against a real Hypercorn with a real client, on the memory store
(tests/redis/test_redis_admin.py runs the same against Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import trio
from quart import Request, Response
from quart_trio import QuartTrio

from asyncendpoints_trio import (
    AsyncContext,
    AsyncEndpoints,
    EndpointsConfig,
    JobStore,
    MemoryStore,
    Problem,
    RetryPolicy,
)

from ._sse import open_stream
from .conftest import client_for
from .test_http import assert_problem, finished

TOKEN = "s3cret-admin-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@dataclass
class Order:
    n: int


def bearer(request: Request) -> bool | Response:
    given = request.headers.get("authorization", "")
    if not given:
        return Problem(401, detail="a bearer token is needed", code="Unauthorized",
                       headers={"WWW-Authenticate": "Bearer"}).to_response()
    return given == f"Bearer {TOKEN}"


def make_admin_app(store: JobStore, *, show_payloads: bool = False,
                   config: EndpointsConfig | None = None
                   ) -> tuple[QuartTrio, AsyncEndpoints, dict[str, trio.Event]]:
    app = QuartTrio(__name__)
    endpoints = AsyncEndpoints(app, store=store,
                               config=config or EndpointsConfig(shutdown_grace=1))
    gates: dict[str, trio.Event] = {}

    @endpoints.handler("Ship", retry=RetryPolicy(max_retries=0))
    async def ship(ctx: AsyncContext[Order]) -> int:
        if ctx.request.n < 0:
            raise ValueError(f"cannot ship {ctx.request.n}")
        if ctx.request.n >= 1000:  # held until the test lets it go
            gate = gates.setdefault(ctx.job_id, trio.Event())
            await gate.wait()
        return ctx.request.n * 2

    @endpoints.handler("Pack", retry=RetryPolicy(max_retries=0))
    async def pack(ctx: AsyncContext[Order]) -> int:
        return ctx.request.n

    endpoints.map_async_post("Ship", "/ship")
    endpoints.map_async_post("Pack", "/pack")
    endpoints.map_job_details()
    endpoints.map_admin("/admin", authorize=bearer,
                        actor=lambda request: request.headers.get("x-operator"),
                        show_payloads=show_payloads)
    return app, endpoints, gates


StoreFactory = Callable[[], JobStore]


@pytest.fixture
def make_store() -> StoreFactory:
    """What the app runs on: the memory store here; tests/redis/test_redis_admin.py runs
    these tests again with a Redis store."""
    return MemoryStore


@asynccontextmanager
async def admin_client(make_store: StoreFactory, **kwargs: Any
                       ) -> AsyncIterator[tuple[httpx.AsyncClient, AsyncEndpoints,
                                                dict[str, trio.Event]]]:
    app, endpoints, gates = make_admin_app(make_store(), **kwargs)
    async with client_for(app) as client:
        yield client, endpoints, gates


async def submit(client: httpx.AsyncClient, rule: str, n: int) -> dict[str, Any]:
    made = await client.post(rule, json={"n": n})
    assert made.status_code == 202, made.text
    body: dict[str, Any] = made.json()
    return body


async def until(check: Callable[[], Any], seconds: float = 10) -> Any:
    """Poll ``check`` (async) until it returns something truthy, within ``seconds``."""
    with trio.fail_after(seconds):
        while True:
            value = await check()
            if value:
                return value
            await trio.sleep(0.02)


def test_map_admin_needs_an_authorize_hook() -> None:
    app = QuartTrio(__name__)
    endpoints = AsyncEndpoints(app)
    with pytest.raises(TypeError):
        endpoints.map_admin("/admin")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        endpoints.map_admin("/admin", authorize=None)  # type: ignore[arg-type]


async def test_the_hook_refuses_and_admits_every_route(make_store: StoreFactory) -> None:
    async with admin_client(make_store) as (client, _, _):
        job = await submit(client, "/pack", 1)
        routes = [("GET", "/admin/jobs"), ("GET", f"/admin/jobs/{job['id']}"),
                  ("POST", f"/admin/jobs/{job['id']}/retry"),
                  ("DELETE", f"/admin/jobs/{job['id']}"), ("GET", "/admin/instances"),
                  ("GET", "/admin/stats")]
        for method, path in routes:
            anonymous = await client.request(method, path)
            assert_problem(anonymous, 401, "Unauthorized")
            assert anonymous.headers["www-authenticate"] == "Bearer"
            wrong = await client.request(method, path, headers={"authorization": "Bearer no"})
            assert_problem(wrong, 403, "Forbidden")
        # Nothing was changed by the refused requests.
        assert (await finished(client, f"/jobs/{job['id']}"))["status"] == "Completed"
        for method, path in routes[:2] + routes[4:]:
            admitted = await client.request(method, path, headers=AUTH)
            assert admitted.status_code == 200, (path, admitted.text)
            assert admitted.headers["content-type"] == "application/json"
        unknown = await client.get("/admin/nothing-here", headers=AUTH)
        assert_problem(unknown, 404)


async def test_list_filters_pages_and_refuses_bad_queries(make_store: StoreFactory) -> None:
    async with admin_client(make_store) as (client, _, _):
        ids = [(await submit(client, "/ship" if i % 2 else "/pack", -i if i % 3 == 0 else i)
                )["id"] for i in range(1, 13)]
        for job_id in ids:
            await finished(client, f"/jobs/{job_id}")
        every = (await client.get("/admin/jobs", headers=AUTH, params={"limit": 200})).json()
        assert [j["id"] for j in every["jobs"]] == ids[::-1] and every["nextCursor"] is None
        failed = (await client.get("/admin/jobs", headers=AUTH,
                                   params={"status": "Failed"})).json()["jobs"]
        assert {j["id"] for j in failed} == {ids[i - 1] for i in (3, 9)}  # Ship, n < 0
        both = (await client.get("/admin/jobs?status=Failed,Completed&name=Ship",
                                 headers=AUTH)).json()["jobs"]
        assert {j["name"] for j in both} == {"Ship"} and len(both) == 6
        repeated = (await client.get("/admin/jobs?status=Failed&status=Completed&name=Ship",
                                     headers=AUTH)).json()["jobs"]
        assert repeated == both
        seen: list[str] = []
        params: dict[str, Any] = {"limit": 5, "name": "Pack"}
        while True:
            page = (await client.get("/admin/jobs", headers=AUTH, params=params)).json()
            seen += [j["id"] for j in page["jobs"]]
            if page["nextCursor"] is None:
                break
            params["cursor"] = page["nextCursor"]
        assert seen == [i for n, i in enumerate(ids, 1) if n % 2 == 0][::-1]
        first = (await client.get("/admin/jobs", headers=AUTH, params={"limit": 2})).json()
        for bad in ({"status": "Done"}, {"limit": "0"}, {"limit": "201"}, {"limit": "x"},
                    {"cursor": "not-a-cursor"}, {"cursor": first["nextCursor"],
                                                 "status": "Failed"},
                    {"cursor": first["nextCursor"][:-2] + "AA"}):
            answer = await client.get("/admin/jobs", headers=AUTH, params=bad)
            assert_problem(answer, 400)


async def test_detail_retry_and_cancel(make_store: StoreFactory) -> None:
    async with admin_client(make_store) as (client, endpoints, gates):
        bad = await submit(client, "/ship", -5)
        await finished(client, f"/jobs/{bad['id']}")
        detail = (await client.get(f"/admin/jobs/{bad['id']}", headers=AUTH)).json()
        assert detail["status"] == "Failed"
        assert detail["error"]["exception"]["stackTrace"]  # operators see the trace
        assert "payload" not in detail["admin"]  # not without show_payloads
        [attempt] = detail["admin"]["attempts"]
        assert attempt["outcome"] == "Failed" and "cannot ship" in attempt["errorMessage"]
        assert detail["admin"]["fencingToken"] == 1 and detail["admin"]["audit"] == []
        retried = await client.post(f"/admin/jobs/{bad['id']}/retry",
                                    headers={**AUTH, "x-operator": "alice"})
        assert retried.status_code == 200
        body = retried.json()
        assert body["status"] in ("Queued", "InProgress", "Failed")
        assert body["retryCount"] == 0
        [note] = body["admin"]["audit"]
        assert note["action"] == "retry" and note["by"] == "alice" and note["at"]
        again = await finished(client, f"/jobs/{bad['id']}")  # it ran again, and failed
        assert again["status"] == "Failed"
        attempts = (await client.get(f"/admin/jobs/{bad['id']}",
                                     headers=AUTH)).json()["admin"]["attempts"]
        assert len(attempts) == 2
        good = await submit(client, "/pack", 3)
        await finished(client, f"/jobs/{good['id']}")
        refused = await client.post(f"/admin/jobs/{good['id']}/retry", headers=AUTH)
        assert assert_problem(refused, 409, "JobNotRetryable")["jobStatus"] == "Completed"
        assert_problem(await client.post("/admin/jobs/00000000-0000-4000-8000-000000000000"
                                         "/retry", headers=AUTH), 404, "JobNotFound")
        assert_problem(await client.get("/admin/jobs/nope", headers=AUTH), 404, "JobNotFound")
        # A running job: cancel is requested, audited, and reaches the handler.
        slow = await submit(client, "/ship", 1000)

        async def running() -> Any:
            got = (await client.get(f"/admin/jobs/{slow['id']}", headers=AUTH)).json()
            return got if got["status"] == "InProgress" else None

        live = await until(running)
        assert live["admin"]["owner"] == endpoints.config.instance_id
        assert live["admin"]["leaseExpiresAt"] is not None
        stop = await client.delete(f"/admin/jobs/{slow['id']}",
                                   headers={**AUTH, "x-operator": "bob"})
        assert stop.status_code == 202 and stop.json()["cancelRequested"]
        ended = await finished(client, f"/jobs/{slow['id']}")
        assert ended["status"] == "Canceled"
        audit = (await client.get(f"/admin/jobs/{slow['id']}",
                                  headers=AUTH)).json()["admin"]["audit"]
        assert [(a["action"], a["by"]) for a in audit] == [("cancel", "bob")]
        assert_problem(await client.delete(f"/admin/jobs/{slow['id']}", headers=AUTH),
                       409, "JobFinished")
        # Canceled jobs may be retried too; this time it is let through.
        retry = await client.post(f"/admin/jobs/{slow['id']}/retry", headers=AUTH)
        assert retry.status_code == 200
        await until(running)
        gates[slow["id"]].set()
        assert (await finished(client, f"/jobs/{slow['id']}"))["result"] == 2000


async def test_payloads_only_when_the_app_opts_in(make_store: StoreFactory) -> None:
    async with admin_client(make_store, show_payloads=True) as (client, _, _):
        job = await submit(client, "/pack", 41)
        detail = (await client.get(f"/admin/jobs/{job['id']}", headers=AUTH)).json()
        assert detail["admin"]["payload"] == {"n": 41}


async def test_instances_and_stats(make_store: StoreFactory) -> None:
    config = EndpointsConfig(shutdown_grace=1, heartbeat_interval=0.2, lease_ttl=1.0)
    async with admin_client(make_store, config=config) as (client, endpoints, _):
        async def listed() -> Any:
            found = (await client.get("/admin/instances", headers=AUTH)).json()["instances"]
            return found or None

        [me] = await until(listed)
        assert me["id"] == endpoints.config.instance_id and me["pid"] > 0
        assert me["concurrency"] == endpoints.config.concurrency and me["host"]
        assert me["lastHeartbeat"] < me["expiresAt"]
        for n in (1, -1, 2):
            await finished(client, f"/jobs/{(await submit(client, '/ship', n))['id']}")
        stats = (await client.get("/admin/stats", headers=AUTH)).json()
        assert stats["byStatus"]["Completed"] == 2 and stats["byStatus"]["Failed"] == 1
        assert stats["byName"]["Ship"]["Completed"] == 2
        buckets = stats["rates"]["buckets"]
        assert stats["rates"]["bucketSeconds"] == 60 and len(buckets) == 15
        assert sum(b["submitted"] for b in buckets[-2:]) == 3
        assert sum(b["failed"] for b in buckets[-2:]) == 1


async def test_openapi_names_the_admin_routes(make_store: StoreFactory) -> None:
    async with admin_client(make_store) as (client, _, _):
        document = (await client.get("/openapi.json")).json()
        paths = document["paths"]
        assert set(paths["/admin/jobs/{job_id}"]) == {"get", "delete"}
        assert "post" in paths["/admin/jobs/{job_id}/retry"]
        assert "401" in paths["/admin/stats"]["get"]["responses"]
        assert "AdminJob" in document["components"]["schemas"]


async def test_the_job_page_streams_events_behind_the_hook(make_store: StoreFactory) -> None:
    async with admin_client(make_store) as (client, _, gates):
        job = await submit(client, "/ship", 1000)  # held until the gate opens
        refused = await client.get(f"/admin/jobs/{job['id']}",
                                   headers={"accept": "text/event-stream"})
        assert_problem(refused, 401)
        url = str(client.base_url).rstrip("/") + f"/admin/jobs/{job['id']}"
        with trio.fail_after(10):
            async with open_stream(url, AUTH) as stream:
                assert stream.status == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
                first = await stream.next()
                assert first is not None and first.event == "status"
                assert first.data["id"] == job["id"]
                while first.data["status"] != "InProgress":
                    first = await stream.next()
                    assert first is not None
                gates[job["id"]].set()
                rest = await stream.rest()
        assert rest[-1].event == "terminal" and rest[-1].data["result"] == 2000
