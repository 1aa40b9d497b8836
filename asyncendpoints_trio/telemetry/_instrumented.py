"""A ``JobStore`` that times and counts every call it passes on: the store metrics.

It wraps the store an ``AsyncEndpoints`` uses, so the routes' calls and the runtime's are
both counted. Waits (``wait_for_work``, ``wait_for_terminal``, ``watch_events``) count their
errors but not their time: they last as long as nothing happens, by design.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from ..stores._feeds import JobWatch
from ..stores._protocol import (
    Claimed,
    HeartbeatReply,
    IdleOffer,
    JobStore,
    Lease,
    NewJob,
    Outcome,
    RecoveryReport,
    Submitted,
)
from ._histogram import STORE_BUCKETS, Histogram, HistogramSnapshot

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StoreMetrics:
    calls: dict[str, int]
    errors: dict[str, int]
    seconds: dict[str, HistogramSnapshot]


class InstrumentedStore:
    def __init__(self, inner: JobStore) -> None:
        self.inner = inner
        self._calls: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._seconds: dict[str, Histogram] = {}

    def __getattr__(self, name: str) -> Any:
        # What only the wrapped store has (RedisStore.client, .keys ...) stays reachable.
        return getattr(self.inner, name)

    async def _timed(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        started = trio.current_time()
        self._calls[operation] += 1
        try:
            return await call()
        except Exception:
            self._errors[operation] += 1
            raise
        finally:
            histogram = self._seconds.get(operation)
            if histogram is None:
                histogram = self._seconds[operation] = Histogram(STORE_BUCKETS)
            histogram.observe(trio.current_time() - started)

    async def _untimed(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        self._calls[operation] += 1
        try:
            return await call()
        except Exception:
            self._errors[operation] += 1
            raise

    def count_error(self, operation: str) -> None:
        """Count a call that failed in a way the wrapper cannot see: one its caller gave up
        on (a timeout is a cancellation to the call)."""
        self._errors[operation] += 1

    def metrics(self) -> StoreMetrics:
        return StoreMetrics(dict(self._calls), dict(self._errors),
                            {k: h.snapshot() for k, h in self._seconds.items()})

    # ---- the JobStore protocol ------------------------------------------------------------

    async def submit(self, jobs: Sequence[NewJob], *,
                     max_queued: int | None = None) -> list[Submitted | Exception]:
        return await self._timed("submit", lambda: self.inner.submit(jobs,
                                                                      max_queued=max_queued))

    async def get(self, job_id: str) -> Any:
        return await self._timed("get", lambda: self.inner.get(job_id))

    async def claim(self, owner: str, limit: int, lease_ttl: float) -> list[Claimed]:
        return await self._timed("claim", lambda: self.inner.claim(owner, limit, lease_ttl))

    async def wait_for_work(self, timeout: float,
                            idle: IdleOffer | None = None) -> list[Claimed]:
        return await self._untimed("wait_for_work",
                                   lambda: self.inner.wait_for_work(timeout, idle))

    async def heartbeat(self, owner: str, leases: Sequence[Lease], lease_ttl: float,
                        progress: Mapping[str, bytes] | None = None) -> HeartbeatReply:
        return await self._timed(
            "heartbeat", lambda: self.inner.heartbeat(owner, leases, lease_ttl, progress))

    async def leases_of(self, owner: str) -> list[Lease]:
        return await self._timed("leases_of", lambda: self.inner.leases_of(owner))

    async def finish(self, outcomes: Sequence[Outcome]) -> list[bool]:
        return await self._timed("finish", lambda: self.inner.finish(outcomes))

    async def cancel(self, job_id: str) -> Any:
        return await self._timed("cancel", lambda: self.inner.cancel(job_id))

    async def wait_for_terminal(self, job_id: str, timeout: float) -> Any:
        return await self._untimed("wait_for_terminal",
                                   lambda: self.inner.wait_for_terminal(job_id, timeout))

    async def watch_events(self, on_cancel: Callable[[str], None]) -> None:
        await self._untimed("watch_events", lambda: self.inner.watch_events(on_cancel))

    def watch(self, job_id: str) -> AbstractAsyncContextManager[JobWatch]:
        self._calls["watch"] += 1
        return self.inner.watch(job_id)

    async def recover(self, *, limit: int) -> RecoveryReport:
        return await self._timed("recover", lambda: self.inner.recover(limit=limit))

    async def counts(self) -> Mapping[str, int]:
        return await self._timed("counts", self.inner.counts)

    async def ping(self) -> None:
        await self._timed("ping", self.inner.ping)

    def describe(self) -> str:
        return self.inner.describe()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def statistics(self) -> Mapping[str, Any]:
        return self.inner.statistics()


def unwrapped(store: JobStore) -> JobStore:
    return store.inner if isinstance(store, InstrumentedStore) else store
