"""The operation status route, driven by azure-core's own poller; problem+json for every path
under our rules (unknown sub-paths, 405 with Allow), and the host app's other pages left alone.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import httpx
import pytest
import trio
from quart_trio import QuartTrio

from asyncendpoints_trio import (
    AsyncContext,
    AsyncEndpoints,
    EndpointsConfig,
    NonRetryableError,
    RetryPolicy,
)

from .conftest import client_for, serving
from .test_http import Order, Receipt

azure_core = pytest.importorskip("azure.core")

from azure.core import PipelineClient  # noqa: E402
from azure.core.exceptions import HttpResponseError  # noqa: E402
from azure.core.polling import LROPoller  # noqa: E402
from azure.core.polling.base_polling import LROBasePolling  # noqa: E402
from azure.core.rest import HttpRequest  # noqa: E402


def make_app(*, operations: bool = True, owners: bool = False,
             authorize: Any = None) -> tuple[QuartTrio, trio.Event]:
    app = QuartTrio(__name__)
    owner_of = (lambda access: access.headers.get("x-tenant")) if owners else None
    endpoints = AsyncEndpoints(app, config=EndpointsConfig(shutdown_grace=1),
                               owner_of=owner_of)
    gate = trio.Event()

    @endpoints.handler("Order", retry=RetryPolicy(max_retries=0))
    async def order(ctx: AsyncContext[Order]) -> Receipt:
        return Receipt(ctx.request.item, ctx.request.quantity * 3)

    @endpoints.handler("Fail", retry=RetryPolicy(max_retries=0))
    async def fail(ctx: AsyncContext[Any]) -> None:
        raise NonRetryableError("out of stock")

    @endpoints.handler("Gate")
    async def gated(ctx: AsyncContext[Any]) -> str:
        await gate.wait()
        return "opened"

    @app.route("/elsewhere/<int:n>", methods=["GET"])
    async def elsewhere(n: int) -> str:  # the host app's own route
        return str(n)

    endpoints.map_async_post("Order", "/orders")
    endpoints.map_async_put("Order", "/orders/<name>")
    endpoints.map_async_post("Fail", "/fail")
    endpoints.map_async_post("Gate", "/gate")
    endpoints.map_async_post("Order", "/years/<int:year>")
    endpoints.map_job_details("/jobs/<uuid:job_id>")
    if operations:
        endpoints.map_operation_status("/operations/<uuid:job_id>", authorize=authorize)
    return app, gate


def cb(pipeline_response: Any) -> Any:
    """The deserialization callback: the final GET's body is the job (or the monitor);
    either carries the job's result."""
    return pipeline_response.http_response.json()["result"]


def start_poller(url: str, method: str, path: str, body: Any) -> LROPoller[Any]:
    """What a generated Azure SDK client does: send the request, hand the answer to an
    LROPoller with the default polling method."""
    client: PipelineClient[Any, Any] = PipelineClient(base_url=url)
    initial = client.send_request(HttpRequest(method, client.format_url(path), json=body),
                                  _return_pipeline_response=True)
    return LROPoller(client, initial, cb, LROBasePolling())


async def in_thread(fn: Any, *args: Any) -> Any:
    with trio.fail_after(30):
        return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)


async def test_submit_names_an_absolute_operation_location() -> None:
    app, _ = make_app()
    async with client_for(app) as client:
        answer = await client.post("/orders", json={"item": "tea", "quantity": 2})
        assert answer.status_code == 202
        job_id = answer.json()["id"]
        assert answer.headers["operation-location"] == f"{client.base_url}operations/{job_id}" \
            or answer.headers["operation-location"] == \
            f"{str(client.base_url).rstrip('/')}/operations/{job_id}"
        # The job route is untouched: the original's wire format.
        assert answer.headers["location"] == f"/jobs/{job_id}"
        # Another Host (a proxy forwarding its public name): the URL follows it.
        other = await client.post("/orders", json={"item": "tea", "quantity": 2},
                                  headers={"host": "api.example.com:8443"})
        assert other.headers["operation-location"] == \
            f"http://api.example.com:8443/operations/{other.json()['id']}"
        with trio.fail_after(10):
            await client.get(f"/jobs/{job_id}", params={"wait": 5})
        status = await client.get(f"/operations/{job_id}")
    assert status.status_code == 200
    assert "retry-after" not in status.headers
    body = status.json()
    assert body["id"] == job_id and body["status"] == "Succeeded"
    assert body["result"] == {"item": "tea", "total": 6}
    assert body["resourceLocation"].endswith(f"/jobs/{job_id}")
    assert body["resourceLocation"].startswith("http://127.0.0.1:")


