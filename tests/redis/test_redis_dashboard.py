"""The dashboard in headless Chromium on the Redis store: the counts, a job page that
follows its job (the event stream through Redis pub/sub), Cancel and Retry."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from asyncendpoints_trio.redis import RedisClient
from asyncendpoints_trio.stores._redis import RedisStore

from ..test_dashboard import (
    StoreFactory,
    browser_factory,
    test_a_job_page_follows_its_job_from_queued_to_completed,
    test_cancel_on_a_running_job_ends_it_canceled,
    test_overview_counts_match_the_store_and_follow_it_live,
    test_retry_on_a_failed_job_brings_it_back,
)
from .conftest import fast_settings

# The browser tests again, on Redis (their make_store fixture is this module's).
__all__ = ["browser_factory", "test_a_job_page_follows_its_job_from_queued_to_completed",
           "test_cancel_on_a_running_job_ends_it_canceled",
           "test_overview_counts_match_the_store_and_follow_it_live",
           "test_retry_on_a_failed_job_brings_it_back"]


@pytest.fixture
async def make_store(redis_url: str) -> AsyncIterator[StoreFactory]:
    made: list[RedisStore] = []

    def factory() -> RedisStore:
        made.append(RedisStore(RedisClient(fast_settings(redis_url)),
                               queue=f"dash-{uuid.uuid4().hex[:10]}", owns_client=True))
        return made[-1]

    yield factory
    for store in made:
        keys = await store.client.execute("KEYS", f"ae:{{{store.queue}}}:*")
        if keys:
            await store.client.execute("DEL", *keys)
        await store.aclose()
