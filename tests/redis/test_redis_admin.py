"""The admin API on the Redis store: the admin store contract, the HTTP routes, and the
presence of instance processes that come and go (``kill -9``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from asyncendpoints_trio.stores._redis import RedisStore

from ..store_contract_admin import AdminContract
from ..test_admin_http import (
    StoreFactory,
    test_detail_retry_and_cancel,
    test_instances_and_stats,
    test_list_filters_pages_and_refuses_bad_queries,
    test_the_hook_refuses_and_admits_every_route,
    test_the_job_page_streams_events_behind_the_hook,
    until,
)
from .conftest import queue_stores

# The HTTP tests again, on Redis (their make_store fixture is this module's).
__all__ = ["test_detail_retry_and_cancel", "test_instances_and_stats",
           "test_list_filters_pages_and_refuses_bad_queries",
           "test_the_hook_refuses_and_admits_every_route",
           "test_the_job_page_streams_events_behind_the_hook"]


@pytest.fixture
def clock() -> None:
    return None


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    # A queue of this test's own: tests share one server without meeting.
    async with queue_stores(redis_url, "adm", retention=1.0) as make:
        yield make()


class TestRedisAdmin(AdminContract):
    pass


@pytest.fixture
async def make_store(redis_url: str) -> AsyncIterator[StoreFactory]:
    async with queue_stores(redis_url, "adm") as make:
        yield make


@pytest.mark.slow
async def test_instances_appear_and_vanish_within_a_lease_ttl_of_a_kill() -> None:
    from tests._redis_server import RedisServer

    from .test_fleet import HEARTBEAT, TTL, fleet, instance, ready

    with RedisServer() as server:
        async with fleet(server) as (stack, _, store):
            first = await stack.enter_async_context(instance("worker", server))
            second = await stack.enter_async_context(instance("worker", server))
            await ready(first)
            await ready(second)
            pids = {first.process.pid, second.process.pid}

            async def live_pids() -> set[int]:
                return {i.info.pid for i in await store.instances()}

            async def both() -> bool:
                return await live_pids() == pids

            await until(both, 10)
            [one] = [i for i in await store.instances() if i.info.pid == first.process.pid]
            assert one.info.concurrency > 0 and one.info.host
            assert 0 < one.expires_at - one.last_heartbeat <= TTL + 0.01
            first.process.kill()  # kill -9: no chance to withdraw anything
            killed_at = trio.current_time()
            async def first_gone() -> bool:
                return first.process.pid not in await live_pids()

            await until(first_gone, TTL + HEARTBEAT + 10)
            gone_after = trio.current_time() - killed_at
            # A functional bound, not a speed test: the record expires one TTL after the
            # last renewal, which came at most a heartbeat before the kill.
            assert gone_after <= TTL + 1.5, gone_after
            assert await live_pids() == {second.process.pid}
