"""The HTTP surface against a real Hypercorn on a loopback port, with a real HTTP client."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import trio
from quart_trio import QuartTrio

from asyncendpoints_trio import (
    AsyncContext,
    AsyncEndpoints,
    ConfigurationError,
    EndpointsConfig,
    MemoryStore,
    Problem,
    RetryPolicy,
    StoreUnavailable,
    SubmitContext,
)

from .conftest import client_for

JSON = {"content-type": "application/json"}


@dataclass
class Order:
    item: str
    quantity: int


@dataclass
class Receipt:
    item: str
    total: int


@dataclass
class Seen:
    headers: dict[str, list[str]]
    route: dict[str, str]
    query: dict[str, list[str]]


def make_app(config: EndpointsConfig | None = None, store: Any = None) -> tuple[QuartTrio,
                                                                               AsyncEndpoints]:
    app = QuartTrio(__name__)
    endpoints = AsyncEndpoints(app, config=config or EndpointsConfig(shutdown_grace=2),
                               store=store)
    app.extensions["events"] = {"started": trio.Event(), "cancelled": []}

    @endpoints.handler("Order", retry=RetryPolicy(max_retries=0))
    async def order(ctx: AsyncContext[Order]) -> Receipt:
        return Receipt(ctx.request.item, ctx.request.quantity * 3)

    @endpoints.handler("Echo")
    async def echo(ctx: AsyncContext[Any]) -> Seen:
        return Seen({k: ctx.headers.getall(k) for k in ctx.headers},
                    dict(ctx.route_params), {k: list(v) for k, v in ctx.query_params.items()})

    @endpoints.handler("Block")
    async def block(ctx: AsyncContext[Any]) -> None:
        app.extensions["events"]["started"].set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            app.extensions["events"]["cancelled"].append(ctx.job_id)
            raise

    @endpoints.handler("Weird", retry=RetryPolicy(max_retries=0))
    async def weird(ctx: AsyncContext[Any]) -> Any:
        return {1, 2, object()}

    def hook(ctx: SubmitContext[Order]) -> Any:
        if ctx.headers.get("authorization") != "Bearer ok":
            raise Problem(401, detail="missing or wrong token")
        if ctx.request.quantity > 100:
            return Problem(422, detail="too many", code="BusinessRule")
        return None

    endpoints.map_async_post("Order", "/orders")
    endpoints.map_async_post("Order", "/guarded-orders", hook=hook)
    endpoints.map_async_put("Echo", "/echo/<tenant>/<int:num>")
    endpoints.map_async_patch("Echo", "/echo-patch")
    endpoints.map_async_delete("Echo", "/echo-delete/<tenant>")
    endpoints.map_async_post("Block", "/block")
    endpoints.map_async_post("Weird", "/weird")
    endpoints.map_job_details("/jobs/<uuid:job_id>")
    return app, endpoints


async def finished(client: httpx.AsyncClient, location: str) -> dict[str, Any]:
    with trio.fail_after(10):
        while True:
            body: dict[str, Any] = (await client.get(location, params={"wait": 5})).json()
            if body["status"] in ("Completed", "Failed", "Canceled"):
                return body


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict[str,
                                                                                          Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"]
    if code is not None:
        assert body["code"] == code
    return body


async def test_submit_answers_202_and_job_completes() -> None:
    app, _ = make_app()
    async with client_for(app) as client:
        response = await client.post("/orders", json={"item": "tea", "quantity": 2})
        assert response.status_code == 202
        job = response.json()
        assert job["status"] == "Queued" and job["name"] == "Order"
        assert set(job) >= {"id", "name", "status", "retryCount", "maxRetries", "createdAt",
                            "startedAt", "completedAt", "lastUpdatedAt", "result", "error"}
        assert response.headers["location"] == f"/jobs/{job['id']}"
        assert int(response.headers["retry-after"]) >= 1
        done = await finished(client, response.headers["location"])
    assert done["status"] == "Completed"
    assert done["result"] == {"item": "tea", "total": 6}
    assert done["error"] is None and done["completedAt"] and done["startedAt"]


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b'{"item": "tea", "quantity": ', JSON, 400, "MalformedJson"),
        (b"not json at all", JSON, 400, "MalformedJson"),
        (b'{"item": "tea"}', JSON, 422, "ValidationFailed"),
        (b'{"item": "tea", "quantity": "lots"}', JSON, 422, "ValidationFailed"),
        (b'["a list"]', JSON, 422, "ValidationFailed"),
        (b'{"item": "tea", "quantity": 1}', {"content-type": "text/plain"}, 415,
         "UnsupportedMediaType"),
        (b"item=tea&quantity=1", {"content-type": "application/x-www-form-urlencoded"}, 415,
         "UnsupportedMediaType"),
        (b"", {}, 422, "ValidationFailed"),  # an empty body reads as null
    ],
)
async def test_bad_submissions(body: bytes, headers: dict[str, str], status: int,
                               code: str) -> None:
    app, endpoints = make_app()
    async with client_for(app) as client:
        response = await client.post("/orders", content=body, headers=headers)
        problem = assert_problem(response, status, code)
        if status == 422:
            assert problem["errors"] and all("field" in e and "message" in e
                                             for e in problem["errors"])
    assert endpoints.store.statistics()["jobs"] == 0  # nothing half-stored


async def test_validation_lists_each_bad_field() -> None:
    app, _ = make_app()
    async with client_for(app) as client:
        response = await client.post("/orders", json={"item": 5, "quantity": "x"})
    problem = assert_problem(response, 422, "ValidationFailed")
    assert sorted(e["field"] for e in problem["errors"]) == ["item", "quantity"]


async def test_body_over_limit_is_413() -> None:
    app, _ = make_app(EndpointsConfig(max_body_size=1000, shutdown_grace=1))
    big = b'{"item": "' + b"x" * 2000 + b'", "quantity": 1}'

    async def chunks() -> Any:
        for i in range(0, len(big), 100):
            yield big[i:i + 100]

    async with client_for(app) as client:
        assert_problem(await client.post("/orders", content=big, headers=JSON), 413,
                       "BodyTooLarge")
        # Chunked: no Content-Length to judge by up front.
        assert_problem(await client.post("/orders", content=chunks(), headers=JSON), 413,
                       "BodyTooLarge")
        ok = await client.post("/orders", json={"item": "tea", "quantity": 1})
        assert ok.status_code == 202


async def test_unknown_and_malformed_job_ids_are_404() -> None:
    app, _ = make_app()
    async with client_for(app) as client:
        assert_problem(await client.get(f"/jobs/{uuid.uuid4()}"), 404, "JobNotFound")
        assert_problem(await client.get("/jobs/not-a-uuid"), 404, "JobNotFound")
        assert_problem(await client.delete(f"/jobs/{uuid.uuid4()}"), 404, "JobNotFound")
        assert_problem(await client.delete("/jobs/12345"), 404, "JobNotFound")


async def test_bad_wait_is_400() -> None:
    app, _ = make_app()
    async with client_for(app) as client:
        location = (await client.post("/orders", json={"item": "a", "quantity": 1})
                    ).headers["location"]
        for bad in ("soon", "-1", "nan", "inf", ""):
            assert_problem(await client.get(location, params={"wait": bad}), 400, "BadWait")
        # Given twice (the fuzzer's ``?wait=&wait=junk``): which one would count?
        twice = await client.get(location, params=[("wait", ""), ("wait", "junk")])
        assert_problem(twice, 400, "BadWait")


async def test_long_poll_returns_when_terminal_and_is_capped() -> None:
    app, _ = make_app(EndpointsConfig(max_wait=0.3, shutdown_grace=1))
    async with client_for(app) as client:
        response = await client.post("/block", json=None)
        location = response.headers["location"]
        t0 = trio.current_time()
        polled = await client.get(location, params={"wait": 60})  # capped at 0.3 s
        assert polled.status_code == 200 and polled.json()["status"] == "InProgress"
        assert trio.current_time() - t0 < 30
        assert polled.headers["retry-after"]


async def test_cancel_running_job_handler_observes_cancelled() -> None:
    app, _ = make_app()
    events = app.extensions["events"]
    async with client_for(app) as client:
        location = (await client.post("/block")).headers["location"]
        with trio.fail_after(5):
            await events["started"].wait()
        response = await client.delete(location)
        assert response.status_code == 202 and response.json()["cancelRequested"] is True
        done = await finished(client, location)
        assert done["status"] == "Canceled"
        assert events["cancelled"] == [done["id"]]
        again = await client.delete(location)
        assert_problem(again, 409, "JobFinished")


async def test_cancel_queued_job() -> None:
    app, _ = make_app(EndpointsConfig(run_workers=False, shutdown_grace=1))
    async with client_for(app) as client:
        location = (await client.post("/orders", json={"item": "a", "quantity": 1})
                    ).headers["location"]
        response = await client.delete(location)
        assert response.status_code == 200 and response.json()["status"] == "Canceled"


async def test_completed_job_cannot_be_canceled() -> None:
    app, _ = make_app()
    async with client_for(app) as client:
        location = (await client.post("/orders", json={"item": "a", "quantity": 1})
                    ).headers["location"]
        await finished(client, location)
        assert_problem(await client.delete(location), 409, "JobFinished")


async def test_idempotency_under_concurrent_submits() -> None:
    app, endpoints = make_app(EndpointsConfig(run_workers=False, shutdown_grace=1))
    answers: list[httpx.Response] = []
    async with client_for(app) as client:

        async def submit(header: str) -> None:
            answers.append(await client.post("/orders", json={"item": "a", "quantity": 1},
                                             headers={header: "key-1"}))

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(submit, "Idempotency-Key" if i % 2 else "X-Async-Request-Id")
        # A duplicate that finds the first still being processed here is 409 (the draft's
        # concurrent case); the others replay the one job.
        assert {r.status_code for r in answers} <= {202, 409}
        stored = [r for r in answers if r.status_code == 202]
        assert stored and len({r.json()["id"] for r in stored}) == 1
        for r in answers:
            if r.status_code == 409:
                assert_problem(r, 409, "IdempotencyKeyInFlight")
        conflict = await client.post("/orders", json={"item": "b", "quantity": 1},
                                     headers={"Idempotency-Key": "key-1"})
        body = assert_problem(conflict, 422, "IdempotencyKeyReused")
        assert body["jobId"] == stored[0].json()["id"]
        assert_problem(await client.post("/orders", json={"item": "a", "quantity": 1},
                                         headers={"Idempotency-Key": "k" * 300}), 400,
                       "BadIdempotencyKey")
    assert endpoints.store.statistics()["jobs"] == 1


async def test_x_async_request_id_guid_becomes_the_job_id() -> None:
    app, _ = make_app(EndpointsConfig(run_workers=False, shutdown_grace=1))
    chosen = str(uuid.uuid4())
    async with client_for(app) as client:
        response = await client.post("/orders", json={"item": "a", "quantity": 1},
                                     headers={"X-Async-Request-Id": chosen})
        assert response.json()["id"] == chosen
        assert (await client.get(f"/jobs/{chosen}")).status_code == 200


async def test_x_async_request_id_in_another_case_is_the_same_request() -> None:
    app, _ = make_app(EndpointsConfig(run_workers=False, shutdown_grace=1))
    chosen = str(uuid.uuid4())
    body = {"item": "a", "quantity": 1}
    async with client_for(app) as client:
        first = await client.post("/orders", json=body, headers={"X-Async-Request-Id": chosen})
        again = await client.post("/orders", json=body,
                                  headers={"X-Async-Request-Id": chosen.upper()})
    assert first.status_code == 202 and again.status_code == 202, again.text
    assert first.json()["id"] == again.json()["id"] == chosen


async def test_queue_full_is_503_with_retry_after() -> None:
    app, _ = make_app(EndpointsConfig(run_workers=False, max_queued=2, retry_after=7,
                                      shutdown_grace=1))
    async with client_for(app) as client:
        for _ in range(2):
            ok = await client.post("/orders", json={"item": "a", "quantity": 1})
            assert ok.status_code == 202
        full = await client.post("/orders", json={"item": "a", "quantity": 1})
        assert_problem(full, 503, "QueueFull")
        assert full.headers["retry-after"] == "7"


async def test_memory_store_over_its_byte_budget_is_503_until_retention_frees_room() -> None:
    """1,000 submits of 1 MiB used to grow the service by a gigabyte: max_queued counts
    jobs, not bytes. Over memory_budget a submit answers 503 QueueFull. (The first job's
    600 kB result counts too: 1.2 MB + 0.6 MB fits, a third 0.6 MB does not.)"""
    config = EndpointsConfig(memory_budget=2_000_000, retention=0.2, retry_after=3,
                             shutdown_grace=1)
    app, _ = make_app(config)
    big = {"item": "x" * 600_000, "quantity": 1}
    async with client_for(app) as client:
        accepted = [await client.post("/orders", json=big) for _ in range(2)]
        assert [r.status_code for r in accepted] == [202, 202]
        full = await client.post("/orders", json=big)
        assert_problem(full, 503, "QueueFull")
        assert full.headers["retry-after"] == "3" and "memory_budget" in full.json()["detail"]
        for response in accepted:  # they complete, then their retention runs out
            done = await client.get(response.headers["location"], params={"wait": 5})
            assert done.json()["status"] == "Completed"
        with trio.fail_after(10):
            # Real retention time passing: a client retrying, nothing else to wait on.
            while (again := await client.post("/orders", json=big)).status_code == 503:  # noqa: ASYNC110
                await trio.sleep(0.1)
        assert again.status_code == 202


class DownStore(MemoryStore):
    async def submit(self, jobs: Any, *, max_queued: int | None = None) -> Any:
        raise StoreUnavailable("injected: connection refused")

    async def get(self, job_id: str) -> Any:
        raise StoreUnavailable("injected: connection refused")


async def test_store_down_is_503_not_500() -> None:
    app, _ = make_app(store=DownStore())
    async with client_for(app) as client:
        response = await client.post("/orders", json={"item": "a", "quantity": 1})
        assert_problem(response, 503, "StoreUnavailable")
        assert response.headers["retry-after"]
        assert_problem(await client.get(f"/jobs/{uuid.uuid4()}"), 503, "StoreUnavailable")


async def test_http_context_reaches_handler_without_secrets() -> None:
    app, _ = make_app()
    async with client_for(app) as client:
        response = await client.put(
            "/echo/acme/7?tag=a&tag=b&one=1", json={"x": 1},
            headers={"X-Trace": "t1", "Authorization": "Bearer secret", "Cookie": "s=1",
                     "X-Api-Key": "k", "Proxy-Authorization": "p"})
        assert response.status_code == 202
        done = await finished(client, response.headers["location"])
    seen = done["result"]
    assert seen["route"] == {"tenant": "acme", "num": "7"}
    assert seen["query"] == {"tag": ["a", "b"], "one": ["1"]}
    assert seen["headers"]["x-trace"] == ["t1"]
    for secret in ("authorization", "cookie", "x-api-key", "proxy-authorization"):
        assert secret not in seen["headers"]


async def test_sensitive_header_kept_when_opted_in() -> None:
    app, _ = make_app(EndpointsConfig(persist_sensitive_headers=frozenset({"Authorization"}),
                                      sensitive_headers=frozenset({"authorization",
                                                                   "x-tenant-token"}),
                                      shutdown_grace=1))
    async with client_for(app) as client:
        response = await client.patch("/echo-patch", json=None,
                                      headers={"Authorization": "Bearer a", "X-Tenant-Token": "t"})
        done = await finished(client, response.headers["location"])
    assert done["result"]["headers"]["authorization"] == ["Bearer a"]
    assert "x-tenant-token" not in done["result"]["headers"]


async def test_async_delete_route_without_body() -> None:
    app, _ = make_app()
    async with client_for(app) as client:
        response = await client.delete("/echo-delete/acme")
        assert response.status_code == 202
        done = await finished(client, response.headers["location"])
    assert done["result"]["route"] == {"tenant": "acme"}


async def test_pre_queue_hook_can_answer_instead() -> None:
    app, endpoints = make_app()
    async with client_for(app) as client:
        assert_problem(await client.post("/guarded-orders", json={"item": "a", "quantity": 1}),
                       401)
        assert_problem(await client.post("/guarded-orders", json={"item": "a", "quantity": 500},
                                         headers={"Authorization": "Bearer ok"}), 422,
                       "BusinessRule")
        ok = await client.post("/guarded-orders", json={"item": "a", "quantity": 1},
                               headers={"Authorization": "Bearer ok"})
        assert ok.status_code == 202
    assert endpoints.store.statistics()["jobs"] == 1


async def test_unserializable_result_fails_with_code() -> None:
    app, _ = make_app()
    async with client_for(app) as client:
        response = await client.post("/weird", json=None)
        done = await finished(client, response.headers["location"])
    assert done["status"] == "Failed"
    assert done["error"]["code"] == "ResultSerializationError"


async def test_openapi_describes_routes() -> None:
    app, _ = make_app()
    async with client_for(app) as client:
        doc = (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    post = doc["paths"]["/orders"]["post"]
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    order = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]] if "$ref" in \
        schema else schema
    assert set(order["properties"]) == {"item", "quantity"}
    assert {"202", "400", "409", "413", "415", "422", "503"} <= set(post["responses"])
    assert "/echo/{tenant}/{num}" in doc["paths"]
    assert set(doc["paths"]["/jobs/{job_id}"]) == {"get", "delete"}


def test_mapping_unknown_job_name_fails_at_setup() -> None:
    app = QuartTrio(__name__)
    endpoints = AsyncEndpoints(app)
    with pytest.raises(ConfigurationError, match="no handler"):
        endpoints.map_async_post("Nope", "/nope")
    with pytest.raises(ConfigurationError, match="exactly one variable"):
        endpoints.map_job_details("/t/<tenant>/jobs/<uuid:job_id>")


async def test_graceful_drain_through_server_shutdown() -> None:
    app, endpoints = make_app(EndpointsConfig(shutdown_grace=0.5))
    async with client_for(app) as client:
        location = (await client.post("/block")).headers["location"]
        with trio.fail_after(5):
            await app.extensions["events"]["started"].wait()
    job = await endpoints.store.get(location.rsplit("/", 1)[1])
    assert job is not None and job.status == "Queued" and job.retry_count == 0


async def test_idempotency_compares_requests_not_bytes() -> None:
    app, endpoints = make_app(EndpointsConfig(run_workers=False, shutdown_grace=1))
    async with client_for(app) as client:
        one = await client.post("/orders", content=b'{"item":"a","quantity":1}',
                                headers={**JSON, "Idempotency-Key": "same"})
        two = await client.post("/orders", content=b'{ "quantity": 1,\n "item": "a" }',
                                headers={**JSON, "Idempotency-Key": "same"})
        assert one.status_code == two.status_code == 202
        assert one.json()["id"] == two.json()["id"]
    assert endpoints.store.statistics()["jobs"] == 1
