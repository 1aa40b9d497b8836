"""Observability with real processes on one Redis: one trace from the HTTP request to every
attempt on another instance; the Prometheus page moving as jobs run, fail, retry, get
cancelled and get reclaimed after a kill -9; health probes through a Redis outage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from asyncendpoints_trio.runtime._supervisor import CRASH_LOOP
from tests._processes import Service, cli_process
from tests._redis_server import RedisServer, free_port

from .test_fleet import EventLog

pytestmark = pytest.mark.slow

APP = "tests.apps.observed_app:app"


def instance(kind: str, server: RedisServer, *extra: str, env: dict[str, str] | None = None,
             ttl: float = 2.0) -> Any:
    args = [kind, APP, "--redis-url", server.url, "--lease-ttl", str(ttl),
            "--heartbeat", str(ttl / 4), "--log-level", "info", *extra]
    if kind == "serve":
        args += ["--bind", "127.0.0.1:0"]
    return cli_process(args, env={"FLEET_EVENTS_URL": server.url, **(env or {})},
                       ready=b"Running on" if kind == "serve" or "--metrics-bind" in extra
                       else b"started:")


async def terminal(client: httpx.AsyncClient, location: str) -> dict[str, Any]:
    with trio.fail_after(30):
        while True:
            body: dict[str, Any] = (await client.get(location, params={"wait": 5})).json()
            if body["status"] in ("Completed", "Failed", "Canceled"):
                return body


def spans_in(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


async def test_one_trace_from_the_request_to_every_attempt(tmp_path: Path) -> None:
    api_spans, worker_spans = tmp_path / "api.jsonl", tmp_path / "worker.jsonl"
    with RedisServer() as server:
        async with instance("serve", server, "--no-workers",
                            env={"TRACE_FILE": str(api_spans)}) as api, \
                instance("worker", server, env={"TRACE_FILE": str(worker_spans)}):
            async with httpx.AsyncClient(base_url=api.url) as client:
                answer = await client.post("/flaky")  # no body: the request is null
                assert answer.status_code == 202, answer.text
                job = await terminal(client, answer.headers["location"])
            assert job["status"] == "Completed" and job["retryCount"] == 1
            with trio.fail_after(10):  # the worker exports its second span as it ends
                while len([s for s in spans_in(worker_spans)  # noqa: ASYNC110
                           if s["name"] == "process Flaky"]) < 2:
                    await trio.sleep(0.05)
    spans = spans_in(api_spans) + spans_in(worker_spans)
    [send] = [s for s in spans if s["name"] == "send Flaky"]
    server_spans = [s for s in spans if s["kind"] == "SERVER" and s["span_id"] ==
                    send["parent_id"]]
    assert server_spans, "the send span is a child of the HTTP server span"
    http = server_spans[0]
    processes = sorted((s for s in spans if s["name"] == "process Flaky"),
                       key=lambda s: s["attributes"]["asyncendpoints.job.attempt"])
    assert len(processes) == 2
    assert {s["trace_id"] for s in [http, send, *processes]} == {http["trace_id"]}
    assert all(s["parent_id"] == send["span_id"] and s["kind"] == "CONSUMER"
               for s in processes)
    assert send["kind"] == "PRODUCER"
    for span, operation in [(send, "send"), *((p, "process") for p in processes)]:
        attributes = span["attributes"]
        assert attributes["messaging.system"] == "asyncendpoints"
        assert attributes["messaging.operation.type"] == operation
        assert attributes["messaging.message.id"] == job["id"]
        assert attributes["messaging.destination.name"] == "default"
        assert attributes["asyncendpoints.job.name"] == "Flaky"
    first, second = processes
    assert first["status"] == "ERROR" and "exception" in first["events"]
    assert first["attributes"]["asyncendpoints.job.outcome"] == "retry"
    assert second["status"] == "UNSET" and second["attributes"][
        "asyncendpoints.job.outcome"] == "completed"
    assert "trace" not in job and "traceparent" not in json.dumps(job)  # not job JSON


def metrics_of(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(metrics: dict[Any, float], name: str, **labels: str) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(url: str) -> dict[Any, float]:
    async with httpx.AsyncClient() as client:
        answer = await client.get(url)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return metrics_of(answer.text)


async def test_the_metrics_move_as_jobs_do() -> None:
    with RedisServer() as server:
        log = EventLog()
        async with trio.open_nursery() as nursery:
            await nursery.start(log.listen, server.url)
            ports = [free_port(), free_port()]
            # The API runs no jobs: which worker ran what is then known.
            async with instance("serve", server, "--metrics", "--no-workers") as api, \
                    instance("worker", server, "--metrics-bind",
                             f"127.0.0.1:{ports[0]}") as worker_a, \
                    instance("worker", server, "--metrics-bind",
                             f"127.0.0.1:{ports[1]}") as worker_b:
                workers = {worker_a.process.pid: (worker_a, ports[1]),
                           worker_b.process.pid: (worker_b, ports[0])}
                async with httpx.AsyncClient(base_url=api.url) as client:
                    for route in ("/ok", "/flaky", "/doomed"):
                        answer = await client.post(route)
                        assert answer.status_code == 202, answer.text
                        await terminal(client, answer.headers["location"])
                    # A long job, cancelled while it runs.
                    canceled = await client.post("/long", json=30.0)
                    with trio.fail_after(10):
                        await log.wait_until(lambda s: len(s) == 1)
                    assert (await client.delete(canceled.headers["location"])).status_code \
                        in (200, 202)
                    assert (await terminal(client, canceled.headers["location"]))[
                        "status"] == "Canceled"
                    # Another long one; its worker is killed: the survivor reclaims it.
                    reclaimed = await client.post("/long", json=0.5)
                    with trio.fail_after(10):
                        await log.wait_until(lambda s: len(s) == 2)
                    victim, survivor_port = workers[log.started[-1].pid]
                    victim.process.kill()
                    assert (await terminal(client, reclaimed.headers["location"]))[
                        "status"] == "Completed"
                    api_metrics = await scrape(api.url + "/metrics")
                    survivor = await scrape(f"http://127.0.0.1:{survivor_port}/metrics")
                    workers_seen = {}
                    for pid, (service, _) in workers.items():
                        if service is not victim:
                            workers_seen[pid] = service
            nursery.cancel_scope.cancel()
    for name in ("Ok", "Flaky", "Doomed", "Long"):
        assert value(api_metrics, "asyncendpoints_jobs_submitted_total", job_name=name) >= 1
    assert value(api_metrics, "asyncendpoints_queue_jobs", status="Queued") == 0
    assert ("asyncendpoints_queue_jobs", (("status", "InProgress"),)) in api_metrics
    assert value(api_metrics, "asyncendpoints_store_operation_seconds_count",
                 operation="submit") >= 5
    assert ("asyncendpoints_store_errors_total", (("operation", "submit"),)) in api_metrics
    # Whichever instance's recovery sweep finds the expired lease first hands the job back;
    # the API instance sweeps too.
    assert value(survivor, "asyncendpoints_jobs_reclaimed_total") + \
        value(api_metrics, "asyncendpoints_jobs_reclaimed_total") >= 1
    assert value(survivor, "asyncendpoints_job_run_seconds_count", job_name="Long",
                 outcome="completed") == 1
    assert value(survivor, "asyncendpoints_job_queue_wait_seconds_count", job_name="Long") >= 1
    assert ("asyncendpoints_actor_restarts_total", (("actor", "workers"),)) in survivor
    assert ("asyncendpoints_leases_lost_total", ()) in survivor
    assert ("asyncendpoints_outcomes_fenced_total", ()) in survivor
    assert workers_seen


async def test_health_goes_503_while_redis_is_down_and_back_without_a_restart() -> None:
    with RedisServer() as server:
        async with instance("serve", server) as api:
            async with httpx.AsyncClient(base_url=api.url) as client:
                ready = await client.get("/healthz")
                assert ready.status_code == 200 and ready.json()["store"] == "ok"
                assert (await client.get("/healthz", params={"live": 1})).status_code == 200
                server.stop()
                with trio.fail_after(20):
                    while (down := await client.get("/healthz")).status_code == 200:  # noqa: ASYNC110
                        await trio.sleep(0.1)
                assert down.status_code == 503
                assert down.headers["content-type"] == "application/problem+json"
                assert down.json()["code"] == "StoreUnavailable" and down.headers["retry-after"]
                # The actors that need the store stop and restart while it is away; wait
                # until one has done so more often than a crash loop takes. An outage is
                # still no crash loop: readiness names the store, and liveness (which does
                # not ask the store) stays 200, so an orchestrator does not restart a
                # healthy process.
                with trio.fail_after(20):
                    while max(a["restarts"] for a in down.json()["actors"].values()) <= \
                            CRASH_LOOP:
                        await trio.sleep(0.1)
                        down = await client.get("/healthz")
                assert down.status_code == 503 and down.json()["code"] == "StoreUnavailable"
                assert (await client.get("/healthz", params={"live": 1})).status_code == 200
                server.start()
                with trio.fail_after(30):
                    while (await client.get("/healthz")).status_code != 200:  # noqa: ASYNC110
                        await trio.sleep(0.1)
            text = api.text
    assert isinstance(api, Service) and "Traceback" not in text
