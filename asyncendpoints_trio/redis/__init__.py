"""A small Trio-native Redis client on hiredis: pool, Lua scripts, blocking calls, pub/sub.

    async with RedisClient.from_url("redis://localhost:6379/0") as redis:
        await redis.execute("SET", "key", "value")
        replies = await redis.pipeline([("GET", "key"), ("INCR", "n")])  # errors in place
        item = await redis.blocking("BLMOVE", "queue", "work", "LEFT", "RIGHT", timeout=5)
        result = await redis.evalsha(Script.from_file("claim.lua"), keys, args)
        async with redis.subscribe("wake") as subscription:
            async for channel, data in subscription:
                ...

``ClusterClient`` (``redis+cluster://host:port,host:port/``) routes the same calls over a
Redis Cluster by hash slot, following ``MOVED``/``ASK`` and failovers.

Errors are those of ``asyncendpoints_trio._errors``: ``RedisReplyError`` for error replies,
``RedisConnectionError``/``RedisTimeoutError``/``PoolTimeout`` (all ``StoreUnavailable``)
for everything that means "Redis cannot be used right now".
"""

from ._api import RedisAPI as RedisAPI
from ._api import ReplicaWait as ReplicaWait
from ._client import RedisClient as RedisClient
from ._client import RedisStatistics as RedisStatistics
from ._client import Script as Script
from ._client import ScriptCall as ScriptCall
from ._client import Subscription as Subscription
from ._cluster import ClusterClient as ClusterClient
from ._cluster import ClusterStatistics as ClusterStatistics
from ._cluster_pubsub import ClusterSubscription as ClusterSubscription
from ._connection import Arg as Arg
from ._connection import Command as Command
from ._factory import open_client as open_client
from ._sentinel import SentinelClient as SentinelClient
from ._sentinel import SentinelStatistics as SentinelStatistics
from ._sentinel_url import SentinelConfig as SentinelConfig
from ._sentinel_url import parse_sentinel_url as parse_sentinel_url
from ._url import RedisSettings as RedisSettings
from ._url import parse_url as parse_url

__all__ = [
    "Arg",
    "ClusterClient",
    "ClusterStatistics",
    "ClusterSubscription",
    "Command",
    "RedisAPI",
    "RedisClient",
    "RedisSettings",
    "RedisStatistics",
    "ReplicaWait",
    "Script",
    "ScriptCall",
    "SentinelClient",
    "SentinelConfig",
    "SentinelStatistics",
    "Subscription",
    "open_client",
    "parse_sentinel_url",
    "parse_url",
]