async def test_operation_status_while_running_and_after_failure() -> None:
    app, gate = make_app()
    async with client_for(app) as client:
        job_id = (await client.post("/gate", json=None)).json()["id"]
        with trio.fail_after(10):
            while (body := (await client.get(f"/operations/{job_id}")).json())["status"] \
                    == "NotStarted":
                await client.get(f"/jobs/{job_id}", params={"wait": 0.05})
        running = await client.get(f"/operations/{job_id}")
        assert body["status"] == "Running" and running.headers["retry-after"] == "1"
        assert set(body) == {"id", "status"}
        gate.set()
        failed_id = (await client.post("/fail", json=None)).json()["id"]
        with trio.fail_after(10):
            await client.get(f"/jobs/{failed_id}", params={"wait": 5})
        failed = (await client.get(f"/operations/{failed_id}")).json()
    assert failed["status"] == "Failed" and "result" not in failed
    assert failed["error"]["code"] == "HandlerError"
    assert failed["error"]["message"] == "out of stock"
    assert failed["error"]["innererror"]["type"] == "asyncendpoints_trio.NonRetryableError"


async def test_no_operation_location_until_the_route_is_mapped() -> None:
    app, _ = make_app(operations=False)
    async with client_for(app) as client:
        answer = await client.post("/orders", json={"item": "tea", "quantity": 2})
        assert "operation-location" not in answer.headers
        document = (await client.get("/openapi.json")).json()
    assert "/operations/{job_id}" not in document["paths"]


async def test_azure_poller_returns_the_result_of_post_and_put_jobs() -> None:
    app, _ = make_app()
    async with serving(app) as url:
        post = await in_thread(start_poller, url, "POST", "/orders",
                               {"item": "tea", "quantity": 2})
        assert await in_thread(post.result) == {"item": "tea", "total": 6}
        assert post.status() == "Succeeded" and post.done()
        # A PUT's final GET would go to the request URL without resourceLocation.
        put = await in_thread(start_poller, url, "PUT", "/orders/x",
                              {"item": "cake", "quantity": 1})
        assert await in_thread(put.result) == {"item": "cake", "total": 3}


async def test_azure_poller_raises_for_failed_and_canceled_jobs() -> None:
    app, _ = make_app()
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        failing = await in_thread(start_poller, url, "POST", "/fail", None)
        with pytest.raises(HttpResponseError) as failed:
            await in_thread(failing.result)
        assert failed.value.response is not None
        assert failed.value.response.json()["error"]["message"] == "out of stock"
        assert failing.status() == "Failed"

        gated = await in_thread(start_poller, url, "POST", "/gate", None)
        job_id = gated.polling_method()._initial_response.http_response.json()["id"]
        canceled = await client.delete(f"/jobs/{job_id}")
        assert canceled.status_code in (200, 202)
        with pytest.raises(HttpResponseError) as stopped:
            await in_thread(gated.result)
        assert stopped.value.response is not None
        assert stopped.value.response.json()["status"] == "Canceled"
        assert gated.status() == "Canceled"


RESUME = """
import json, sys
from azure.core import PipelineClient
from azure.core.polling import LROPoller
from azure.core.polling.base_polling import LROBasePolling

url, token = sys.argv[1], sys.stdin.read()
poller = LROPoller.from_continuation_token(
    LROBasePolling(), token, client=PipelineClient(base_url=url),
    deserialization_callback=lambda response: response.http_response.json()["result"])
print(json.dumps(poller.result(20)))
"""


async def test_azure_poller_resumes_from_a_continuation_token_in_another_process() -> None:
    app, gate = make_app()
    async with serving(app) as url:
        poller = await in_thread(start_poller, url, "POST", "/gate", None)
        token = poller.continuation_token()
        # The job is still running when the other process takes over.
        assert not poller.done()
        gate.set()
        with trio.fail_after(30):
            done = await trio.run_process([sys.executable, "-c", RESUME, url],
                                          stdin=token.encode(), capture_stdout=True,
                                          capture_stderr=True, check=False)
        assert done.returncode == 0, done.stderr.decode()
        assert json.loads(done.stdout) == "opened"
        assert await in_thread(poller.result) == "opened"


