"""Job stores: ``MemoryStore`` (embedded default) and, with Redis, ``RedisStore``."""

from ._memory import MemoryStore as MemoryStore
from ._protocol import JobStore as JobStore
from ._redis import RedisStore as RedisStore
