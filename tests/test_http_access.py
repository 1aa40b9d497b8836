"""Who may see a job, and what a stranger learns: owners, authorize hooks, stack traces,
stored headers, 503 details. Against a real Hypercorn with a real client."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from quart_trio import QuartTrio

from asyncendpoints_trio import (
    Access,
    AsyncContext,
    AsyncEndpoints,
    EndpointsConfig,
    MemoryStore,
    Problem,
    RetryPolicy,
    StoreUnavailable,
)

from .conftest import client_for
from .test_http import assert_problem, finished


@dataclass
class Note:
    text: str


def tenant_of(access: Access) -> str | None:
    # The pattern the production guide recommends: an owner claim from a verified
    # credential, never the credential itself (a real app checks a signature here).
    token = access.headers.get("authorization", "")
    return token.removeprefix("Bearer tenant-") if token.startswith("Bearer tenant-") else None


def make_app(config: EndpointsConfig | None = None, *, owners: bool = True,
             authorize: Any = None, store: Any = None) -> tuple[QuartTrio, AsyncEndpoints]:
    app = QuartTrio(__name__)
    endpoints = AsyncEndpoints(app, config=config or EndpointsConfig(shutdown_grace=1),
                               owner_of=tenant_of if owners else None, store=store)
    seen: dict[str, Any] = {}
    app.extensions["seen"] = seen

    @endpoints.handler("Note", retry=RetryPolicy(max_retries=0))
    async def note(ctx: AsyncContext[Note]) -> str:
        seen["headers"] = dict(ctx.headers)
        seen["client"] = ctx.client_address
        seen["owner"] = ctx.owner
        return ctx.request.text.upper()

    @endpoints.handler("Boom", retry=RetryPolicy(max_retries=0))
    async def boom(ctx: AsyncContext[Note]) -> str:
        raise ValueError(f"cannot take {ctx.request.text!r}")

    endpoints.map_async_post("Note", "/notes")
    endpoints.map_async_post("Note", "/other-notes")
    endpoints.map_async_post("Boom", "/boom")
    endpoints.map_job_details("/jobs/<uuid:job_id>", authorize=authorize)
    return app, endpoints


A = {"authorization": "Bearer tenant-a"}
B = {"authorization": "Bearer tenant-b"}


async def test_a_job_is_shown_only_to_its_owner() -> None:
    app, _ = make_app()
    async with client_for(app) as client:
        made = await client.post("/notes", json={"text": "mine"}, headers=A)
        assert made.status_code == 202
        location = made.headers["location"]
        mine = await client.get(location, params={"wait": 5}, headers=A)
        assert mine.status_code == 200 and mine.json()["result"] == "MINE"
        assert app.extensions["seen"]["owner"] == "a"  # the handler knows whose job it is
        # Another tenant, or nobody, sees what a job id that does not exist shows.
        for stranger in (B, {}):
            seen = await client.get(location, headers=stranger)
            assert_problem(seen, 404, "JobNotFound")
            assert_problem(await client.delete(location, headers=stranger), 404, "JobNotFound")
        unknown = await client.get(f"/jobs/{uuid.uuid4()}", headers=B)
        assert seen.json()["detail"].split()[0] == unknown.json()["detail"].split()[0]


async def test_idempotency_keys_belong_to_a_route_and_an_owner() -> None:
    app, _ = make_app()
    async with client_for(app) as client:
        body = {"text": "x"}
        key = {"idempotency-key": "k-1"}
        a1 = await client.post("/notes", json=body, headers={**A, **key})
        a2 = await client.post("/notes", json=body, headers={**A, **key})
        b1 = await client.post("/notes", json=body, headers={**B, **key})
        other_route = await client.post("/other-notes", json=body, headers={**A, **key})
        # Another tenant's different request with the same key: no 422, and no job id of A's.
        b2 = await client.post("/notes", json={"text": "different"}, headers={**B, **key})
    assert a1.json()["id"] == a2.json()["id"]
    assert b1.status_code == 202 and b1.json()["id"] != a1.json()["id"]
    assert other_route.status_code == 202 and other_route.json()["id"] != a1.json()["id"]
    conflict = assert_problem(b2, 422, "IdempotencyKeyReused")
    assert conflict["jobId"] == b1.json()["id"]  # the caller's own job, never A's


async def test_a_chosen_job_id_cannot_be_squatted() -> None:
    app, _ = make_app()
    chosen = str(uuid.uuid4())
    async with client_for(app) as client:
        a = await client.post("/notes", json={"text": "a"},
                              headers={**A, "x-async-request-id": chosen})
        b = await client.post("/notes", json={"text": "b"},
                              headers={**B, "x-async-request-id": chosen})
        again = await client.post("/notes", json={"text": "a"},
                                  headers={**A, "x-async-request-id": chosen})
    assert a.status_code == b.status_code == 202
    assert a.json()["id"] != b.json()["id"]  # B's job is B's: A took nothing from it
    assert again.json()["id"] == a.json()["id"]  # and A's GUID still names A's job


async def test_authorize_hook_on_the_job_route() -> None:
    calls: list[tuple[str, str | None]] = []

    def authorize(access: Access) -> Any:
        assert access.job is not None
        calls.append((access.action, access.headers.get("x-role")))
        role = access.headers.get("x-role")
        if role is None:
            return Problem(401, detail="who are you?", code="Unauthenticated")
        return role == "admin" or (role == "reader" and access.action == "read")

    app, _ = make_app(owners=False, authorize=authorize)
    async with client_for(app) as client:
        location = (await client.post("/notes", json={"text": "t"})).headers["location"]
        assert_problem(await client.get(location), 401, "Unauthenticated")
        assert (await client.get(location, headers={"x-role": "reader"})).status_code == 200
        assert_problem(await client.delete(location, headers={"x-role": "reader"}), 404,
                       "JobNotFound")  # refused: a stranger cannot tell it from no job
        assert (await client.get(location, headers={"x-role": "admin"})).status_code == 200
    assert ("cancel", "reader") in calls and ("read", None) in calls


async def test_authorize_hook_on_a_submit_route_sees_secret_headers() -> None:
    app = QuartTrio(__name__)
    endpoints = AsyncEndpoints(app, config=EndpointsConfig(shutdown_grace=1))

    @endpoints.handler("Note")
    async def note(ctx: AsyncContext[Note]) -> str:
        return ctx.request.text

    async def only_with_key(access: Access) -> bool:
        return access.action == "submit" and access.headers.get("x-api-key") == "s3cret"

    endpoints.map_async_post("Note", "/notes", authorize=only_with_key)
    endpoints.map_job_details()
    async with client_for(app) as client:
        refused = await client.post("/notes", json={"text": "t"})
        admitted = await client.post("/notes", json={"text": "t"},
                                     headers={"x-api-key": "s3cret"})
        # The hook runs before the body is read: a refused request is not validated.
        refused_bad = await client.post("/notes", content=b"{not json",
                                        headers={"content-type": "application/json"})
        spec = (await client.get("/openapi.json")).json()
    assert_problem(refused, 403, "Forbidden")
    assert_problem(refused_bad, 403, "Forbidden")
    assert admitted.status_code == 202
    assert {"401", "403"} <= spec["paths"]["/notes"]["post"]["responses"].keys()


async def test_stack_traces_are_not_shown_unless_the_app_opts_in() -> None:
    for expose in (False, True):
        app, _ = make_app(EndpointsConfig(shutdown_grace=1, expose_stack_traces=expose),
                          owners=False)
        async with client_for(app) as client:
            location = (await client.post("/boom", json={"text": "t"})).headers["location"]
            body = await finished(client, location)
        exception = body["error"]["exception"]
        assert exception["type"] == "builtins.ValueError"
        assert exception["message"] == "cannot take 't'"
        if expose:
            assert "raise ValueError" in exception["stackTrace"]
        else:
            assert exception["stackTrace"] is None and "test_http_access" not in str(body)


async def test_stored_headers_leave_out_credentials_and_the_client_address() -> None:
    app, _ = make_app(owners=False)
    headers = {"x-auth-token": "t0ken", "x-session-id": "s", "x-client-secret": "c",
               "x-request-source": "cli", "authorization": "Bearer x"}
    async with client_for(app) as client:
        location = (await client.post("/notes", json={"text": "t"}, headers=headers)
                    ).headers["location"]
        await finished(client, location)
    seen = app.extensions["seen"]
    assert seen["headers"]["x-request-source"] == "cli"
    for secret in ("x-auth-token", "x-session-id", "x-client-secret", "authorization"):
        assert secret not in seen["headers"]
    assert "remote-addr" not in seen["headers"]  # never sent by the client
    assert seen["client"] == "127.0.0.1"


async def test_an_allow_list_of_headers() -> None:
    config = EndpointsConfig(shutdown_grace=1, captured_headers=frozenset({"X-Keep"}))
    app, _ = make_app(config, owners=False)
    async with client_for(app) as client:
        location = (await client.post("/notes", json={"text": "t"},
                                      headers={"x-keep": "1", "x-drop": "2"})
                    ).headers["location"]
        await finished(client, location)
    assert app.extensions["seen"]["headers"] == {"x-keep": "1"}


class DownStore(MemoryStore):
    async def submit(self, jobs: Any, *, max_queued: int | None = None) -> Any:
        raise StoreUnavailable("redis://10.1.2.3:6379/0: login failed: WRONGPASS invalid "
                               "username-password pair")


async def test_503_details_reveal_nothing_of_the_store() -> None:
    app, _ = make_app(owners=False, store=DownStore())
    async with client_for(app) as client:
        answer = await client.post("/notes", json={"text": "t"})
    body = assert_problem(answer, 503, "StoreUnavailable")
    assert "10.1.2.3" not in answer.text and "WRONGPASS" not in answer.text
    assert answer.headers["retry-after"] == "1" and "retry" in body["detail"]


@dataclass
class Count:
    n: int


@pytest.mark.parametrize("strict", [False, True])
async def test_validation_is_lax_unless_strict(strict: bool) -> None:
    app = QuartTrio(__name__)
    endpoints = AsyncEndpoints(app, config=EndpointsConfig(shutdown_grace=1))

    @endpoints.handler("Count", strict=strict)
    async def count(ctx: AsyncContext[Count]) -> int:
        return ctx.request.n

    endpoints.map_async_post("Count", "/count")
    endpoints.map_job_details()
    async with client_for(app) as client:
        answer = await client.post("/count", json={"n": "5"})
    if strict:
        assert_problem(answer, 422, "ValidationFailed")
    else:
        assert answer.status_code == 202


async def test_openapi_describes_each_routes_result_and_the_error() -> None:
    app, _ = make_app(owners=False)
    async with client_for(app) as client:
        spec = (await client.get("/openapi.json")).json()
    post = spec["paths"]["/notes"]["post"]
    assert post["requestBody"]["required"] is True
    ref = post["responses"]["202"]["content"]["application/json"]["schema"]["$ref"]
    job = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    result = job["allOf"][1]["properties"]["result"]["anyOf"][0]
    assert result == {"type": "string"}
    assert "JobError" in spec["components"]["schemas"]
    names = {p["name"] for p in post["parameters"]}
    assert {"Idempotency-Key", "X-Async-Request-Id", "X-Not-Before", "X-Priority"} <= names
