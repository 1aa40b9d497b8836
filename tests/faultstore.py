"""A fault-injecting ``JobStore`` wrapper: the link between one instance and a shared store.

Every call goes through ``_call``, which may, per call:

- ``fail``: raise ``StoreUnavailable`` before the call reaches the store (nothing applied);
- ``lose``: apply the call, then raise ``StoreUnavailable`` (the reply was lost);
- ``delay``: wait before the call reaches the store (a slow request);
- ``slow_reply``: apply the call, then wait before answering;
- ``hang``: never answer (until the wrapper is revived or the caller gives up);
- ``error``: raise a non-transient ``RedisReplyError`` (an error reply) before applying.

``kill()`` makes every later call fail at once and every call in flight never return its
answer: the instance's process is gone, nothing it still tries reaches the store.
``pause()``/``resume()`` stall every call (a partition, a stopped process) without losing it.

Faults come from scripted rules (``inject``) and, for the simulator, from a seeded
``chaos`` function. Everything runs on Trio's clock, so it works on ``MockClock``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from asyncendpoints_trio import JobStore, NewJob, RedisReplyError, StoreUnavailable
from asyncendpoints_trio.stores._protocol import Lease, Outcome

FAULTS = ("fail", "lose", "delay", "slow_reply", "hang", "error")


@dataclass
class Fault:
    kind: str
    seconds: float = 0.0

    def __post_init__(self) -> None:
        assert self.kind in FAULTS, self.kind


@dataclass
class _Rule:
    method: str
    fault: Fault
    times: float
    when: Callable[[tuple[Any, ...]], bool] | None = None


@dataclass
class FaultStats:
    calls: dict[str, int] = field(default_factory=dict)
    injected: dict[str, int] = field(default_factory=dict)  # "method:kind" -> count
    times: list[float] = field(default_factory=list)  # when each fault struck
    pauses: list[tuple[float, float]] = field(default_factory=list)  # (from, to)


class FaultyStore:
    def __init__(self, inner: JobStore, *,
                 chaos: Callable[[str], Fault | None] | None = None) -> None:
        self.inner = inner
        self.chaos = chaos
        self.rules: list[_Rule] = []
        self.stats = FaultStats()
        self._dead = False
        self._resumed = trio.Event()
        self._resumed.set()
        self._paused_at = 0.0
        self._revived = trio.Event()

    # ---- control ---------------------------------------------------------------------------

    def inject(self, method: str, kind: str, *, times: float = 1, seconds: float = 0.0,
               when: Callable[[tuple[Any, ...]], bool] | None = None) -> None:
        self.rules.append(_Rule(method, Fault(kind, seconds), times, when))

    def clear(self) -> None:
        self.rules.clear()
        self.chaos = None
        self._revived.set()
        self._revived = trio.Event()

    def kill(self) -> None:
        self._dead = True

    @property
    def dead(self) -> bool:
        return self._dead

    def pause(self) -> None:
        if self._resumed.is_set():
            self._resumed = trio.Event()
            self._paused_at = trio.current_time()

    def resume(self) -> None:
        if not self._resumed.is_set():
            self.stats.pauses.append((self._paused_at, trio.current_time()))
        self._resumed.set()

    def troubled(self, start: float, end: float) -> bool:
        """Did a fault or a pause touch this link between ``start`` and ``end``?"""
        if any(start <= t <= end for t in self.stats.times):
            return True
        pauses = list(self.stats.pauses)
        if not self._resumed.is_set():
            pauses.append((self._paused_at, end))
        return any(a <= end and b >= start for a, b in pauses)

    def injected(self, method: str | None = None) -> int:
        return sum(n for key, n in self.stats.injected.items()
                   if method is None or key.startswith(method + ":"))

    # ---- the wrapper -----------------------------------------------------------------------

    def _pick(self, method: str, args: tuple[Any, ...]) -> Fault | None:
        for rule in self.rules:
            if rule.method == method and rule.times > 0 and (rule.when is None
                                                              or rule.when(args)):
                rule.times -= 1
                return rule.fault
        if self.chaos is not None:
            return self.chaos(method)
        return None

    async def _gone(self) -> None:
        # A dead instance's calls never reach the store, and what they applied before it
        # died is never answered. (Raising rather than hanging: a shielded claim of the dead
        # instance must end too, so that its task can.)
        await trio.lowlevel.checkpoint()
        raise StoreUnavailable("injected: this instance is dead")

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self.stats.calls[method] = self.stats.calls.get(method, 0) + 1
        if self._dead:
            await self._gone()
        await self._resumed.wait()
        fault = self._pick(method, args)
        if fault is not None:
            key = f"{method}:{fault.kind}"
            self.stats.injected[key] = self.stats.injected.get(key, 0) + 1
            self.stats.times.append(trio.current_time())
        kind = fault.kind if fault is not None else None
        if kind == "fail":
            await trio.lowlevel.checkpoint()
            raise StoreUnavailable(f"injected: {method} failed")
        if kind == "error":
            await trio.lowlevel.checkpoint()
            raise RedisReplyError(f"ERR injected error reply to {method}")
        if kind == "hang":
            with trio.move_on_at(math.inf):
                await self._revived.wait()
            raise StoreUnavailable(f"injected: {method} hung, then the link was cut")
        if kind == "delay" and fault is not None:
            await trio.sleep(fault.seconds)
            await self._resumed.wait()
        if self._dead:
            await self._gone()
        result = await getattr(self.inner, method)(*args, **kwargs)
        if self._dead:
            await self._gone()
        if kind == "lose":
            raise StoreUnavailable(f"injected: the reply to {method} was lost")
        if kind == "slow_reply" and fault is not None:
            await trio.sleep(fault.seconds)
        await self._resumed.wait()
        if self._dead:
            await self._gone()
        return result

    # ---- the JobStore protocol ---------------------------------------------------------------

    async def submit(self, jobs: Sequence[NewJob], *, max_queued: int | None = None) -> Any:
        return await self._call("submit", jobs, max_queued=max_queued)

    async def get(self, job_id: str) -> Any:
        return await self._call("get", job_id)

    async def claim(self, owner: str, limit: int, lease_ttl: float) -> Any:
        return await self._call("claim", owner, limit, lease_ttl)

    async def wait_for_work(self, timeout: float, idle: Any = None) -> Any:
        if self._dead:
            await self._gone()
        await self._resumed.wait()
        return await self.inner.wait_for_work(timeout, idle)

    async def heartbeat(self, owner: str, leases: Sequence[Lease], lease_ttl: float,
                        progress: Any = None) -> Any:
        return await self._call("heartbeat", owner, leases, lease_ttl, progress)

    def watch(self, job_id: str) -> Any:
        return self.inner.watch(job_id)

    async def leases_of(self, owner: str) -> Any:
        return await self._call("leases_of", owner)

    async def finish(self, outcomes: Sequence[Outcome]) -> Any:
        return await self._call("finish", outcomes)

    async def cancel(self, job_id: str) -> Any:
        return await self._call("cancel", job_id)

    async def wait_for_terminal(self, job_id: str, timeout: float) -> Any:
        return await self.inner.wait_for_terminal(job_id, timeout)

    async def watch_events(self, on_cancel: Callable[[str], None]) -> None:
        def relay(job_id: str) -> None:
            if not self._dead:
                on_cancel(job_id)

        await self.inner.watch_events(relay)

    async def recover(self, *, limit: int) -> Any:
        return await self._call("recover", limit=limit)

    async def counts(self) -> Any:
        return await self._call("counts")

    async def ping(self) -> None:
        await self._call("get", "ping")

    def describe(self) -> str:
        return "a faulty link to " + self.inner.describe()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()

    def statistics(self) -> Any:
        return self.inner.statistics()
