"""The store contract against RedisStore on a real redis-server, plus Redis-only checks."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from asyncendpoints_trio import TRANSITIONS
from asyncendpoints_trio.stores._redis import RedisStore

from ..store_contract import StoreContract, new_job, submit_one
from ..store_contract_progress import ProgressContract
from .conftest import fast_settings, queue_stores

LUA = Path(__file__).resolve().parents[2] / "asyncendpoints_trio" / "stores" / "lua"


@pytest.fixture
def clock() -> None:
    return None  # real time: the Redis server's clock runs the leases


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    # A queue of this test's own: tests share one server without meeting.
    async with queue_stores(redis_url, "t", retention=1.0) as make:
        yield make()


class TestRedisStore(StoreContract, ProgressContract):
    pass


async def test_every_key_shares_one_hash_tag(store: RedisStore) -> None:
    await submit_one(store, new_job(key="k"))
    await store.claim("a", 1, 5.0)
    keys = [k.decode() for k in await store.client.execute("KEYS", f"*{store.queue}*")]
    assert len(keys) >= 4
    assert all(k.startswith(f"ae:{{{store.queue}}}:") for k in keys), keys


def test_lua_scripts_follow_the_transition_table() -> None:
    """Per script, every status it guards on may move to every status it sets, and the
    scripts together implement every edge of TRANSITIONS."""
    allowed = {(old.value, new.value) for old, news in TRANSITIONS.items() for new in news}
    implemented: set[tuple[str, str]] = set()
    for path in LUA.glob("*.lua"):
        text = path.read_text()
        guards = set(re.findall(r"r\.st (?:==|~=) '(\w+)'", text))
        targets = set(re.findall(r"r\.st = '(\w+)'", text))
        pairs = {(g, t) for g in guards for t in targets}
        assert pairs <= allowed, f"{path.name}: {sorted(pairs - allowed)}"
        implemented |= pairs
    assert implemented == allowed


async def test_at_maxmemory_new_work_is_refused_but_leases_hold(redis_url: str) -> None:
    from asyncendpoints_trio import RedisReplyError
    from asyncendpoints_trio.redis import RedisClient
    from asyncendpoints_trio.stores._protocol import Complete

    from .._redis_server import RedisServer

    with RedisServer() as server:
        client = RedisClient(fast_settings(server.url))
        store = RedisStore(client, queue="oom", owns_client=True)
        try:
            await store.submit([new_job(payload=str(i).encode()) for i in range(3)])
            claims = await store.claim("a", 3, 5.0)
            used = int((await client.execute("INFO", "memory")).split(b"used_memory:")[1]
                       .split(b"\r\n")[0])
            await client.execute("CONFIG", "SET", "maxmemory-policy", "noeviction")
            await client.execute("CONFIG", "SET", "maxmemory", str(used - 1024))
            with pytest.raises(RedisReplyError, match="OOM"):
                await store.submit([new_job(payload=b"new")])
            reply = await store.heartbeat("a", [c.lease for c in claims], 5.0)
            assert not reply.lost
            assert await store.finish([Complete(claims[0].lease, b"1")]) == [True]
            await client.execute("CONFIG", "SET", "maxmemory", "0")
            # The refused submit left nothing behind: still the three jobs.
            assert await client.execute("HLEN", "ae:{oom}:rec") == 3
            assert await client.execute("HLEN", "ae:{oom}:data") == 3
        finally:
            await store.aclose()