async def test_operation_route_hides_other_owners_jobs() -> None:
    app, _ = make_app(owners=True)
    async with client_for(app) as client:
        answer = await client.post("/orders", json={"item": "tea", "quantity": 2},
                                   headers={"x-tenant": "a"})
        location = answer.headers["operation-location"]
        mine = await client.get(location, headers={"x-tenant": "a"})
        theirs = await client.get(location, headers={"x-tenant": "b"})
        nobody = await client.get(location)
        unknown = await client.get(location.rsplit("/", 1)[0] +
                                   "/00000000-0000-4000-8000-000000000000",
                                   headers={"x-tenant": "a"})
    assert mine.status_code == 200
    for refused in (theirs, nobody, unknown):
        assert refused.status_code == 404
        assert refused.headers["content-type"] == "application/problem+json"
    # A stranger cannot tell another owner's job from none, but for its id.
    assert theirs.json()["code"] == unknown.json()["code"] == "JobNotFound"


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["code"] == code
    return body


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("PUT", "/jobs/00000000-0000-4000-8000-000000000000", {"GET", "DELETE"}),
    ("PATCH", "/jobs/not-a-uuid", {"GET", "DELETE"}),
    ("POST", "/operations/00000000-0000-4000-8000-000000000000", {"GET"}),
    ("DELETE", "/operations/00000000-0000-4000-8000-000000000000", {"GET"}),
    ("GET", "/orders", {"POST"}),
    ("DELETE", "/orders/x", {"PUT"}),
])
async def test_a_method_our_rule_lacks_is_a_405_problem_with_allow(
        method: str, path: str, allow: set[str]) -> None:
    app, _ = make_app()
    async with client_for(app) as client:
        answer = await client.request(method, path)
    assert_problem(answer, 405, "MethodNotAllowed")
    # Quart adds HEAD and OPTIONS where it answers GET.
    assert {m.strip() for m in answer.headers["allow"].split(",")} - {"HEAD", "OPTIONS"} == \
        allow


@pytest.mark.parametrize("path", [
    "/jobs/00000000-0000-4000-8000-000000000000/foo",
    "/jobs/not-a-uuid/x",
    "/jobs/",
    "/jobs",
    "/operations/not-a-uuid/x/y",
    "/years/not-a-year",  # a submit rule's converter refused it
])
async def test_an_unknown_path_under_our_rules_is_a_404_problem(path: str) -> None:
    app, _ = make_app()
    async with client_for(app) as client:
        answer = await client.get(path)
    assert_problem(answer, 404, "NotFound")


async def test_the_host_apps_other_pages_stay_its_own() -> None:
    app, _ = make_app()
    async with client_for(app) as client:
        missing = await client.get("/nowhere")
        wrong_method = await client.post("/elsewhere/1")
        not_an_int = await client.get("/elsewhere/x")
        fine = await client.get("/elsewhere/1")
    assert fine.text == "1"
    for answer, status in ((missing, 404), (wrong_method, 405), (not_an_int, 404)):
        assert answer.status_code == status
        assert answer.headers["content-type"].startswith("text/html")


async def test_operation_routes_authorize_hook_sees_the_job() -> None:
    seen: list[Any] = []

    def authorize(access: Any) -> Any:
        seen.append((access.action, access.job.id))
        return access.headers.get("x-ok") == "1"

    app, _ = make_app(authorize=authorize)
    async with client_for(app) as client:
        answer = await client.post("/orders", json={"item": "tea", "quantity": 2})
        location = answer.headers["operation-location"]
        allowed = await client.get(location, headers={"x-ok": "1"})
        refused = await client.get(location)
        document = (await client.get("/openapi.json")).json()
    assert allowed.status_code == 200
    assert_problem(refused, 404, "JobNotFound")
    assert seen == [("read", answer.json()["id"])] * 2
    # The document says a guarded route may refuse.
    assert "403" in document["paths"]["/operations/{job_id}"]["get"]["responses"]
    assert "Operation-Location" in \
        document["paths"]["/orders"]["post"]["responses"]["202"]["headers"]
