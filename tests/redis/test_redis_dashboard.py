"""The dashboard in headless Chromium on the Redis store: the counts, a job page that
follows its job (the event stream through Redis pub/sub), Cancel and Retry."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ..test_dashboard import (
    StoreFactory,
    browser_factory,
    test_a_job_page_follows_its_job_from_queued_to_completed,
    test_cancel_on_a_running_job_ends_it_canceled,
    test_overview_counts_match_the_store_and_follow_it_live,
    test_retry_on_a_failed_job_brings_it_back,
)
from .conftest import queue_stores

# The browser tests again, on Redis (their make_store fixture is this module's).
__all__ = ["browser_factory", "test_a_job_page_follows_its_job_from_queued_to_completed",
           "test_cancel_on_a_running_job_ends_it_canceled",
           "test_overview_counts_match_the_store_and_follow_it_live",
           "test_retry_on_a_failed_job_brings_it_back"]


@pytest.fixture
async def make_store(redis_url: str) -> AsyncIterator[StoreFactory]:
    async with queue_stores(redis_url, "dash") as make:
        yield make
