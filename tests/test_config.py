"""``EndpointsConfig`` validation, and the options that need a particular store."""

from __future__ import annotations

from typing import Any

import pytest
from quart_trio import QuartTrio

from asyncendpoints_trio import AsyncEndpoints, EndpointsConfig, MemoryStore
from asyncendpoints_trio._errors import ConfigurationError
from asyncendpoints_trio.stores._redis import RedisStore


@pytest.mark.parametrize(("options", "says"), [
    ({"replicas_ack": -1}, "replicas_ack must be >= 0, not -1"),
    ({"replicas_ack": "1"}, "replicas_ack must be an integer, not '1'"),
    ({"replicas_ack": 1.0}, "replicas_ack must be an integer, not 1.0"),
    ({"replicas_ack": True}, "replicas_ack must be an integer, not True"),
    ({"replicas_timeout": 0}, "replicas_timeout must be > 0, not 0"),
    ({"replicas_timeout": -1.0}, "replicas_timeout must be > 0"),
    ({"replicas_timeout": float("inf")}, "replicas_timeout must be a finite number"),
    ({"replicas_timeout": "1"}, "replicas_timeout must be a number of seconds"),
])
def test_replica_options_are_checked(options: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        EndpointsConfig(**options)


def test_replica_options_defaults() -> None:
    config = EndpointsConfig()
    assert (config.replicas_ack, config.replicas_timeout) == (0, 1.0)
    assert EndpointsConfig(replicas_ack=2, replicas_timeout=0.25).replicas_ack == 2


def test_the_memory_store_has_no_replicas_to_wait_for() -> None:
    for store in (None, MemoryStore()):  # made from the config, or passed in
        endpoints = AsyncEndpoints(QuartTrio(__name__), store=store,
                                   config=EndpointsConfig(replicas_ack=1))
        with pytest.raises(ConfigurationError, match="replicas_ack=1 needs the Redis store"):
            _ = endpoints.store
    assert AsyncEndpoints(QuartTrio(__name__)).store is not None  # 0: fine


def test_the_redis_store_gets_the_replica_options_from_the_config() -> None:
    config = EndpointsConfig(redis_url="redis://127.0.0.1:1/0", replicas_ack=2,
                             replicas_timeout=0.25, metrics=False)
    store = AsyncEndpoints(QuartTrio(__name__), config=config).store
    assert isinstance(store, RedisStore)
    assert store.replicas_ack == 2 and store._wait is not None
    assert store._wait.timeout == 0.25


@pytest.mark.parametrize(("options", "says"), [
    ({"replicas_ack": -1}, "replicas_ack must be an integer >= 0"),
    ({"replicas_ack": "1"}, "replicas_ack must be an integer"),
    ({"replicas_ack": 1.0}, "replicas_ack must be an integer"),
    ({"replicas_ack": True}, "replicas_ack must be an integer"),
    ({"replicas_timeout": 0}, "replicas_timeout must be"),
    ({"replicas_timeout": float("inf")}, "replicas_timeout must be"),
])
def test_redis_store_refuses_bad_replica_options(options: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        RedisStore.from_url("redis://127.0.0.1:1/0", **options)
