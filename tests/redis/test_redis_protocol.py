"""``Prefer``, ``Idempotency-Key`` and in-process submits on RedisStore, against a real
redis-server: one instance takes the request, another runs the job."""

from __future__ import annotations

import json
import uuid

import trio

from asyncendpoints_trio import EndpointsConfig, JobStatus

from ..conftest import client_for, serving
from ..test_http import assert_problem
from ..test_inprocess import DataRequest
from ..test_inprocess import make_app as make_inprocess_app
from ..test_protocol import ORDER, make_app


def configs(redis_url: str) -> tuple[EndpointsConfig, EndpointsConfig]:
    """An API-only instance and a worker instance on one queue."""
    queue = f"proto-{uuid.uuid4().hex[:8]}"
    return (EndpointsConfig(redis_url=redis_url, queue=queue, shutdown_grace=1,
                            run_workers=False, retention=90),
            EndpointsConfig(redis_url=redis_url, queue=queue, shutdown_grace=1))


async def test_prefer_wait_and_idempotency_across_instances(redis_url: str) -> None:
    api_config, worker_config = configs(redis_url)
    api, _, _ = make_app(api_config)
    worker, _, _ = make_app(worker_config)
    async with serving(worker), client_for(api) as client:
        fast = await client.post("/orders", json=ORDER,
                                 headers={"Prefer": "wait=10", "Idempotency-Key": '"r1"'})
        assert fast.status_code == 200, fast.text
        assert fast.json()["status"] == "Completed" and fast.json()["result"] == 6
        assert fast.headers["preference-applied"] == "wait=10"
        assert fast.headers["idempotency-key-retention"] == "90"  # the RedisStore's
        slow = await client.post("/block", headers={"Prefer": "wait=0.2"})
        assert slow.status_code == 202 and slow.headers["preference-applied"] == "wait=0.2"
        bare = await client.post("/orders", json=ORDER, headers={"Idempotency-Key": "r1"})
        assert bare.status_code == 202 and bare.json()["id"] == fast.json()["id"]
        assert bare.headers["idempotent-replayed"] == "true"
        other = await client.post("/orders", json={"item": "x", "quantity": 1},
                                  headers={"Idempotency-Key": "r1"})
        body = assert_problem(other, 422, "IdempotencyKeyReused")
        assert body["jobId"] == fast.json()["id"]
        with trio.fail_after(10):
            polled = await client.get(fast.headers["location"], headers={"Prefer": "wait=5"})
        assert polled.headers["preference-applied"] == "wait=5"


async def test_in_process_submit_on_redis_runs_on_another_instance(redis_url: str) -> None:
    api_config, worker_config = configs(redis_url)
    api, api_endpoints = make_inprocess_app(api_config)
    worker, _ = make_inprocess_app(worker_config)
    async with serving(worker), serving(api):
        job = await api_endpoints.submit("ProcessData", DataRequest("z", times=3),
                                         idempotency_key="once")
        again = await api_endpoints.submit("ProcessData", DataRequest("z", times=3),
                                           idempotency_key="once")
        assert again.id == job.id
        with trio.fail_after(10):
            done = await api_endpoints.wait(job.id, 10)
    assert done is not None and done.status is JobStatus.COMPLETED
    assert json.loads(done.result or b"null") == "zzz"
