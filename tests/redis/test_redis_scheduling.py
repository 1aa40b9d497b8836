"""Delayed starts and priorities through HTTP on the Redis store."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from asyncendpoints_trio.redis import RedisClient
from asyncendpoints_trio.stores._redis import RedisStore

from ..conftest import client_for
from ..test_scheduling import _iso, make_app
from .conftest import fast_settings


@pytest.fixture
async def redis_store(redis_url: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(RedisClient(fast_settings(redis_url)), queue=f"s-{uuid.uuid4().hex[:8]}",
                       owns_client=True)
    yield store
    await store.aclose()


async def test_delayed_and_prioritised_on_redis(redis_store: RedisStore) -> None:
    app, order, gate = make_app(redis_store)
    async with client_for(app) as client:
        later = await client.post("/steps", json={"label": "later"},
                                  headers={"x-not-before": "1.5"})
        assert later.json()["status"] == "Scheduled"
        await client.post("/steps", json={"label": "gate"})
        await client.post("/steps", json={"label": "low"})
        await client.post("/steps", json={"label": "high"}, headers={"x-priority": "5"})
        gate.set()
        done = (await client.get(later.headers["location"], params={"wait": 10})).json()
    assert done["status"] == "Completed"
    assert _iso(done["startedAt"]) >= _iso(done["createdAt"]) + 1.5 - 0.01
    assert order == ["gate", "high", "low", "later"]
