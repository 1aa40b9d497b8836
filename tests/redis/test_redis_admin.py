"""The admin API on the Redis store: the admin store contract, the HTTP routes, and the
presence of instance processes that come and go (``kill -9``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from asyncendpoints_trio.redis import RedisClient
from asyncendpoints_trio.stores._redis import RedisStore

from ..store_contract_admin import AdminContract
from .conftest import fast_settings


@pytest.fixture
def clock() -> None:
    return None


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    client = RedisClient(fast_settings(redis_url))
    store = RedisStore(client, queue=f"adm-{uuid.uuid4().hex[:10]}", retention=1.0,
                       owns_client=True)
    yield store
    keys = await client.execute("KEYS", f"ae:{{{store.queue}}}:*")
    if keys:
        await client.execute("DEL", *keys)
    await store.aclose()


class TestRedisAdmin(AdminContract):
    pass
