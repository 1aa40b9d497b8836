"""Supervision: run an actor, restart it with capped exponential backoff when it crashes."""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

log = logging.getLogger("asyncendpoints_trio.supervisor")


@dataclass(slots=True)
class ActorHealth:
    state: str = "starting"  # starting | running | backing-off | stopped
    restarts: int = 0
    last_error: str | None = None


def backoff_delay(failures: int, cap: float, base: float = 0.1) -> float:
    """Exponential in consecutive failures, capped, with jitter so peers do not sync up."""
    raw: float = min(cap, base * 2.0 ** max(0, failures - 1))
    return raw * (0.5 + random.random() / 2)


async def supervise(
    name: str,
    actor: Callable[[], Awaitable[None]],
    health: ActorHealth,
    *,
    backoff_cap: float,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``actor`` until it returns; restart it after each ``Exception``.

    Cancellation is never caught here: it is how the runtime stops an actor.
    A run that lasted a while resets the failure count, so a rare crash restarts fast.
    """
    task_status.started()
    failures = 0
    while True:
        health.state = "running"
        started = trio.current_time()
        try:
            await actor()
        except Exception as exc:
            if trio.current_time() - started > backoff_cap:
                failures = 0
            failures += 1
            health.restarts += 1
            health.last_error = f"{type(exc).__name__}: {exc}"
            health.state = "backing-off"
            delay = backoff_delay(failures, backoff_cap)
            log.warning("actor %s crashed (%s); restarting in %.2fs", name, health.last_error,
                        delay, exc_info=failures == 1)
            await trio.sleep(delay)
        else:
            health.state = "stopped"
            return
